"""What a contained process can and cannot reach (checked from inside, then on the host)."""
import json
import os

from test_oci_config import output


def test_host_pids_are_invisible(oci):
    pids = output(oci, "ls /proc | grep -E '^[0-9]+$'").split()
    assert pids[0] == "1" and len(pids) <= 3  # sh, ls and grep at most
    assert str(os.getpid()) not in pids or int(str(os.getpid())) <= 3


def test_mounts_are_private(oci, tmp_path):
    marker = "rvt-private-mount"
    def change(c):
        c["root"]["readonly"] = False
        del c["process"]["capabilities"]  # CAP_SYS_ADMIN, to mount
    out = output(oci, f"mkdir -p /tmp/{marker} && mount -t tmpfs none /tmp/{marker} && "
                      f"grep -c {marker} /proc/self/mountinfo", change)
    assert out.strip() == "1"
    with open("/proc/self/mountinfo") as f:
        assert marker not in f.read()
    os.rmdir(oci.rootfs / "tmp" / marker)


def test_masked_and_readonly_paths(oci):
    assert os.path.getsize("/proc/keys") or os.listdir("/sys/firmware")  # the host's have content
    script = ("wc -c < /proc/keys; ls /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo sys-readonly; "
              "touch /newfile 2>/dev/null || echo root-readonly")
    assert output(oci, script).split() == ["0", "0", "sys-readonly", "root-readonly"]


def test_devices_denied_by_the_device_cgroup(oci):
    def change(c):
        c["root"]["readonly"] = False
        del c["process"]["capabilities"]
    # the container may make the node (CAP_MKNOD) but the device cgroup forbids opening it
    out = output(oci, "mknod /tmp/mem c 1 1; head -c 1 /tmp/mem >/dev/null 2>&1 || echo denied; "
                      "head -c 1 /dev/zero | wc -c", change)
    assert out.split() == ["denied", "1"]
    os.unlink(oci.rootfs / "tmp" / "mem")


def test_default_devices_and_dev_links(oci):
    out = output(oci, "stat -c '%t:%T %a' /dev/null /dev/zero /dev/full /dev/random "
                      "/dev/urandom /dev/tty; readlink /dev/fd; readlink /dev/ptmx")
    assert out.split() == ["1:3", "666", "1:5", "666", "1:7", "666", "1:8", "666", "1:9", "666",
                           "5:0", "666", "/proc/self/fd", "pts/ptmx"]


def seccomp_profile(**rule):
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64",
            "SCMP_ARCH_X86"], "syscalls": [dict(rule)]}


def test_seccomp_denies_a_syscall(oci):
    def change(c):
        c["root"]["readonly"] = False
        c["linux"]["seccomp"] = seccomp_profile(names=["mkdir", "mkdirat"],
                                                action="SCMP_ACT_ERRNO", errnoRet=1)
    out = output(oci, "mkdir /tmp/rvt-denied 2>&1 || echo refused; "
                      "grep Seccomp: /proc/self/status", change)
    assert "refused" in out and "Seccomp:\t2" in out
    assert not (oci.rootfs / "tmp" / "rvt-denied").exists()


def test_seccomp_argument_conditions(oci):
    # personality(0xffffffff) queries; anything else is refused (as docker's profile does)
    def change(c):
        c["linux"]["seccomp"] = seccomp_profile(
            names=["personality"], action="SCMP_ACT_ERRNO",
            args=[{"index": 0, "value": 0xffffffff, "op": "SCMP_CMP_NE"}])
        c["linux"]["personality"] = {"domain": "LINUX"}
    assert "x86_64" in output(oci, "uname -m", change)


def test_podmans_default_seccomp_profile_loads(oci):
    from oci_support import ensure_apt
    ensure_apt("golang-github-containers-common", "/usr/share/containers/seccomp.json")
    with open("/usr/share/containers/seccomp.json") as f:
        profile = json.load(f)
    def change(c):
        c["linux"]["seccomp"] = profile
    out = output(oci, "grep Seccomp: /proc/self/status; "
                      "mount -t tmpfs none /tmp 2>/dev/null || echo mount-refused", change)
    assert out.split() == ["Seccomp:", "2", "mount-refused"]


def test_links_made_in_the_containers_network_namespace_stay_there(oci):
    """A veth pair made (with pyroute2) inside a running container's network namespace:
    both ends live there, the host's links do not change."""
    from pyroute2 import IPRoute
    from ringvisor.containers import syscalls
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    pid = json.loads(oci("state", cid).stdout)["pid"]
    host_links = sorted(os.listdir("/sys/class/net"))
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            syscalls.setns(fd, syscalls.NAMESPACE_FLAGS["network"])
            with IPRoute() as ip:
                ip.link("add", ifname="rvt0", kind="veth", peer="rvt1")
                names = sorted(link.get_attr("IFLA_IFNAME") for link in ip.get_links())
            os.write(write_end, " ".join(names).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    inside = os.read(read_end, 1000).decode().split()
    os.close(read_end)
    assert inside == ["lo", "rvt0", "rvt1"]
    assert sorted(os.listdir("/sys/class/net")) == host_links
    oci("delete", "--force", cid, check=True)
