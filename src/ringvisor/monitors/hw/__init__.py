"""Hardware-assisted virtualization on the soft CPU (`--technique hw
--engine soft`): a KVM-like monitor driving the soft CPU's VMX non-root
operation (cpu/vmx/)."""
