"""Bindings to the Linux KVM API through ioctl: one class per file descriptor
(Kvm for /dev/kvm, Vm, Vcpu), one table of ioctl numbers, ctypes layouts."""
