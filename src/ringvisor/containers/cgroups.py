"""Control groups v1, v2 and the hybrid of both: find the hierarchies, make the container's
cgroup, write its limits, and remove it.

The layout is detected, never assumed: /sys/fs/cgroup is cgroup2 on a unified host;
otherwise each v1 controller has its own hierarchy and a v2 mount at
/sys/fs/cgroup/unified may carry the controllers v1 lacks (hybrid). A controller is
driven through the hierarchy that has it.
"""
import errno
import os

from .errors import OciError
from . import resources as translate

class Hierarchy:
    """One mounted cgroup hierarchy: its mount point, version, controllers and the cgroup
    this process is in there."""

    def __init__(self, mount, version, controllers, own):
        self.mount, self.version, self.controllers, self.own = mount, version, controllers, own

    def dir_for(self, path):
        return os.path.join(self.mount, path.lstrip("/"))


def _mounted():
    """[(mount point, fstype, super options)] of the cgroup mounts in this mount namespace."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4].replace("\\040", " "), fstype, fields[sep + 3].split(",")))
    return found


def _own_paths():
    """{controller or '' for v2: path} from /proc/self/cgroup."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    return own


def hierarchies():
    """The cgroup hierarchies of this host, v1 ones first; a controller listed twice (v1 and
    the hybrid unified mount) is driven through v1."""
    own = _own_paths()
    found, taken = [], set()
    mounts = _mounted()
    for mount, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        controllers = [o for o in options if o in translate.V1_CONTROLLERS or o.startswith("name=")]
        if not controllers or set(controllers) & taken:
            continue
        taken.update(controllers)
        found.append(Hierarchy(mount, 1, controllers, own.get(controllers[0], "/")))
    for mount, fstype, options in mounts:
        if fstype == "cgroup2":
            try:
                with open(os.path.join(mount, "cgroup.controllers")) as f:
                    available = f.read().split()
            except OSError:
                available = []
            found.append(Hierarchy(mount, 2, [c for c in available if c not in taken], own.get("", "/")))
            break
    return found


def layout():
    """'v2' (unified), 'hybrid' (v1 with a v2 mount) or 'v1' for this host."""
    versions = {h.version for h in hierarchies()}
    if versions == {2}:
        return "v2"
    return "hybrid" if 2 in versions else "v1"


def resolve_path(cgroups_path, container_id, own, version=1):
    """runc's rule: an absolute cgroupsPath is taken from the hierarchy's root; a relative
    one (and the default, the container's ID) sits below the runtime's own cgroup on v1,
    and below its parent on v2 (the runtime's own cgroup has tasks, and v2 enables no
    controller for the children of a cgroup with tasks)."""
    if cgroups_path and cgroups_path.startswith("/"):
        return os.path.normpath(cgroups_path)
    if cgroups_path and ":" in cgroups_path:
        raise OciError(f"cgroupsPath {cgroups_path!r} is in systemd's slice:prefix:name form, "
                       "but ringvisor-oci drives cgroupfs only")
    base = os.path.dirname(own) if version == 2 else own
    return os.path.normpath(os.path.join(base, cgroups_path or container_id))


