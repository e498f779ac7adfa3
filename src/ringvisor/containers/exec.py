"""`exec`: another process in a running container (what `podman exec` asks of conmon):
the same namespaces, cgroup, capabilities, rlimits and seccomp filter as its init."""
import json
import os

from . import cgroups, process as proc, spec, syscalls as sc
from .channel import Channel
from .errors import OciError, describe
from .init import JOIN_ORDER
from .state import Container


def build_process(container, args, options):
    """The process to run: --process FILE, or the container's own process with the command
    line's overrides (runc's rules)."""
    if options.get("process"):
        try:
            with open(options["process"]) as f:
                process = json.load(f)
        except OSError as exc:
            raise OciError(f"--process {options['process']}: {exc.strerror}") from None
        except ValueError as exc:
            raise OciError(f"--process {options['process']}: not valid JSON: {exc}") from None
        if not isinstance(process, dict):
            raise OciError(f"--process {options['process']}: must be a JSON object")
    else:
        if not args:
            raise OciError("exec: a command is required (or --process FILE)")
        base = container.data["config"]["process"]
        process = {"args": list(args), "env": list(base.get("env") or []),
                   "cwd": options.get("cwd") or base.get("cwd", "/"),
                   "user": dict(base.get("user") or {}),
                   "capabilities": base.get("capabilities"),
                   "noNewPrivileges": base.get("noNewPrivileges", False) or options.get("no_new_privs", False),
                   "rlimits": base.get("rlimits") or [],
                   "terminal": options.get("tty", False)}
        if process["capabilities"] is None:
            del process["capabilities"]
        process["env"] += options.get("env") or []
        if options.get("user"):
            uid, _, gid = options["user"].partition(":")
            try:
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            except ValueError:
                raise OciError(f"--user {options['user']!r} is not UID[:GID]") from None
        if options.get("additional_gids"):
            try:
                process["user"]["additionalGids"] = [int(g) for g in options["additional_gids"]]
            except ValueError:
                raise OciError("--additional-gids takes numbers") from None
        for cap in options.get("cap") or []:
            sets = process.setdefault("capabilities", {})
            for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                if cap not in sets.setdefault(name, []):
                    sets[name].append(cap)
    spec.validate_process(process)
    return process


def exec_command(root, cid, args, options):
    container = Container.load(root, cid, lock=False)
    status = container.status()
    if status == "paused" and not options.get("ignore_paused"):
        raise OciError(f"container {cid} is paused: resume it first")
    if status not in ("running", "created", "paused"):
        raise OciError(f"container {cid} is {status}: cannot exec in it")
    process = build_process(container, args, options)
    own_terminal = None
    if process.get("terminal") and not options.get("console_socket"):
        if options.get("detach"):
            raise OciError("exec --detach with a terminal needs --console-socket")
    config = container.data["config"]
    seccomp_filter = None
    if (config.get("linux") or {}).get("seccomp"):
        from . import seccomp
        seccomp_filter = seccomp.build(config["linux"]["seccomp"])
    sock = None
    if options.get("console_socket"):
        from . import console
        sock = console.connect(options["console_socket"])
    elif process.get("terminal"):
        from . import console
        sock, own_terminal = console.socket_pair()  # a terminal of our own, as runc
    cgroup = cgroups.ContainerCgroup.from_state(container.data["cgroup"])
    init_pid = container.pid()
    preserve = int(options.get("preserve_fds") or 0)
    from .init import preload
    preload({}, sock is not None)
    c2p_read, c2p_write = os.pipe()
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    joiner = os.fork()
    if joiner == 0:
        os.close(c2p_read)
        channel = Channel(-1, c2p_write)
        _child(lambda: _join(init_pid, cgroup, process, seccomp_filter, sock, preserve,
                             channel), channel)
    os.close(c2p_write)
    if sock is not None:
        sock.close()
    channel = Channel(c2p_read, -1)
    pid = None
    try:
        while True:
            message = channel.recv()
            if message is None:
                break
            if "error" in message:
                raise OciError(message["error"])
            if "pid" in message:
                pid = message["pid"]
                os.waitpid(joiner, 0)
    finally:
        os.close(c2p_read)
    if pid is None:
        raise OciError("exec: the process died before it could run")
    if options.get("pid_file"):
        from .lifecycle import _write_pid_file
        _write_pid_file(options["pid_file"], pid)
    if options.get("detach"):
        return 0
    from .running import _reaped, _wait_for
    if own_terminal is not None:
        exited = []
        console.proxy(console.receive_master(own_terminal), lambda: _reaped(pid, exited))
        return exited[0] if exited else _wait_for(pid)
    return _wait_for(pid)


def _child(body, channel):
    try:
        body()
    except BaseException as exc:  # noqa: B036
        try:
            channel.send(error=describe(exc) if isinstance(exc, (OSError, OciError))
                         else f"{type(exc).__name__}: {exc}")
        except OSError:
            pass
    os._exit(1)


def _join(init_pid, cgroup, process, seccomp_filter, sock, preserve, channel):
    cgroup.join(0)
    fds = {}
    for kind in JOIN_ORDER:
        name = sc.NAMESPACE_PROC_NAMES[kind]
        try:
            if os.stat(f"/proc/{init_pid}/ns/{name}").st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            fds[kind] = os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY)
        except FileNotFoundError:
            continue
    for kind, fd in fds.items():
        try:
            sc.setns(fd, sc.NAMESPACE_FLAGS[kind])
        except OSError as exc:
            raise OciError(f"exec: joining the container's {kind} namespace: {exc.strerror}") from None
        os.close(fd)
    pid = os.fork()
    if pid:
        channel.send(pid=pid)
        os._exit(0)
    _child(lambda: _final(process, seccomp_filter, sock, preserve, channel), channel)


def _final(process, seccomp_filter, sock, preserve, channel):
    """In the container: the exec'd process's own settings, then exec. Success closes the
    channel (close-on-exec) without a message."""
    from .init import mark_cloexec_above
    if sock is not None:
        from . import console
        console.make_controlling_pty(sock, process.get("consoleSize"))
    proc.set_rlimits(process)
    proc.set_io_priority(process)
    proc.set_oom_score_adj(process)
    env = proc.environment(process, proc.home_of((process.get("user") or {}).get("uid", 0)))
    try:
        os.chdir(process.get("cwd", "/"))
    except OSError as exc:
        raise OciError(f"exec: cwd {process.get('cwd')}: {exc.strerror}") from None
    executable = proc.resolve_executable(process["args"][0], env)
    mark_cloexec_above(2 + preserve)
    proc.finish_and_exec(process, seccomp_filter, executable, env)
