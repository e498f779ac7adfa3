"""The container's side of `create`, in the two processes forked from it.

Stage A joins the cgroup, joins or makes the namespaces (a new user namespace gets its
id maps from `create`), then forks stage B, PID 1 of a new PID namespace, and exits.
Stage B builds the root file system, pivots into it, and waits on exec.fifo for `start`
before it execs the container's process. Both report to `create` over the channel; an
exception becomes one `error` message, never a traceback, and the process ends with
os._exit so nothing of the parent's Python runs twice.
"""
import fcntl
import os

from . import hooks, mounts, process as proc, syscalls as sc
from .errors import OciError, describe

# setns order: the user namespace first (it owns the others), mount last but one
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


def run_child(stage, plan, channel):
    try:
        stage(plan, channel)
    except BaseException as exc:  # noqa: B036 - report everything, then _exit
        try:
            channel.send(error=describe(exc) if isinstance(exc, (OSError, OciError))
                         else f"{type(exc).__name__}: {exc}")
        except OSError:
            pass
    os._exit(1)


def stage_a(plan, channel):
    namespaces = plan.namespaces
    plan.container.unlock()  # the lock stays with `create`, not with the container
    plan.cgroup.join(0)
    proc.set_oom_score_adj(plan.process)
    for kind in JOIN_ORDER:
        path = namespaces.get(kind)
        if path:
            fd = os.open(path, os.O_RDONLY)
            try:
                sc.setns(fd, sc.NAMESPACE_FLAGS[kind])
            except OSError as exc:
                raise OciError(f"joining the {kind} namespace {path}: {exc.strerror}") from None
            finally:
                os.close(fd)
    if "user" in namespaces and namespaces["user"] is None:
        sc.unshare(sc.NAMESPACE_FLAGS["user"])
        channel.send(usermap=os.getpid())
        reply = channel.recv()
        if not reply or not reply.get("ok"):
            os._exit(1)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    for kind, path in namespaces.items():
        if path is None and kind != "user":
            flags |= sc.NAMESPACE_FLAGS[kind]
    sc.unshare(flags)
    if namespaces.get("time", "joined") is None:
        write_time_offsets(plan.config["linux"].get("timeOffsets") or {})
    pid = os.fork()
    if pid == 0:
        run_child(stage_b, plan, channel)
    channel.send(pid=pid)
    os._exit(0)


def write_time_offsets(offsets):
    lines = []
    for clock in ("monotonic", "boottime"):
        if clock in offsets:
            value = offsets[clock]
            lines.append(f"{clock} {value.get('secs', 0)} {value.get('nanosecs', 0)}\n")
    if lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))


def stage_b(plan, channel):
    config, rootfs, linux = plan.config, plan.rootfs, plan.config["linux"]
    namespaces = plan.namespaces
    os.setsid()
    if namespaces.get("network", "joined") is None:
        sc.loopback_up()
    propagation = mounts.PROPAGATION.get(linux.get("rootfsPropagation") or "rslave")
    sc.mount(None, "/", None, propagation)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    for entry in config["mounts"]:
        try:
            mounts.mount_one(rootfs, entry, plan.cgroup_mounts, config["bundle"])
        except OSError as exc:
            raise OciError(f"mount {entry['destination']} ({entry.get('type') or 'bind'}): "
                           f"{exc.strerror}") from None
    mounts.make_devices(rootfs, linux.get("devices") or [], "user" in namespaces)
    if "hostname" in config:
        sc.sethostname(config["hostname"])
    if "domainname" in config:
        sc.setdomainname(config["domainname"])
    fifo = os.open(plan.fifo, os.O_RDWR | os.O_CLOEXEC)
    if plan.runtime_hooks:
        channel.send(hooks=True)
        reply = channel.recv()
        if not reply or not reply.get("ok"):
            os._exit(1)
    hooks.run(config, "createContainer", plan.state_for_hooks(os.getpid()))
    if plan.no_pivot:
        mounts.move_root(rootfs)
    else:
        mounts.pivot(rootfs)
    if plan.console_socket is not None:
        from . import console
        console.make_controlling_pty(plan.console_socket, plan.process.get("consoleSize"))
    for key, value in (linux.get("sysctl") or {}).items():  # before /proc/sys turns read-only
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    mounts.make_readonly(linux.get("readonlyPaths") or [])
    mounts.mask(linux.get("maskedPaths") or [])
    if config["root"].get("readonly"):
        mounts.remount_root_readonly()
    if linux.get("rootfsPropagation"):
        sc.mount(None, "/", None, mounts.PROPAGATION[linux["rootfsPropagation"]])
    personality = linux.get("personality")
    if personality:
        from .spec import PERSONALITY_DOMAINS
        sc.personality(PERSONALITY_DOMAINS[personality["domain"]])
    process = plan.process
    proc.set_rlimits(process)
    proc.set_io_priority(process)
    env = proc.environment(process, proc.home_of((process.get("user") or {}).get("uid", 0)))
    try:
        os.chdir(process.get("cwd", "/"))
    except OSError as exc:
        raise OciError(f"process.cwd {process.get('cwd')}: {exc.strerror}") from None
    executable = proc.resolve_executable(process["args"][0], env)
    mark_cloexec_above(2 + plan.preserve_fds)
    channel.send(ready=True)
    channel.close()
    if os.read(fifo, 1) != b"0":
        os._exit(1)
    os.close(fifo)
    try:
        hooks.run(config, "startContainer", plan.state_for_hooks(os.getpid(), "running"))
        proc.finish_and_exec(process, plan.seccomp, executable, env)
    except (OSError, OciError) as exc:
        os.write(2, f"ringvisor-oci: {describe(exc)}\n".encode())
        os._exit(127)


def preload(config, terminal):
    """Import, before forking, whatever the set-up may need: once in the container's user
    namespace or root, Python can no longer read its own modules on the host."""
    import resource  # noqa: F401 - rlimits
    if terminal:
        from . import console  # noqa: F401
    if config.get("hooks"):
        import subprocess  # noqa: F401
    if (config.get("linux") or {}).get("namespace_map", {}).get("network", "") is None:
        import fcntl  # noqa: F401 - loopback_up
    from . import seccomp  # noqa: F401


def mark_cloexec_above(last_kept):
    """Only stdio and the preserved fds reach the container's process."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > last_kept:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
            except OSError:
                pass
    for fd in range(3, last_kept + 1):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
