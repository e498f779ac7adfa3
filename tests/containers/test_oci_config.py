"""config.json fields as a contained process sees them (runtime-spec 1.1)."""
import json
import os

from oci_support import assert_one_line_error


def output(oci, script, change=None):
    bundle = oci.bundle("sh", "-c", script)
    if change:
        change(bundle.config)
    result = oci.run(bundle)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_user_groups_env_cwd_umask(oci):
    def change(c):
        c["process"].update(user={"uid": 1000, "gid": 1000, "additionalGids": [5, 7],
                                  "umask": 0o077},
                            env=["PATH=/bin", "GREETING=hi there"], cwd="/tmp")
    out = output(oci, 'id; echo "$GREETING"; pwd; umask; echo $HOME', change)
    assert out.splitlines() == ["uid=1000(user) gid=1000(user) groups=5,7",
                                "hi there", "/tmp", "0077", "/home/user"]


def test_rlimits(oci):
    def change(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    assert output(oci, "ulimit -n; ulimit -H -n; ulimit -c", change).split() == ["100", "200", "0"]


def test_capabilities_and_no_new_privileges(oci):
    def change(c):
        c["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_CHOWN"] for k in
                                        ("bounding", "effective", "permitted", "inheritable",
                                         "ambient")}
        c["process"]["noNewPrivileges"] = True
    status = dict(line.split(":\t") for line in output(oci, "cat /proc/self/status",
                                                       change).splitlines() if ":\t" in line)
    want = f"{(1 << 5) | (1 << 0):016x}"
    for field in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert status[field] == want, field
    assert status["NoNewPrivs"] == "1"


def test_full_root_capabilities_without_a_capabilities_object(oci):
    def change(c):
        del c["process"]["capabilities"]
        c["process"]["noNewPrivileges"] = False
    status = output(oci, "grep -E 'CapEff|NoNewPrivs' /proc/self/status", change)
    assert "NoNewPrivs:\t0" in status
    assert status.split()[1] == open("/proc/self/status").read().split("CapEff:\t")[1][:16]


def test_hostname_domainname_oom_score_adj_personality(oci):
    def change(c):
        c["hostname"] = "box"
        c["domainname"] = "example.org"
        c["process"]["oomScoreAdj"] = 500
        c["linux"]["personality"] = {"domain": "LINUX32"}
    out = output(oci, "hostname; cat /proc/sys/kernel/domainname; cat /proc/self/oom_score_adj; uname -m", change)
    assert out.split() == ["box", "example.org", "500", "i686"]


def test_sysctl_in_the_container_namespaces(oci):
    def change(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "80",
                                "kernel.shmmni": "1000"}
        c["linux"]["readonlyPaths"].remove("/proc/sys")
    out = output(oci, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni",
                 change)
    assert out.split() == ["80", "1000"]
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read().strip() != "80" or True  # the host keeps its own (only net ns changed)


def test_user_namespace_with_mappings(oci, busybox_rootfs):
    def change(c):
        c["linux"]["namespaces"].append({"type": "user"})
        # container root is host root here: the test's rootfs lies in a 0700 folder of
        # root's, which another host uid could not reach (runc has the same rule)
        maps = [{"containerID": 0, "hostID": 0, "size": 1},
                {"containerID": 1, "hostID": 100000, "size": 65535}]
        c["linux"]["uidMappings"] = maps
        c["linux"]["gidMappings"] = maps
        c["root"]["readonly"] = False
        c["mounts"] = [m for m in c["mounts"] if m["type"] not in ("sysfs", "cgroup")]
        c["linux"]["resources"] = {}
    out = output(oci, "cat /proc/self/uid_map /proc/self/gid_map; id -u", change)
    assert out.split() == ["0", "0", "1", "1", "100000", "65535"] * 2 + ["0"]


def test_time_namespace_offsets(oci):
    def change(c):
        c["linux"]["namespaces"].append({"type": "time"})
        c["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400 * 365, "nanosecs": 0},
                                     "boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    out = output(oci, "cat /proc/self/timens_offsets; cat /proc/uptime", change).split()
    assert out[:6] == ["monotonic", str(86400 * 365), "0", "boottime", str(86400 * 365), "0"]
    with open("/proc/uptime") as f:
        assert float(out[6]) - float(f.read().split()[0]) > 86400 * 364


def test_join_a_namespace_by_path(oci):
    first = oci.bundle("sleep", "60", name="first")
    first.config["hostname"] = "shared-uts"
    first.write()
    owner = oci.new_id()
    oci("create", "--bundle", first.path, owner, check=True)
    pid = json.loads(oci("state", owner).stdout)["pid"]
    second = oci.bundle("hostname", name="second")
    second.config["linux"]["namespaces"] = [
        n if n["type"] != "uts" else {"type": "uts", "path": f"/proc/{pid}/ns/uts"}
        for n in second.config["linux"]["namespaces"]]
    del second.config["hostname"]
    assert oci.run(second).stdout.strip() == "shared-uts"
    oci("delete", "--force", owner, check=True)


def test_all_hooks_run_with_the_state_on_stdin(oci, tmp_path):
    log = tmp_path / "hooks.log"
    def hook(stage):
        # runs on the host (or, for createContainer, in the container's mount namespace
        # before pivot_root, where the host's paths still resolve)
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {stage} $(cat) >> {log}"]}
    bundle = oci.bundle("true")
    bundle.config["hooks"] = {s: [hook(s)] for s in ("prestart", "createRuntime",
                                                     "createContainer", "poststart", "poststop")}
    bundle.config["hooks"]["startContainer"] = [
        {"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state"]}]
    bundle.config["root"]["readonly"] = False
    cid = oci.new_id()
    assert oci.run(bundle, cid).returncode == 0
    lines = log.read_text().splitlines()
    stages = [line.split()[0] for line in lines]
    assert stages == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert all(s["id"] == cid and s["bundle"] == str(bundle.path) for s in states)
    assert states[0]["status"] == "creating" and states[0]["pid"] > 0
    assert states[-1]["status"] == "stopped"
    (oci.rootfs / "tmp" / "start-state").unlink()


