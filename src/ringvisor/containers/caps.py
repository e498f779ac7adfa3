"""Linux capabilities: names (as the runtime-spec writes them) and applying the five sets."""
from . import syscalls

# capability number by name, from linux/capability.h
CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def validate(capabilities):
    """Unknown names are an error, as in runc 1.1 (later runc only warns)."""
    if not isinstance(capabilities, dict):
        return "process.capabilities must be an object"
    for name in capabilities:
        if name not in SETS:
            return f"process.capabilities: unknown set {name!r}"
        for cap in capabilities[name] or []:
            if cap not in CAPABILITIES:
                return f"process.capabilities.{name}: unknown capability {cap!r}"
    return None


def mask(names, last):
    bits = 0
    for name in names or []:
        number = CAPABILITIES[name]
        if number <= last:  # a capability the running kernel lacks is skipped, as runc does
            bits |= 1 << number
    return bits


def drop_bounding(capabilities):
    """Drop from the bounding set every capability not listed (needs CAP_SETPCAP: do it
    before changing user)."""
    last = syscalls.last_cap()
    keep = mask(capabilities.get("bounding"), last)
    for number in range(last + 1):
        if not keep & (1 << number):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def apply_sets(capabilities):
    """Effective, permitted, inheritable, then ambient (after setuid, with KEEPCAPS set)."""
    last = syscalls.last_cap()
    syscalls.capset(mask(capabilities.get("effective"), last),
                    mask(capabilities.get("permitted"), last),
                    mask(capabilities.get("inheritable"), last))
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    # the kernel raises an ambient capability only if it is permitted and inheritable;
    # runc passes over the others (its own default spec lists ambient without inheritable)
    allowed = (mask(capabilities.get("permitted"), last)
               & mask(capabilities.get("inheritable"), last))
    for name in capabilities.get("ambient") or []:
        number = CAPABILITIES[name]
        if number <= last and allowed & (1 << number):
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
