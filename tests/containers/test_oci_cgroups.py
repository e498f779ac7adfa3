"""cgroups: the layout detected (not assumed), limits written in v1 and v2 form, and
enforced (a memory hog OOM-killed, a fork bomb stopped at pids.max)."""
import json
import os

from ringvisor.containers import cgroups, resources
from test_oci_config import output


def test_layout_matches_the_mounts():
    with open("/proc/self/mountinfo") as f:
        fstypes = [line.split(" - ")[1].split()[0] for line in f]
    v1, v2 = "cgroup" in fstypes, "cgroup2" in fstypes
    expected = "hybrid" if v1 and v2 else "v1" if v1 else "v2"
    assert cgroups.layout() == expected
    controllers = [c for h in cgroups.hierarchies() for c in h.controllers]
    assert len(controllers) == len(set(controllers))  # each driven through one hierarchy


def test_resources_written_to_the_hosts_cgroups(oci):
    bundle = oci.bundle("sleep", "60")
    bundle.config["linux"]["resources"].update(
        memory={"limit": 64 << 20, "reservation": 32 << 20}, pids={"limit": 42},
        cpu={"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"})
    bundle.config["linux"]["cgroupsPath"] = f"rvt-nest/{oci.new_id()}"
    bundle.write()
    cid = oci.ids[-1]
    oci("create", "--bundle", bundle.path, cid, check=True)
    pid = json.loads(oci("state", cid).stdout)["pid"]
    seen = {}
    for h in cgroups.hierarchies():
        with open(f"/proc/{pid}/cgroup") as f:
            line = [x for x in f.read().splitlines()
                    if (h.version == 2 and x.startswith("0::")) or
                    (h.version == 1 and set(x.split(":")[1].split(",")) == set(h.controllers))]
        path = line[0].split(":", 2)[2]
        assert path.endswith(f"rvt-nest/{cid}"), (h.mount, path)
        directory = h.dir_for(path)
        for name in ("memory.limit_in_bytes", "memory.max", "pids.max", "cpu.shares",
                     "cpu.cfs_quota_us", "cpu.max", "cpuset.cpus", "memory.soft_limit_in_bytes",
                     "memory.low"):
            if os.path.exists(os.path.join(directory, name)):
                with open(os.path.join(directory, name)) as f:
                    seen[name] = f.read().strip()
    assert seen["pids.max"] == "42"
    if "memory.limit_in_bytes" in seen:
        assert seen["memory.limit_in_bytes"] == str(64 << 20)
        assert seen["memory.soft_limit_in_bytes"] == str(32 << 20)
    else:
        assert seen["memory.max"] == str(64 << 20) and seen["memory.low"] == str(32 << 20)
    if "cpu.shares" in seen:
        assert seen["cpu.shares"] == "512" and seen["cpu.cfs_quota_us"] == "50000"
    else:
        assert seen["cpu.max"] == "50000 100000"
    assert seen["cpuset.cpus"] == "0"
    oci("delete", "--force", cid, check=True)
    for h in cgroups.hierarchies():  # the intermediate cgroup the runtime made is gone too
        assert not os.path.exists(h.dir_for(cgroups.resolve_path("rvt-nest", cid, h.own,
                                                                 h.version)))


