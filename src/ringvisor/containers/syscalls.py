"""The Linux system calls Python 3.11's os module lacks, through ctypes over libc.

Every wrapper raises OSError with the errno and the call's name, so callers
turn failures into one line for the user.
"""
import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# clone(2) namespace flags, keyed by runtime-spec namespace type.
NAMESPACE_FLAGS = {
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "network": 0x40000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
# The names of those namespaces under /proc/PID/ns.
NAMESPACE_PROC_NAMES = {
    "mount": "mnt", "uts": "uts", "ipc": "ipc", "user": "user", "pid": "pid",
    "network": "net", "cgroup": "cgroup", "time": "time",
}

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2

SYS_PIVOT_ROOT = 155  # x86_64
SYS_CAPGET = 125
SYS_CAPSET = 126

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_GET_SECUREBITS = 27


def _check(result, name, *detail):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}", *detail)
    return result


def unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd, nstype=0):
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source, target, fstype, flags=0, data=None):
    def b(s):
        return None if s is None else os.fsencode(s)
    _check(_libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data)),
           "mount", target)


def umount2(target, flags=0):
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root, put_old):
    _check(_libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), os.fsencode(new_root),
                         os.fsencode(put_old)), "pivot_root", new_root)


def sethostname(name):
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def setdomainname(name):
    raw = name.encode()
    _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), "setdomainname")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl")


SYS_IOPRIO_SET = 251  # x86-64
IOPRIO_WHO_PROCESS = 1


def ioprio_set(io_class, priority):
    _check(_libc.syscall(ctypes.c_long(SYS_IOPRIO_SET), ctypes.c_int(IOPRIO_WHO_PROCESS),
                         ctypes.c_int(0), ctypes.c_int((io_class << 13) | priority)), "ioprio_set")


def personality(persona):
    return _check(_libc.personality(ctypes.c_ulong(persona)), "personality")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capset(effective, permitted, inheritable):
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(ctypes.c_long(SYS_CAPSET), ctypes.byref(header), data), "capset")


def last_cap():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def loopback_up():
    """Bring `lo` up in a new network namespace (runc does), with two ioctls: pyroute2
    costs 150 ms to import and the socket module 3 ms, more than this whole call."""
    import fcntl
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    fd = _check(_libc.socket(2, 2 | 0o2000000, 0), "socket")  # AF_INET, SOCK_DGRAM|CLOEXEC
    try:
        request = bytearray(40)  # struct ifreq: 16-byte name, then the flags
        request[:2] = b"lo"
        fcntl.ioctl(fd, SIOCGIFFLAGS, request)
        request[16] |= IFF_UP
        fcntl.ioctl(fd, SIOCSIFFLAGS, request)
    finally:
        os.close(fd)