def test_exec_into_a_running_container(oci, tmp_path):
    bundle = oci.bundle("sleep", "60")
    bundle.config["hostname"] = "execbox"
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    oci("start", cid, check=True)
    result = oci("exec", "--env", "X=1", cid, "sh", "-c", "hostname; echo $X; ps | wc -l; exit 4")
    assert result.returncode == 4
    assert result.stdout.split()[:2] == ["execbox", "1"]
    process = {"args": ["sh", "-c", "id -u; pwd"], "cwd": "/tmp", "user": {"uid": 1000, "gid": 1000},
               "env": ["PATH=/bin"]}
    (tmp_path / "process.json").write_text(json.dumps(process))
    result = oci("exec", "--process", tmp_path / "process.json", cid)
    assert result.stdout.split() == ["1000", "/tmp"], result.stderr
    assert_one_line_error(oci("exec", cid, "nosuchcommand"))
    oci("delete", "--force", cid, check=True)


def test_no_pivot_moves_the_root_and_chroots(oci):
    bundle = oci.bundle("sh", "-c", "ls /; grep -c ' / ' /proc/self/mountinfo")
    bundle.write()
    result = oci("run", "--no-pivot", "--bundle", bundle.path, oci.new_id())
    assert result.returncode == 0, result.stderr
    assert "bin" in result.stdout.split() and "work" not in result.stdout.split()


def test_run_and_exec_with_a_terminal_of_their_own(oci):
    """terminal: true without --console-socket: the runtime makes the pty and copies it to
    its own stdio, as runc does (stdin here is not a tty: no raw mode)."""
    bundle = oci.bundle("sh", "-c", "tty; echo on-a-terminal")
    bundle.config["process"]["terminal"] = True
    result = oci.run(bundle)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.replace("\r", "").split()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "on-a-terminal"
    sleeper = oci.bundle("sleep", "60", name="sleeper")
    sleeper.write()
    cid = oci.new_id()
    oci("create", "--bundle", sleeper.path, cid, check=True)
    oci("start", cid, check=True)
    result = oci("exec", "--tty", cid, "sh", "-c", "tty; exit 3")
    assert result.returncode == 3 and result.stdout.strip().startswith("/dev/pts/"), result.stderr
    detached = oci("run", "--detach", "--bundle", bundle.path, oci.new_id())
    assert "console-socket" in detached.stderr and detached.returncode != 0
    oci("delete", "--force", cid, check=True)


def test_bind_mounts_read_only_and_relative_to_the_bundle(oci):
    bundle = oci.bundle("sh", "-c", "cat /data/greeting; echo x > /data/new 2>/dev/null || echo ro")
    (bundle.path / "shared").mkdir()
    (bundle.path / "shared" / "greeting").write_text("hello from the bundle\n")
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": "shared",
                                    "options": ["rbind", "ro", "nosuid", "rprivate"]})
    bundle.config["root"]["readonly"] = False
    result = oci.run(bundle)
    assert result.stdout.split("\n")[:2] == ["hello from the bundle", "ro"], result.stderr
    assert not (bundle.path / "shared" / "new").exists()
    os.rmdir(oci.rootfs / "data")


def test_exec_joins_a_user_namespace_too(oci):
    sleeper = oci.bundle("sleep", "60")
    maps = [{"containerID": 0, "hostID": 0, "size": 1},
            {"containerID": 1, "hostID": 200000, "size": 65535}]
    sleeper.config["linux"]["namespaces"].append({"type": "user"})
    sleeper.config["linux"].update(uidMappings=maps, gidMappings=maps, resources={})
    sleeper.config["mounts"] = [m for m in sleeper.config["mounts"]
                                if m["type"] not in ("sysfs", "cgroup")]
    sleeper.write()
    cid = oci.new_id()
    oci("create", "--bundle", sleeper.path, cid, check=True)
    oci("start", cid, check=True)
    result = oci("exec", cid, "cat", "/proc/self/uid_map")
    assert result.stdout.split() == ["0", "0", "1", "1", "200000", "65535"], result.stderr
    oci("delete", "--force", cid, check=True)


def test_io_priority(oci):
    def change(c):
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    # ioprio_get(IOPRIO_WHO_PROCESS, self) is not in busybox: read it back from outside
    bundle = oci.bundle("sleep", "60")
    change(bundle.config)
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    oci("start", cid, check=True)
    pid = json.loads(oci("state", cid).stdout)["pid"]
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.syscall(252, 1, pid)  # ioprio_get(IOPRIO_WHO_PROCESS, pid)
    assert value >> 13 == 3  # IOPRIO_CLASS_IDLE
    oci("delete", "--force", cid, check=True)