def test_memory_hog_is_oom_killed(oci):
    def change(c):
        c["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    bundle = oci.bundle("sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived")
    change(bundle.config)
    result = oci.run(bundle)
    assert result.returncode == 137  # 128 + SIGKILL
    assert "survived" not in result.stdout


def test_fork_bomb_stops_at_pids_max(oci):
    def change(c):
        c["linux"]["resources"]["pids"] = {"limit": 8}
    # the loop's shell dies at the first refused fork; then only builtins (no fork) report
    script = ("(i=0; while [ $i -lt 30 ]; do sleep 3 & i=$((i+1)); done) 2>/dev/null; "
              "for f in /sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current; do "
              "[ -e $f ] && read n < $f && echo $n; done; true")
    current = int(output(oci, script, change).split()[0])
    assert 1 < current <= 8


def test_v2_files_and_conversions(tmp_path):
    """A pure v2 host, simulated by a directory: the files and formulas of the spec."""
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu io memory pids hugetlb cpuset\n")
    (root / "cgroup.subtree_control").write_text("")
    h = cgroups.Hierarchy(str(root), 2, ["cpu", "io", "memory", "pids", "hugetlb", "cpuset"], "/")
    cg = cgroups.ContainerCgroup("/pod/ctr", "ctr", found=[h])
    cg.create()
    assert (root / "pod" / "ctr").is_dir()
    spec = {"memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 10 << 20},
            "pids": {"limit": 0}, "cpu": {"shares": 1024, "quota": 20000, "period": 50000,
                                           "cpus": "0-1"},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                                  "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
            "unified": {"memory.high": "50000000", "cgroup.max.descendants": "5"}}
    cg.apply(spec)
    files = {p.name: p.read_text() for p in (root / "pod" / "ctr").iterdir()}
    assert files["memory.max"] == str(100 << 20)
    assert files["memory.swap.max"] == str(50 << 20)  # v2 counts swap alone
    assert files["memory.low"] == str(10 << 20)
    assert files["pids.max"] == "max"
    assert files["cpu.weight"] == str(1 + (1024 - 2) * 9999 // 262142)  # = 39
    assert files["cpu.max"] == "20000 50000"
    assert files["cpuset.cpus"] == "0-1"
    assert files["io.weight"] == f"default {1 + (500 - 10) * 9999 // 990}"
    assert files["io.max"] == "8:0 rbps=1048576"
    assert files["hugetlb.2MB.max"] == str(4 << 20)
    assert files["memory.high"] == "50000000" and files["cgroup.max.descendants"] == "5"
    assert (root / "cgroup.subtree_control").read_text().startswith("+")  # enabled from the root down
    for d in (root / "pod" / "ctr", root / "pod"):  # a real cgroupfs drops them with the dir
        for p in d.iterdir():
            if p.is_file():
                p.unlink()
    cg.destroy()
    assert not (root / "pod").exists()


def test_v1_device_rules_end_with_runcs_allowed_devices():
    lines = resources.device_writes([{"allow": False, "access": "rwm"},
                                     {"allow": True, "type": "c", "major": 10, "minor": 229,
                                      "access": "rw"}])
    assert lines[0] == ("devices", "devices.deny", "a *:* rwm", "devices")
    assert lines[1] == ("devices", "devices.allow", "c 10:229 rw", "devices")
    assert ("devices", "devices.allow", "c 1:3 rwm", "devices") in lines
    assert resources.shares_to_weight(2) == 1 and resources.shares_to_weight(262144) == 10000


def test_relative_and_absolute_cgroups_paths():
    assert cgroups.resolve_path("/a/b", "id", "/own") == "/a/b"
    assert cgroups.resolve_path("a/b", "id", "/own") == "/own/a/b"
    assert cgroups.resolve_path(None, "id", "/own") == "/own/id"
    # v2: below the parent of the runtime's cgroup (which has tasks: no controllers below it)
    assert cgroups.resolve_path(None, "id", "/user.slice/session-1.scope", 2) == "/user.slice/id"
    assert cgroups.resolve_path("/a/b", "id", "/user.slice/session-1.scope", 2) == "/a/b"


def test_v2_device_filter_program(tmp_path):
    """The BPF device filter that cgroup v2 hosts get, attached here to a cgroup of the
    v2 hierarchy (pure v2, or the hybrid layout's unified mount): the last matching rule
    decides, access is checked bit by bit."""
    import pytest
    from ringvisor.containers import devices_bpf
    unified = [h for h in cgroups.hierarchies() if h.version == 2]
    if not unified:
        pytest.skip("no cgroup v2 hierarchy on this host")
    directory = unified[0].dir_for(f"rvt-bpf-{os.getpid()}")
    os.mkdir(directory)
    try:
        devices_bpf.attach(directory, [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}])
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write("0")
            results = []
            for path, mode in (("/dev/null", "r+b"), ("/dev/zero", "rb"), ("/dev/zero", "r+b"),
                               ("/dev/full", "rb")):
                try:
                    open(path, mode).close()
                    results.append("ok")
                except OSError:
                    results.append("denied")
            os.write(write_end, " ".join(results).encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        assert os.read(read_end, 100).decode().split() == ["ok", "ok", "denied", "denied"]
        os.close(read_end)
    finally:
        os.rmdir(directory)
    assert devices_bpf.assemble([{"allow": True, "access": "rwm"}]).endswith(
        bytes.fromhex("b400000001000000" "9500000000000000"))


def test_join_through_tasks_only_when_single_threaded(tmp_path):
    """v1: "0" into `tasks` (no global lock) from a single-threaded process; with threads,
    cgroup.procs, which moves them all."""
    import threading
    import time
    h = cgroups.Hierarchy(str(tmp_path), 1, ["pids"], "/")
    cg = cgroups.ContainerCgroup("/ctr", "ctr", found=[h])
    cg.create()
    cg.join(0)
    assert (tmp_path / "ctr" / "tasks").read_text() == "0"
    assert not (tmp_path / "ctr" / "cgroup.procs").exists()
    worker = threading.Thread(target=time.sleep, args=(0.3,))
    worker.start()
    cg.join(0)
    worker.join()
    assert (tmp_path / "ctr" / "cgroup.procs").read_text() == "0"
    cg.join(1234)  # another process: always cgroup.procs
    assert (tmp_path / "ctr" / "cgroup.procs").read_text() == "1234"


def test_unified_keys_for_a_v1_controller_are_refused(oci):
    from oci_support import assert_one_line_error
    import pytest
    if not any(h.version == 1 and "memory" in h.controllers for h in cgroups.hierarchies()):
        pytest.skip("memory is not a v1 controller here")
    bundle = oci.bundle("true")
    bundle.config["linux"]["resources"]["unified"] = {"memory.high": "1000000"}
    result = oci("create", "--bundle", bundle.write(), oci.new_id())
    assert_one_line_error(result)
    assert "unified" in result.stderr
