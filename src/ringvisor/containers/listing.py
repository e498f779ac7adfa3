"""`list`, `ps` and `spec`: reports on the containers under --root, and a default bundle
configuration (runc's `spec`)."""
import json
import os

from .errors import OciError
from .state import Container, list_ids


def print_list(root, fmt, quiet):
    if fmt not in ("table", "json"):
        raise OciError(f"--format {fmt!r} is not table or json")
    states = []
    for cid in list_ids(root):
        try:
            states.append(Container.load(root, cid, lock=False).spec_state())
        except OciError:
            continue  # deleted meanwhile
    if quiet:
        for s in states:
            print(s["id"])
    elif fmt == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                  s["owner"] or "root") for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def print_ps(root, cid, fmt, ps_args):
    from . import cgroups
    container = Container.load(root, cid, lock=False)
    if "cgroup" not in container.data:
        raise OciError(f"container {cid} has no cgroup")
    pids = sorted(cgroups.ContainerCgroup.from_state(container.data["cgroup"]).pids())
    if fmt == "json":
        print(json.dumps(pids))
        return
    import subprocess
    result = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, text=True)
    lines = result.stdout.splitlines()
    if not lines:
        raise OciError("ps printed nothing")
    header = lines[0].split()
    column = header.index("PID") if "PID" in header else None
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if column is not None and len(fields) > column and int(fields[column]) in pids:
            print(line)


DEFAULT_SPEC = {
    "ociVersion": "1.1.0",
    "process": {
        "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "ringvisor",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def write_default_spec(bundle):
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OciError(f"{path} exists: remove it first")
    with open(path, "w") as f:
        json.dump(DEFAULT_SPEC, f, indent=2)
        f.write("\n")
