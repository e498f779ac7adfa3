"""The runtime-spec's operations: create, start, state, kill, delete (and run, pause,
resume), with each container's state under --root."""
import os
import time

import _signal as signal  # the C module: `signal` would import enum (5 ms of a trivial run)

from . import cgroups, hooks, spec as spec_mod
from .channel import Channel
from .errors import OciError
from .state import OCI_VERSION, Container, start_time


class Plan:
    """What the set-up processes need, computed by `create` before it forks."""

    def __init__(self, config, container, cgroup, console_socket, preserve_fds, no_pivot=False):
        self.config = config
        self.rootfs = config["rootfs"]
        self.process = config["process"]
        self.namespaces = config["linux"]["namespace_map"]
        self.cgroup = cgroup
        self.fifo = os.path.join(container.dir, "exec.fifo")
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.container = container
        self.seccomp = None
        stages = config.get("hooks") or {}
        self.runtime_hooks = bool(stages.get("prestart") or stages.get("createRuntime"))
        self.cgroup_mounts = cgroup_mounts(cgroup, "cgroup" in self.namespaces
                                           and self.namespaces["cgroup"] is None)

    def state_for_hooks(self, pid, status="creating"):
        return {"ociVersion": OCI_VERSION, "id": self.container.id, "status": status,
                "pid": pid, "bundle": self.config["bundle"],
                "annotations": self.config.get("annotations") or {}}


def cgroup_mounts(cgroup, own_namespace):
    """(name, fstype, options, host dir or None) for each hierarchy, for `cgroup` mounts."""
    out = []
    for h, target in cgroup.dirs():
        if h.version == 2 and len(cgroup.hierarchies) == 1:
            return [("", "cgroup2", None, None if own_namespace else target)]
        name = os.path.basename(h.mount)
        options = ",".join(h.controllers) if h.version == 1 else None
        out.append((name, "cgroup" if h.version == 1 else "cgroup2", options,
                    None if own_namespace else target))
    return out


def _write_pid_file(path, pid):
    path = os.path.abspath(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        f.write(str(pid))
    os.rename(temporary, path)


def _write_id_maps(pid, linux):
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux[key])
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as exc:
            raise OciError(f"linux.{key}: the kernel refused {lines.strip()!r}: "
                           f"{exc.strerror}") from None


