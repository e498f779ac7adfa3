"""Containers' state under --root: one directory per container with state.json, locked
with flock so concurrent commands on one container serialize and different containers
never contend."""
import fcntl
from . import fastjson as json
import os

from .errors import OciError

DEFAULT_ROOT = "/run/ringvisor-oci"
OCI_VERSION = "1.1.0"
ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id):
    if not container_id or not set(container_id) <= ID_CHARACTERS or container_id in (".", ".."):
        raise OciError(f"invalid container ID {container_id!r}: use letters, digits, "
                       "'_', '+', '-' and '.'")


def start_time(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), to tell it
    from a later process that reuses its PID; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Container:
    def __init__(self, root, container_id):
        check_id(container_id)
        self.root, self.id = root, container_id
        self.dir = os.path.join(root, container_id)
        self.data = {}
        self._lock_fd = None

    # -- existence and locking
    def make_dir(self):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            raise OciError(f"container {self.id} already exists") from None

    def lock(self):
        self._lock_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @classmethod
    def load(cls, root, container_id, lock=True):
        self = cls(root, container_id)
        try:
            if lock:
                self.lock()
            with open(os.path.join(self.dir, "state.json")) as f:
                self.data = json.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            self.unlock()
            raise OciError(f"container {container_id} does not exist") from None
        except ValueError:
            self.unlock()
            raise OciError(f"container {container_id}: its state file is damaged") from None
        return self

    def save(self):
        temporary = os.path.join(self.dir, "state.json.tmp")
        with open(temporary, "w") as f:
            f.write(json.dumps(self.data))
        os.rename(temporary, os.path.join(self.dir, "state.json"))

    # -- the spec's view
    def pid(self):
        return self.data.get("pid", 0)

    def alive(self):
        pid = self.pid()
        return bool(pid) and start_time(pid) == self.data.get("starttime")

    def status(self):
        saved = self.data.get("status", "creating")
        if saved == "creating":
            return "creating"
        if not self.alive():
            return "stopped"
        if saved == "created":
            return "created"
        if self.data.get("paused"):
            return "paused"
        return "running"

    def spec_state(self):
        """The runtime-spec's state (with runc's extra rootfs/created/owner fields)."""
        status = self.status()
        return {
            "ociVersion": OCI_VERSION, "id": self.id, "status": status,
            "pid": self.pid() if status in ("created", "running", "paused", "creating") else 0,
            "bundle": self.data.get("bundle", ""), "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""), "owner": self.data.get("owner", ""),
            "annotations": self.data.get("annotations") or {},
        }


def list_ids(root):
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.isfile(os.path.join(root, n, "state.json"))]
