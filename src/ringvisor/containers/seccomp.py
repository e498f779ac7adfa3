"""linux.seccomp (the runtime-spec's profile format, which podman's default profile uses)
compiled into a libseccomp filter through pyseccomp.

The filter is built by `create` before anything exists, so a bad profile fails cleanly;
the container's init loads it just before exec.
"""
import errno

from .errors import OciError

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
           "SCMP_ACT_NOTIFY")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
             "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
          "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
          "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
          "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
          "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64")
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW")


def _action(lib, name, errno_ret, default_errno=errno.EPERM):
    table = {
        "SCMP_ACT_KILL": lib.KILL, "SCMP_ACT_KILL_THREAD": lib.KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": lib.KILL_PROCESS, "SCMP_ACT_TRAP": lib.TRAP,
        "SCMP_ACT_ALLOW": lib.ALLOW, "SCMP_ACT_LOG": lib.LOG,
    }
    if name in table:
        return table[name]
    if name == "SCMP_ACT_ERRNO":
        return lib.ERRNO(default_errno if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return lib.TRACE(default_errno if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_NOTIFY":
        raise OciError("linux.seccomp: SCMP_ACT_NOTIFY needs a listenerPath agent, which "
                       "ringvisor-oci does not support")
    raise OciError(f"linux.seccomp: unknown action {name!r}")


def _operator(lib, name):
    table = {"SCMP_CMP_NE": lib.NE, "SCMP_CMP_LT": lib.LT, "SCMP_CMP_LE": lib.LE,
             "SCMP_CMP_EQ": lib.EQ, "SCMP_CMP_GE": lib.GE, "SCMP_CMP_GT": lib.GT,
             "SCMP_CMP_MASKED_EQ": lib.MASKED_EQ}
    if name not in table:
        raise OciError(f"linux.seccomp: unknown argument operator {name!r}")
    return table[name]


def build(profile):
    """A loaded-later pyseccomp.SyscallFilter for the profile, or an OciError naming the
    first thing wrong with it. Syscall names this libseccomp does not know are skipped,
    as runc does (profiles list syscalls of newer kernels)."""
    if not isinstance(profile, dict):
        raise OciError("linux.seccomp must be an object")
    try:
        import pyseccomp as lib
    except (ImportError, RuntimeError) as exc:
        raise OciError(f"linux.seccomp is set but libseccomp is unavailable: {exc}") from None
    if profile.get("listenerPath"):
        raise OciError("linux.seccomp.listenerPath is not supported by ringvisor-oci")
    default_errno = profile.get("defaultErrnoRet")
    default = _action(lib, profile.get("defaultAction"), default_errno)
    filt = lib.SyscallFilter(default)
    filt.set_attr(lib.Attr.CTL_NNP, 0)  # noNewPrivileges is the config's choice, not libseccomp's
    for flag in profile.get("flags") or []:
        if flag not in FLAGS:
            raise OciError(f"linux.seccomp: unknown flag {flag!r}")
        if flag == "SECCOMP_FILTER_FLAG_TSYNC":
            filt.set_attr(lib.Attr.CTL_TSYNC, 1)
        elif flag == "SECCOMP_FILTER_FLAG_LOG":
            filt.set_attr(lib.Attr.CTL_LOG, 1)
        elif flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW":
            filt.set_attr(lib.Attr.CTL_SSB, 1)
    for arch in profile.get("architectures") or []:
        if arch not in ARCHES:
            raise OciError(f"linux.seccomp: unknown architecture {arch!r}")
        value = getattr(lib.Arch, arch[len("SCMP_ARCH_"):])
        try:
            filt.add_arch(value)
        except OSError as exc:
            if exc.errno != errno.EEXIST:  # the native arch is always there
                raise OciError(f"linux.seccomp: architecture {arch}: {exc.strerror}") from None
    for number, rule in enumerate(profile.get("syscalls") or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
            raise OciError(f"linux.seccomp.syscalls[{number}]: needs a list of names")
        action = _action(lib, rule.get("action"), rule.get("errnoRet"))
        args = []
        for arg in rule.get("args") or []:
            index = arg.get("index")
            if not isinstance(index, int) or not 0 <= index < 6:
                raise OciError(f"linux.seccomp.syscalls[{number}]: argument index {index!r} "
                               "is not 0..5")
            args.append(lib.Arg(index, _operator(lib, arg.get("op")), arg.get("value", 0),
                                arg.get("valueTwo", 0)))
        if action == default:
            continue  # libseccomp refuses a rule equal to the default action
        # conditions on one argument twice cannot share a rule: one rule each (runc)
        indexes = [a["index"] for a in rule.get("args") or []]
        groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
        for name in rule["names"]:
            if not isinstance(name, str):
                raise OciError(f"linux.seccomp.syscalls[{number}]: {name!r} is not a name")
            if lib.resolve_syscall(lib.Arch.NATIVE, name) < 0:
                continue  # a syscall this libseccomp does not know: skipped, as runc
            for group in groups:
                try:
                    filt.add_rule(action, name, *group)
                except OSError as exc:
                    if exc.errno == errno.EEXIST:
                        continue  # the same rule twice (podman's profiles have some)
                    raise OciError(f"linux.seccomp: rule for {name}: {exc.strerror}") from None
    return filt


def load(filt):
    filt.load()