def create(root, container_id, bundle, pid_file=None, console_socket=None, preserve_fds=0,
           no_pivot=False):
    """Create the container and leave its init waiting for `start`; on any failure remove
    everything made so far (state, cgroup, processes) before reporting it."""
    config = spec_mod.load_bundle(bundle)
    process = config["process"]
    if process.get("terminal") and not console_socket:
        raise OciError("process.terminal is true: --console-socket is required")
    if console_socket and not process.get("terminal"):
        raise OciError("--console-socket was given but process.terminal is false")
    seccomp_filter = None
    if config["linux"].get("seccomp"):
        from . import seccomp
        seccomp_filter = seccomp.build(config["linux"]["seccomp"])
    container = Container(root, container_id)
    container.make_dir()
    init_pid = None
    cgroup = None
    sock = None
    try:
        container.lock()
        container.data = {
            "id": container_id, "status": "creating", "bundle": config["bundle"],
            "rootfs": config["rootfs"], "annotations": config.get("annotations") or {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "owner": "",
            "config": {k: v for k, v in config.items() if k not in ("bundle", "rootfs")},
        }
        cgroup = cgroups.ContainerCgroup(config["linux"].get("cgroupsPath"), container_id)
        cgroup.create()
        container.data["cgroup"] = cgroup.to_state()
        container.save()
        resources = dict(config["linux"].get("resources") or {})
        if resources.get("devices") is not None:
            resources["devices"] = resources["devices"] + [
                {"allow": True, "type": d["type"], "major": d.get("major"),
                 "minor": d.get("minor"), "access": "rwm"}
                for d in config["linux"].get("devices") or [] if d["type"] != "p"]
        cgroup.apply(resources)
        os.mkfifo(os.path.join(container.dir, "exec.fifo"), 0o600)
        if isinstance(console_socket, str):
            from . import console
            sock = console.connect(console_socket)
        elif console_socket is not None:
            sock = console_socket  # run's own end of a socket pair
        plan = Plan(config, container, cgroup, sock, preserve_fds, no_pivot)
        plan.seccomp = seccomp_filter
        init_pid = _spawn(plan)
        if sock is not None:
            sock.close()
        container.data.update(status="created", pid=init_pid, starttime=start_time(init_pid))
        container.save()
        if pid_file:
            _write_pid_file(pid_file, init_pid)
    except BaseException:
        if sock is not None:
            sock.close()
        _destroy(container, cgroup, init_pid)
        raise
    finally:
        container.unlock()
    return container


def _spawn(plan):
    """Fork stage A and follow the set-up to `ready`; returns the init's host PID. The
    runtime is a child subreaper meanwhile, so a failed init is reaped here."""
    from . import init, syscalls as sc
    c2p_read, c2p_write = os.pipe()
    p2c_read, p2c_write = os.pipe()
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    init.preload(plan.config, plan.console_socket is not None)
    stage_a = os.fork()
    if stage_a == 0:
        os.close(c2p_read)
        os.close(p2c_write)
        init.run_child(init.stage_a, plan, Channel(p2c_read, c2p_write))
    os.close(c2p_write)
    os.close(p2c_read)
    channel = Channel(c2p_read, p2c_write)
    init_pid = None
    try:
        while True:
            message = channel.recv()
            if message is None:
                raise OciError("the container's init died during set-up")
            if "error" in message:
                raise OciError(message["error"])
            if "usermap" in message:
                _write_id_maps(message["usermap"], plan.config["linux"])
                channel.send(ok=True)
            elif "pid" in message:
                init_pid = message["pid"]
                plan.pid = init_pid
                os.waitpid(stage_a, 0)
            elif "hooks" in message:
                state = plan.state_for_hooks(init_pid)
                hooks.run(plan.config, "prestart", state)
                hooks.run(plan.config, "createRuntime", state)
                channel.send(ok=True)
            elif message.get("ready"):
                return init_pid
    except BaseException:
        if init_pid is not None:
            _kill_and_reap(init_pid)
        try:
            os.waitpid(stage_a, os.WNOHANG)
        except ChildProcessError:
            pass
        raise
    finally:
        channel.close()
        if init_pid is None:
            try:
                os.waitpid(stage_a, 0)
            except ChildProcessError:
                pass


def _kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _destroy(container, cgroup, init_pid=None):
    """Remove everything a container owns on the host: its processes, cgroup and state."""
    if cgroup is not None:
        for _ in range(100):
            pids = cgroup.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap_children()
            time.sleep(0.002)
        cgroup.destroy()
    _remove_state_dir(container.dir)


def _remove_state_dir(directory):
    """The state directory holds only files (state.json, exec.fifo)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    os.rmdir(directory)


def _reap_children():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def start(root, container_id):
    container = Container.load(root, container_id)
    try:
        status = container.status()
        if status != "created":
            raise OciError(f"container {container_id} is {status}: only a created container "
                           "can be started")
        fifo = os.path.join(container.dir, "exec.fifo")
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            raise OciError(f"container {container_id}: its init is gone") from None
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        container.data["status"] = "running"
        container.save()
        config = container.data["config"]
        config["bundle"] = container.data["bundle"]
        state = container.spec_state()
        hooks.run(config, "poststart", state, must_succeed=False, log=_warn)
    finally:
        container.unlock()


def _warn(message):
    os.write(2, f"ringvisor-oci: warning: {message}\n".encode())


def state(root, container_id):
    container = Container.load(root, container_id, lock=False)
    return container.spec_state()


def kill(root, container_id, signal_text=None, all_processes=False):
    from .signals import parse_signal
    number = parse_signal(signal_text)
    container = Container.load(root, container_id)
    try:
        status = container.status()
        if status not in ("created", "running", "paused"):
            raise OciError(f"container {container_id} is {status}: there is nothing to signal")
        if all_processes:
            cgroup = cgroups.ContainerCgroup.from_state(container.data["cgroup"])
            for pid in cgroup.pids():
                try:
                    os.kill(pid, number)
                except ProcessLookupError:
                    pass
            if status == "paused" and number == signal.SIGKILL:
                cgroup.freezer(False)
        else:
            os.kill(container.pid(), number)
    finally:
        container.unlock()


def delete(root, container_id, force=False):
    container = Container.load(root, container_id)
    try:
        status = container.status()
        if status in ("running", "paused") and not force:
            raise OciError(f"container {container_id} is {status}: stop it first or use --force")
        if status == "creating" and not force:
            raise OciError(f"container {container_id} is still being created")
        cgroup = cgroups.ContainerCgroup.from_state(container.data["cgroup"]) \
            if "cgroup" in container.data else None
        if cgroup is not None and status == "paused":
            cgroup.freezer(False)
        if container.alive():
            try:
                os.kill(container.pid(), signal.SIGKILL)
            except ProcessLookupError:
                pass
        _destroy(container, cgroup)
        config = container.data.get("config") or {}
        config["bundle"] = container.data.get("bundle", "")
        final = container.spec_state()
        final["status"] = "stopped"
        hooks.run(config, "poststop", final, must_succeed=False, log=_warn)
    finally:
        container.unlock()


def pause(root, container_id, frozen=True):
    container = Container.load(root, container_id)
    try:
        status = container.status()
        wanted = "running" if frozen else "paused"
        if status != wanted:
            raise OciError(f"container {container_id} is {status}, not {wanted}")
        cgroups.ContainerCgroup.from_state(container.data["cgroup"]).freezer(frozen)
        container.data["paused"] = frozen
        container.save()
    finally:
        container.unlock()
