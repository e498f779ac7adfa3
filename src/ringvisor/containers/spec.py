"""config.json (runtime-spec 1.0/1.1): load a bundle and refuse, in one line, what cannot run.

Everything is checked before anything is created, so a bad bundle leaves nothing
behind. The configuration stays a plain dict (the spec's own shape); this module
only adds `rootfs` (the absolute root path) and fills runc's defaults.
"""
from . import fastjson as json
import os

from . import caps
from .errors import OciError
from .syscalls import NAMESPACE_FLAGS

RLIMITS = {  # RLIMIT_* number by runtime-spec name
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
IO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
DEVICE_TYPES = ("c", "b", "u", "p")
HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer",
               "poststart", "poststop")
# sysctls that need a namespace of the container's own (runc's validator)
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def fail(message):
    raise OciError(message)


def load_bundle(bundle, need_process=True):
    bundle = os.path.abspath(bundle or ".")
    if not os.path.isdir(bundle):
        fail(f"bundle {bundle}: no such directory")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read())
    except FileNotFoundError:
        fail(f"{path}: no such file (the bundle has no config.json)")
    except (UnicodeDecodeError, ValueError) as exc:
        fail(f"{path}: not valid JSON: {exc}")
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    if not isinstance(config, dict):
        fail(f"{path}: the configuration must be a JSON object")
    validate(config, bundle, need_process)
    return config


def _expect(value, kind, what):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = {str: "a string", int: "an integer", list: "a list", dict: "an object",
                bool: "true or false"}.get(kind, str(kind))
        fail(f"config.json: {what} must be {name}")
    return value


def validate(config, bundle, need_process=True):
    version = config.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        fail(f"config.json: ociVersion {version!r} is not a 1.x runtime-spec version")
    root = _expect(config.get("root"), dict, "root")
    root_path = _expect(root.get("path"), str, "root.path")
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        fail(f"root.path {rootfs}: no such directory")
    config["rootfs"] = rootfs
    config["bundle"] = bundle
    process = config.get("process")
    if process is None:
        if need_process:
            fail("config.json: process is required to create a container")
    else:
        validate_process(_expect(process, dict, "process"))
    linux = config.setdefault("linux", {})
    _expect(linux, dict, "linux")
    namespaces = validate_namespaces(linux)
    if "hostname" in config:
        _expect(config["hostname"], str, "hostname")
        if "uts" not in namespaces:
            fail("config.json: hostname is set but the container has no UTS namespace of its own")
    if "domainname" in config and "uts" not in namespaces:
        fail("config.json: domainname is set but the container has no UTS namespace of its own")
    if "mount" not in namespaces:
        fail("config.json: ringvisor-oci needs a mount namespace (pivot_root), as runc does")
    validate_mappings(linux, namespaces)
    for mount in _expect(config.setdefault("mounts", []), list, "mounts"):
        _expect(mount, dict, "each mount")
        dest = _expect(mount.get("destination"), str, "mounts[].destination")
        if not dest.startswith("/"):
            fail(f"config.json: mount destination {dest!r} is not absolute")
        for option in _expect(mount.get("options", []), list, "mounts[].options"):
            _expect(option, str, "mount options")
        if mount.get("uidMappings") or mount.get("gidMappings"):
            fail(f"config.json: mount {dest}: id-mapped mounts are not supported by ringvisor-oci")
    for device in _expect(linux.get("devices", []), list, "linux.devices"):
        _expect(device, dict, "each device")
        if device.get("type") not in DEVICE_TYPES:
            fail(f"config.json: device {device.get('path')!r}: type must be one of c, b, u, p")
        if not str(device.get("path", "")).startswith("/dev/"):
            fail(f"config.json: device path {device.get('path')!r} is not under /dev")
        if device["type"] != "p":
            _expect(device.get("major"), int, f"major of {device['path']}")
            _expect(device.get("minor"), int, f"minor of {device['path']}")
    validate_sysctl(linux, namespaces)
    if linux.get("intelRdt"):
        fail("config.json: linux.intelRdt is not supported by ringvisor-oci")
    if linux.get("mountLabel"):
        fail("config.json: linux.mountLabel is set but SELinux is not enabled on this host")
    personality = linux.get("personality")
    if personality is not None:
        domain = _expect(personality, dict, "linux.personality").get("domain")
        if domain not in PERSONALITY_DOMAINS:
            fail(f"config.json: linux.personality.domain {domain!r} is not LINUX or LINUX32")
    propagation = linux.get("rootfsPropagation", "")
    if propagation and propagation not in ("shared", "slave", "private", "unbindable",
                                           "rshared", "rslave", "rprivate", "runbindable"):
        fail(f"config.json: linux.rootfsPropagation {propagation!r} is not a propagation type")
    hooks = _expect(config.get("hooks", {}), dict, "hooks")
    for stage, entries in hooks.items():
        if stage not in HOOK_STAGES:
            fail(f"config.json: unknown hook stage {stage!r}")
        for hook in _expect(entries or [], list, f"hooks.{stage}"):
            path = _expect(_expect(hook, dict, f"hooks.{stage}[]").get("path"), str,
                           f"hooks.{stage}[].path")
            if not path.startswith("/"):
                fail(f"config.json: hook path {path!r} is not absolute")
            timeout = hook.get("timeout")
            if timeout is not None and (_expect(timeout, int, "hook timeout") <= 0):
                fail(f"config.json: hook {path}: timeout must be greater than zero")
    if "resources" in linux:
        _expect(linux["resources"], dict, "linux.resources")
    if "seccomp" in linux:
        _expect(linux["seccomp"], dict, "linux.seccomp")
    for key in ("maskedPaths", "readonlyPaths"):
        for path in _expect(linux.get(key, []), list, f"linux.{key}"):
            if not isinstance(path, str) or not path.startswith("/"):
                fail(f"config.json: linux.{key}: {path!r} is not an absolute path")


