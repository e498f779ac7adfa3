"""The container process's last steps before exec, shared by `create` and `exec`:
rlimits, user and groups, capabilities, noNewPrivileges, seccomp, cwd and environment."""
import os

from . import caps, syscalls as sc
from .errors import OciError
from .spec import RLIMITS


def set_rlimits(process):
    import resource
    for rlimit in process.get("rlimits") or []:
        number = RLIMITS[rlimit["type"]]
        limits = tuple(resource.RLIM_INFINITY if v >= 2**63 - 1 or v < 0 else v
                       for v in (rlimit["soft"], rlimit["hard"]))
        try:
            resource.setrlimit(number, limits)
        except (ValueError, OSError) as exc:
            hint = ""
            current = resource.getrlimit(number)
            if limits[1] > current[1] and current[1] != resource.RLIM_INFINITY:
                hint = (f" (the hard limit here is {current[1]}; raising it needs "
                        "CAP_SYS_RESOURCE)")
            raise OciError(f"setrlimit {rlimit['type']} {rlimit['soft']}:{rlimit['hard']}: "
                           f"{exc}{hint}") from None


def set_io_priority(process):
    from .spec import IO_CLASSES
    priority = process.get("ioPriority")
    if priority:
        sc.ioprio_set(IO_CLASSES[priority["class"]], priority.get("priority", 0))


def set_oom_score_adj(process, pid="self"):
    if "oomScoreAdj" in process:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))


def environment(process, home):
    env = {}
    for entry in process.get("env") or []:
        key, _, value = entry.partition("=")
        env[key] = value
    if "HOME" not in env:  # runc sets HOME from the container's passwd, else /
        env["HOME"] = home
    return env


def home_of(uid):
    """The home directory of uid in the container's /etc/passwd (after pivot_root)."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def resolve_executable(name, env):
    """The path of args[0] in the container (a name without '/' through the container's
    PATH), checked before the container waits for `start`, as runc does."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name)
                      for d in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":")]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if "/" in name:
        raise OciError(f"exec: {name}: no such executable file in the container")
    raise OciError(f"exec: {name!r}: executable file not found in $PATH")


def switch_user(process):
    """Groups, gid, uid; capabilities survive the uid change (KEEPCAPS) and are set after."""
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    capabilities = process.get("capabilities")
    if capabilities is not None:
        caps.drop_bounding(capabilities)
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    groups = user.get("additionalGids") or []
    try:
        if _setgroups_allowed():
            os.setgroups(groups)
        elif groups:
            raise OciError("process.user.additionalGids: setgroups is denied in this user namespace")
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise OciError(f"cannot switch to uid {uid} gid {gid}: {exc.strerror} (is it mapped "
                       "in the container's user namespace?)") from None
    if capabilities is not None:
        caps.apply_sets(capabilities)
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    os.umask(user.get("umask", 0o022))


def _setgroups_allowed():
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def finish_and_exec(process, seccomp_filter, executable, env, before_exec=None):
    """The last steps, in runc's order; seccomp comes before the user switch when
    noNewPrivileges is off (then loading it needs the privileges still held)."""
    from . import seccomp
    nnp = process.get("noNewPrivileges", False)
    if seccomp_filter is not None and not nnp:
        seccomp.load(seccomp_filter)
    switch_user(process)
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise OciError(f"process.cwd {cwd}: {exc.strerror}") from None
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if process.get("apparmorProfile"):
        # the profile the kernel switches to at exec (spec validated AppArmor is enabled)
        with open("/proc/self/attr/apparmor/exec", "w") as f:
            f.write(f"exec {process['apparmorProfile']}")
    if before_exec:
        before_exec()
    if seccomp_filter is not None and nnp:
        seccomp.load(seccomp_filter)
    os.execve(executable, process["args"], env)