class ContainerCgroup:
    """The container's cgroup in every hierarchy. `dirs` are the directories this runtime
    made (removed again by destroy, deepest first)."""

    def __init__(self, cgroups_path, container_id, found=None):
        self.hierarchies = found if found is not None else hierarchies()
        self.paths = {}
        for h in self.hierarchies:
            self.paths[h.mount] = resolve_path(cgroups_path, container_id, h.own, h.version)
        self.created = []

    def to_state(self):
        return {"paths": self.paths, "created": self.created}

    @classmethod
    def from_state(cls, saved):
        self = cls.__new__(cls)
        self.hierarchies = hierarchies()
        self.paths = {h.mount: saved["paths"][h.mount] for h in self.hierarchies
                      if h.mount in saved["paths"]}
        self.created = saved.get("created", [])
        return self

    def dirs(self):
        return [(h, h.dir_for(self.paths[h.mount])) for h in self.hierarchies if h.mount in self.paths]

    def create(self):
        for h, target in self.dirs():
            missing = []
            probe = target
            while not os.path.isdir(probe):
                missing.append(probe)
                probe = os.path.dirname(probe)
            for directory in reversed(missing):
                os.mkdir(directory)
                self.created.append(directory)
                if h.version == 1 and "cpuset" in h.controllers:
                    _inherit_cpuset(directory)
            if h.version == 2:
                _enable_down_to(h.mount, target, h.controllers)

    def apply(self, resources):
        """Write every limit; a controller the host lacks, or a value the kernel refuses,
        is an error naming the resource."""
        if not resources:
            return
        by_controller = {}
        for h, target in self.dirs():
            for controller in h.controllers:
                by_controller[controller] = (h, target)
            if h.version == 2:
                by_controller["cgroup"] = (h, target)  # the core files (unified's cgroup.*)
        if resources.get("rdma"):
            raise OciError("linux.resources.rdma is not supported by ringvisor-oci")
        if resources.get("unified") and not any(h.version == 2 for h in self.hierarchies):
            raise OciError("linux.resources.unified holds cgroup v2 files, and this host "
                           "has no cgroup v2 hierarchy")
        for key in resources.get("unified") or {}:
            if "/" in key or key.startswith("."):
                raise OciError(f"linux.resources.unified: {key!r} is not a cgroup file name")
            if key.split(".", 1)[0] in by_controller and \
                    by_controller[key.split(".", 1)[0]][0].version != 2:
                raise OciError(f"linux.resources.unified: {key} belongs to a controller that "
                               "is in a v1 hierarchy on this host")
        pending = [w for w in translate.writes(resources, by_controller)
                   if not _needless_swap_write(w, resources, by_controller)]
        for controller, _, _, what in pending:
            if controller not in by_controller:
                raise OciError(f"linux.resources.{what}: the {controller} cgroup controller "
                               "is not available on this host")
        while pending:
            item = pending.pop(0)
            try:
                self._write(by_controller, *item)
            except OciError:
                if item[1] != "memory.limit_in_bytes" or not pending or \
                        pending[0][1] != "memory.memsw.limit_in_bytes":
                    raise
                self._write(by_controller, *pending.pop(0))  # raise memory+swap first
                self._write(by_controller, *item)
        if resources.get("devices") is not None and "devices" not in by_controller:
            unified = [target for h, target in self.dirs() if h.version == 2]
            if unified:
                from . import devices_bpf
                devices_bpf.attach(unified[0], resources["devices"]
                                   + translate.allowed_device_rules())

    @staticmethod
    def _write(by_controller, controller, filename, value, what):
        path = os.path.join(by_controller[controller][1], filename)
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise OciError(f"linux.resources.{what}: cannot write {value!r} to {path}: "
                           f"{exc.strerror}") from None

    def join(self, pid=0):
        """Move a process (0: this one) into the container's cgroups. A single-threaded
        process joins a v1 hierarchy through `tasks` with "0": the kernel then moves the
        calling thread without its global threadgroup lock, whose first writer waits an
        RCU grace period (about 10 ms here, a sixth of a trivial run)."""
        for h, target in self.dirs():
            name = "tasks" if h.version == 1 and pid == 0 and _single_threaded() else "cgroup.procs"
            with open(os.path.join(target, name), "w") as f:
                f.write(str(pid))

    def pids(self):
        found = set()
        for h, target in self.dirs():
            try:
                with open(os.path.join(target, "cgroup.procs")) as f:
                    found.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return found

    def freezer(self, frozen):
        """Pause (True) or resume the container; v1 freezer or v2 cgroup.freeze."""
        for h, target in self.dirs():
            if h.version == 1 and "freezer" in h.controllers:
                with open(os.path.join(target, "freezer.state"), "w") as f:
                    f.write("FROZEN" if frozen else "THAWED")
                return
            if h.version == 2 and os.path.exists(os.path.join(target, "cgroup.freeze")):
                with open(os.path.join(target, "cgroup.freeze"), "w") as f:
                    f.write("1" if frozen else "0")
                return
        raise OciError("no freezer cgroup controller on this host: cannot pause")

    def destroy(self):
        """Remove the directories this runtime made; a cgroup still busy is retried briefly
        (the kernel frees it a moment after its last task exits)."""
        import time
        for directory in sorted(self.created, key=len, reverse=True):
            for _ in range(200):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)


def _single_threaded():
    with open("/proc/self/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[17] == b"1"  # num_threads


def _needless_swap_write(write, resources, by_controller):
    """A host without swap accounting has no memsw/swap.max file: asking for no swap
    beyond the memory limit is then already true, anything else is an error later."""
    controller, filename, value, _ = write
    if filename not in ("memory.memsw.limit_in_bytes", "memory.swap.max"):
        return False
    if os.path.exists(os.path.join(by_controller[controller][1], filename)):
        return False
    memory = resources.get("memory") or {}
    return value == "0" or memory.get("swap") == memory.get("limit")


def _inherit_cpuset(directory):
    """A new v1 cpuset is empty and refuses tasks: copy its parent's cpus and mems."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(os.path.join(directory, name), "w") as f:
            f.write(value)


def _enable_down_to(mount, target, controllers):
    """v2: a cgroup has only the controllers its parent enables in cgroup.subtree_control,
    so enable them on every ancestor of the target, from the root down (as runc)."""
    relative = os.path.relpath(os.path.dirname(target), mount)
    parts = [] if relative == "." else relative.split("/")
    directory = mount
    for part in [None] + parts:
        if part:
            directory = os.path.join(directory, part)
        control = os.path.join(directory, "cgroup.subtree_control")
        try:
            with open(control) as f:
                enabled = set(f.read().split())
        except OSError:
            return
        for controller in controllers:
            if controller in enabled:
                continue
            try:
                with open(control, "w") as f:
                    f.write(f"+{controller}")
            except OSError:
                pass  # one the parent cannot delegate (tasks in it, or not available)