def validate_process(process):
    args = _expect(process.get("args"), list, "process.args")
    if not args or not all(isinstance(a, str) for a in args):
        fail("config.json: process.args must be a non-empty list of strings")
    cwd = _expect(process.get("cwd", "/"), str, "process.cwd")
    if not cwd.startswith("/"):
        fail(f"config.json: process.cwd {cwd!r} is not absolute")
    for entry in _expect(process.get("env", []), list, "process.env"):
        if not isinstance(entry, str) or "=" not in entry:
            fail(f"config.json: process.env entry {entry!r} is not KEY=VALUE")
    user = _expect(process.get("user", {}), dict, "process.user")
    _expect(user.get("uid", 0), int, "process.user.uid")
    _expect(user.get("gid", 0), int, "process.user.gid")
    for gid in _expect(user.get("additionalGids", []), list, "process.user.additionalGids"):
        _expect(gid, int, "process.user.additionalGids[]")
    if "umask" in user:
        _expect(user["umask"], int, "process.user.umask")
    for rlimit in _expect(process.get("rlimits", []), list, "process.rlimits"):
        kind = _expect(rlimit, dict, "process.rlimits[]").get("type")
        if kind not in RLIMITS:
            fail(f"config.json: unknown rlimit type {kind!r}")
        soft = _expect(rlimit.get("soft"), int, f"{kind} soft")
        hard = _expect(rlimit.get("hard"), int, f"{kind} hard")
        if soft > hard:
            fail(f"config.json: {kind}: soft limit {soft} is above the hard limit {hard}")
    if "capabilities" in process:
        problem = caps.validate(process["capabilities"])
        if problem:
            fail(f"config.json: {problem}")
    if "terminal" in process:
        _expect(process["terminal"], bool, "process.terminal")
    if "oomScoreAdj" in process:
        score = _expect(process["oomScoreAdj"], int, "process.oomScoreAdj")
        if not -1000 <= score <= 1000:
            fail(f"config.json: process.oomScoreAdj {score} is outside -1000..1000")
    if process.get("scheduler"):
        fail("config.json: process.scheduler is not supported by ringvisor-oci")
    priority = process.get("ioPriority")
    if priority is not None:
        if _expect(priority, dict, "process.ioPriority").get("class") not in IO_CLASSES:
            fail(f"config.json: process.ioPriority.class {priority.get('class')!r} is not one of "
                 + ", ".join(IO_CLASSES))
        if not 0 <= _expect(priority.get("priority", 0), int, "process.ioPriority.priority") <= 7:
            fail("config.json: process.ioPriority.priority must be 0..7")
    if process.get("selinuxLabel"):
        fail("config.json: process.selinuxLabel is set but SELinux is not enabled on this host")
    if process.get("apparmorProfile") and not apparmor_enabled():
        fail("config.json: process.apparmorProfile is set but AppArmor is not enabled on this host")


def apparmor_enabled():
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def validate_namespaces(linux):
    """{type: path or None}; unknown types, duplicates and missing paths are errors."""
    namespaces = {}
    for entry in _expect(linux.get("namespaces", []), list, "linux.namespaces"):
        kind = _expect(entry, dict, "each namespace").get("type")
        if kind not in NAMESPACE_FLAGS:
            fail(f"config.json: unknown namespace type {kind!r}")
        if kind in namespaces:
            fail(f"config.json: namespace {kind!r} is listed twice")
        path = entry.get("path") or None
        if path is not None and not os.path.exists(path):
            fail(f"config.json: namespace {kind} path {path}: no such file")
        namespaces[kind] = path
    linux["namespace_map"] = namespaces
    return namespaces


def validate_mappings(linux, namespaces):
    maps = linux.get("uidMappings"), linux.get("gidMappings")
    if any(maps) and "user" not in namespaces:
        fail("config.json: uid/gid mappings are set but the container has no user namespace")
    if "user" in namespaces and namespaces["user"] is None and not all(maps):
        fail("config.json: a new user namespace needs both uidMappings and gidMappings")
    for mapping in (maps[0] or []) + (maps[1] or []):
        for key in ("containerID", "hostID", "size"):
            _expect(_expect(mapping, dict, "each id mapping").get(key), int, f"id mapping {key}")


def validate_sysctl(linux, namespaces):
    for key, value in _expect(linux.get("sysctl", {}), dict, "linux.sysctl").items():
        _expect(value, str, f"sysctl {key}")
        if key.startswith("net.") and "network" not in namespaces:
            fail(f"config.json: sysctl {key} needs a network namespace of the container's own")
        if (key in IPC_SYSCTLS or key.startswith("fs.mqueue.")) and "ipc" not in namespaces:
            fail(f"config.json: sysctl {key} needs an IPC namespace of the container's own")
        if key.startswith("kernel.") and key not in IPC_SYSCTLS and key not in (
                "kernel.domainname", "kernel.hostname"):
            fail(f"config.json: sysctl {key} is not namespaced: it would change the host")
        if (key.startswith("kernel.") and key not in IPC_SYSCTLS) and "uts" not in namespaces:
            fail(f"config.json: sysctl {key} needs a UTS namespace of the container's own")
        if not (key.startswith(("net.", "fs.mqueue.", "kernel."))):
            fail(f"config.json: sysctl {key} is not namespaced: it would change the host")
