"""The container's file system view, built inside its new mount namespace: the root and
its mounts, the default devices, pivot_root, masked and read-only paths."""
import os
import stat

from . import syscalls as sc
from .errors import OciError

# mount option -> (flags to set, flags to clear); anything else is file-system data
MOUNT_FLAGS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0), "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0), "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "lazytime": (sc.MS_LAZYTIME, 0), "nolazytime": (0, sc.MS_LAZYTIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0), "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "remount": (sc.MS_REMOUNT, 0), "silent": (sc.MS_SILENT, 0), "loud": (0, sc.MS_SILENT),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Flags a bind remount must keep (statvfs ST_* bit -> MS_* flag); the kernel locks them
# in a user namespace.
STATVFS_FLAGS = {1: sc.MS_RDONLY, 2: sc.MS_NOSUID, 4: sc.MS_NODEV, 8: sc.MS_NOEXEC,
                 1024: sc.MS_NOATIME, 2048: sc.MS_NODIRATIME, 4096: sc.MS_RELATIME}
# The devices every container gets (runtime-spec "Default Devices"): path, major, minor.
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
                   ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


def parse_options(options):
    """(flags, propagation flags, data string) for a mount's options."""
    flags, propagation, data = 0, [], []
    for option in options:
        if option in MOUNT_FLAGS:
            on, off = MOUNT_FLAGS[option]
            flags = (flags | on) & ~off
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def secure_join(root, path):
    """root + path with every symlink resolved inside root (a container's symlink to /etc
    must not reach the host's /etc)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OciError(f"{path}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _make_target(target, source_is_file):
    if os.path.lexists(target):
        return
    if source_is_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    else:
        os.makedirs(target, exist_ok=True)


def _remount_flags(target):
    """The flags a mount has now, for a bind remount that keeps them."""
    current = os.statvfs(target).f_flag
    return sum(ms for st, ms in STATVFS_FLAGS.items() if current & st)


def mount_one(rootfs, entry, cgroup_mounts, bundle="/"):
    dest = secure_join(rootfs, entry["destination"])
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    flags, propagation, data = parse_options(entry.get("options", []))
    if kind == "bind":
        flags |= sc.MS_BIND
    if flags & sc.MS_BIND and not source.startswith("/"):
        source = os.path.join(bundle, source)  # relative to the bundle, as runc
    if kind == "cgroup" or kind == "cgroup2":
        mount_cgroups(dest, flags, cgroup_mounts)
    elif flags & sc.MS_BIND:
        if not os.path.exists(source):
            raise OciError(f"mount {entry['destination']}: bind source {source}: no such file")
        _make_target(dest, not os.path.isdir(source))
        sc.mount(source, dest, None, flags & (sc.MS_BIND | sc.MS_REC))
        extra = flags & ~(sc.MS_BIND | sc.MS_REC)
        if extra:
            sc.mount(dest, dest, None, extra | sc.MS_BIND | sc.MS_REMOUNT | _remount_flags(dest))
    else:
        _make_target(dest, False)
        sc.mount(source, dest, kind, flags, data or None)
    for flag in propagation:
        sc.mount(None, dest, None, flag)


def mount_cgroups(dest, flags, cgroup_mounts):
    """A `cgroup` mount: on v2 one cgroup2 mount; on v1/hybrid a tmpfs with one mount per
    hierarchy, as runc. `cgroup_mounts` lists (name, fstype, options, host dir to bind or
    None to mount afresh in the container's cgroup namespace)."""
    os.makedirs(dest, exist_ok=True)
    readonly = flags & sc.MS_RDONLY
    base = flags & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    if len(cgroup_mounts) == 1 and cgroup_mounts[0][1] == "cgroup2":
        _mount_cgroup_fs(dest, cgroup_mounts[0], base | readonly)
        return
    sc.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for item in cgroup_mounts:
        sub = os.path.join(dest, item[0])
        os.makedirs(sub, exist_ok=True)
        _mount_cgroup_fs(sub, item, base | readonly)
    if readonly:
        sc.mount(dest, dest, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base)


def _mount_cgroup_fs(target, item, flags):
    name, fstype, options, host_dir = item
    if host_dir is None:
        sc.mount(fstype, target, fstype, flags, options or None)
    else:
        sc.mount(host_dir, target, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(target, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)


def make_devices(rootfs, devices, in_user_namespace):
    """The default devices and linux.devices: mknod, or bind mounts of the host's nodes in
    a user namespace (where mknod is refused)."""
    wanted = {path: ("c", major, minor, 0o666, 0, 0) for path, major, minor in DEFAULT_DEVICES}
    for d in devices:
        wanted[d["path"]] = (d["type"], d.get("major", 0), d.get("minor", 0),
                             d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0))
    for path, (kind, major, minor, mode, uid, gid) in wanted.items():
        target = secure_join(rootfs, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if in_user_namespace:
            _make_target(target, True)
            sc.mount(path, target, None, sc.MS_BIND)
            continue
        if os.path.lexists(target):
            os.unlink(target)
        node_type = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                     "p": stat.S_IFIFO}[kind]
        os.mknod(target, node_type | (mode & 0o7777), os.makedev(major, minor))
        os.chmod(target, mode & 0o7777)  # mknod's mode is filtered by the umask
        os.chown(target, uid, gid)
    for source, link in DEV_SYMLINKS:
        target = secure_join(rootfs, link)
        if not os.path.lexists(target):
            os.symlink(source, target)
    ptmx = secure_join(rootfs, "/dev/ptmx")
    if os.path.isdir(secure_join(rootfs, "/dev/pts")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def pivot(rootfs):
    """pivot_root into rootfs without a put_old directory (runc's way): pivot onto '.',
    then detach the old root, made a slave first so the detach stays in here."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.fchdir(new_root)
        sc.pivot_root(".", ".")
        os.fchdir(old_root)
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def move_root(rootfs):
    """--no-pivot (runc's, for roots on a ramfs where pivot_root fails): move the root
    over / and chroot into it. The old root stays reachable by a chroot escape, which
    is why pivot_root is the default."""
    os.chdir(rootfs)
    sc.mount(rootfs, "/", None, sc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def mask(paths):
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
            else:
                sc.mount("/dev/null", path, None, sc.MS_BIND)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != 2:
                raise


def make_readonly(paths):
    for path in paths:
        if not os.path.exists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _remount_flags(path))


def remount_root_readonly():
    sc.mount("/", "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _remount_flags("/"))
