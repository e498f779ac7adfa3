"""/dev/kvm itself: API version, capabilities, supported CPUID, new VMs."""
from __future__ import annotations

import ctypes as C
import errno
import fcntl
import os

from ringvisor.errors import KvmUnavailable
from ringvisor.kvm import ioctls as I
from ringvisor.kvm import structs as S

DEVICE = "/dev/kvm"


def _open_device(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmUnavailable(f"{path} does not exist: this machine offers no KVM "
                             "(load kvm_intel/kvm_amd, or use --engine soft)") from None
    except PermissionError:
        raise KvmUnavailable(f"no permission to open {path} (add yourself to the 'kvm' group, "
                             "or use --engine soft)") from None
    except OSError as e:
        raise KvmUnavailable(f"cannot open {path}: {e.strerror}") from None


class Kvm:
    """The /dev/kvm file descriptor."""

    def __init__(self, path: str = DEVICE):
        self.path = path
        self.fd = _open_device(path)
        version = fcntl.ioctl(self.fd, I.KVM_GET_API_VERSION, 0)
        if version != I.API_VERSION:
            os.close(self.fd)
            raise KvmUnavailable(f"{path} speaks KVM API version {version}, ringvisor needs {I.API_VERSION}")
        self.vcpu_mmap_size = fcntl.ioctl(self.fd, I.KVM_GET_VCPU_MMAP_SIZE, 0)

    def check_extension(self, cap: int, fd: int | None = None) -> int:
        try:
            return fcntl.ioctl(self.fd if fd is None else fd, I.KVM_CHECK_EXTENSION, cap)
        except OSError:
            return 0

    def require(self, *caps: str) -> None:
        missing = [c for c in caps if not self.check_extension(I.CAPS[c])]
        if missing:
            raise KvmUnavailable(f"{self.path} lacks {', '.join(missing)}")

    def supported_cpuid(self) -> list[S.kvm_cpuid_entry2]:
        """KVM_GET_SUPPORTED_CPUID, growing the buffer until it fits (E2BIG)."""
        nent = 64
        while True:
            buf = S.kvm_cpuid2(nent)()
            buf.nent = nent
            try:
                fcntl.ioctl(self.fd, I.KVM_GET_SUPPORTED_CPUID, buf)
            except OSError as e:
                if e.errno == errno.E2BIG and nent < 4096:
                    nent *= 2
                    continue
                raise KvmUnavailable(f"KVM_GET_SUPPORTED_CPUID failed: {e.strerror}") from None
            return [S.kvm_cpuid_entry2.from_buffer_copy(buf.entries[i]) for i in range(buf.nent)]

    def create_vm_fd(self) -> int:
        """KVM_CREATE_VM: the new VM's file descriptor (vm.Vm.create wraps it)."""
        try:
            return fcntl.ioctl(self.fd, I.KVM_CREATE_VM, 0)
        except OSError as e:
            raise KvmUnavailable(f"KVM_CREATE_VM failed: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_libc = C.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = (C.c_int, C.c_ulong, C.c_ulong)


def ioctl_value(fd: int, request: int, value: int, what: str) -> int:
    """An ioctl whose argument is an unsigned long passed by value (fcntl.ioctl
    only takes a C int, too small for guest-physical addresses)."""
    ret = _libc.ioctl(fd, request, value)
    if ret < 0:
        raise KvmUnavailable(f"{what} failed: {os.strerror(C.get_errno())}")
    return ret


def ioctl_struct(fd: int, request: int, struct: C.Structure, what: str) -> None:
    """An ioctl with a structure argument; failures become one-line errors."""
    try:
        fcntl.ioctl(fd, request, struct)
    except OSError as e:
        raise KvmUnavailable(f"{what} failed: {e.strerror}") from None
