"""The runtime-spec lifecycle through the command line, as engines drive it."""
import json
import os
import time

from oci_support import assert_one_line_error


def wait_for_status(oci, cid, wanted, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(oci("state", cid, check=True).stdout)
        if state["status"] == wanted:
            return state
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {wanted}: {state}")


def test_run_passes_output_and_exit_status(oci):
    bundle = oci.bundle("sh", "-c", "echo hello from $(hostname); exit 7")
    result = oci.run(bundle)
    assert result.stdout == "hello from ringvisor\n"
    assert result.returncode == 7


def test_create_start_state_kill_delete(oci, tmp_path):
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    cid = oci.new_id()
    pid_file = tmp_path / "init.pid"
    oci("create", "--bundle", bundle.path, "--pid-file", pid_file, cid, check=True)
    state = json.loads(oci("state", cid, check=True).stdout)
    assert state["status"] == "created"
    assert state["id"] == cid and state["bundle"] == str(bundle.path)
    assert state["ociVersion"].startswith("1.")
    assert int(pid_file.read_text()) == state["pid"]
    # created: the init exists in its own PID namespace but has not exec'd the process yet
    assert os.readlink(f"/proc/{state['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    with open(f"/proc/{state['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    oci("start", cid, check=True)
    assert wait_for_status(oci, cid, "running")["pid"] == state["pid"]
    second = oci("start", cid)
    assert_one_line_error(second)
    assert "running" in second.stderr
    refused = oci("delete", cid)
    assert_one_line_error(refused)
    oci("kill", cid, "KILL", check=True)
    stopped = wait_for_status(oci, cid, "stopped")
    assert stopped["pid"] == 0
    oci("delete", cid, check=True)
    gone = oci("state", cid)
    assert_one_line_error(gone)
    assert "does not exist" in gone.stderr


def test_delete_force_of_a_running_container(oci):
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    oci("start", cid, check=True)
    pid = json.loads(oci("state", cid).stdout)["pid"]
    oci("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_kill_all_and_signal_names(oci):
    bundle = oci.bundle("sh", "-c", "sleep 60 & sleep 60 & wait")
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    oci("start", cid, check=True)
    assert_one_line_error(oci("kill", cid, "NOSUCHSIGNAL"))
    oci("kill", "--all", cid, "SIGKILL", check=True)
    wait_for_status(oci, cid, "stopped")
    oci("delete", cid, check=True)


def test_duplicate_id_is_refused_and_the_first_container_survives(oci):
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    again = oci("create", "--bundle", bundle.path, cid)
    assert_one_line_error(again)
    assert "already exists" in again.stderr
    assert json.loads(oci("state", cid).stdout)["status"] == "created"
    oci("delete", "--force", cid, check=True)


def test_list_and_pause_resume(oci):
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    cid = oci.new_id()
    oci("create", "--bundle", bundle.path, cid, check=True)
    table = oci("list", check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert table[1].split()[0] == cid and table[1].split()[2] == "created"
    listed = json.loads(oci("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == [cid]
    assert oci("list", "-q", check=True).stdout.split() == [cid]
    oci("start", cid, check=True)
    oci("pause", cid, check=True)
    assert json.loads(oci("state", cid).stdout)["status"] == "paused"
    oci("resume", cid, check=True)
    assert json.loads(oci("state", cid).stdout)["status"] == "running"
    oci("delete", "--force", cid, check=True)


def test_version_features_and_spec(oci, tmp_path):
    version = oci("--version", check=True).stdout
    assert version.startswith("ringvisor-oci version ") and "spec: 1.1.0" in version
    features = json.loads(oci("features", check=True).stdout)
    assert features["ociVersionMax"] == "1.1.0"
    assert "time" in features["linux"]["namespaces"]
    assert "SCMP_ACT_ERRNO" in features["linux"]["seccomp"]["actions"]
    oci("spec", "--bundle", tmp_path, check=True)
    assert json.loads((tmp_path / "config.json").read_text())["ociVersion"] == "1.1.0"
    assert_one_line_error(oci("spec", "--bundle", tmp_path))  # never overwrites


def test_command_line_errors_are_one_line(oci):
    for args in (["nosuchcommand"], ["start"], ["create", "--bogus", "x"], ["state", "../x"],
                 ["--log-format", "xml", "state", "x"], ["start", "nosuchcontainer"],
                 ["delete", "nosuchcontainer"], ["kill", "nosuchcontainer"]):
        assert_one_line_error(oci(*args))


def test_systemd_cgroup_refused_without_systemd(oci):
    result = oci("--systemd-cgroup", "state", "x")
    assert_one_line_error(result)
    assert "systemd" in result.stderr


def test_log_file_in_json_for_conmon(oci, tmp_path):
    log = tmp_path / "runtime.log"
    oci("--log", log, "--log-format", "json", "start", "nosuchcontainer")
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"]


def test_concurrent_commands_on_different_containers(oci):
    """Four creates at once under one --root, then list, ps and deletes at once."""
    import subprocess
    from oci_support import RUNTIME
    bundle = oci.bundle("sleep", "60")
    bundle.write()
    ids = [oci.new_id() for _ in range(4)]
    def spawn(*args):
        return subprocess.Popen(RUNTIME + ["--root", str(oci.root), *map(str, args)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    creates = [spawn("create", "--bundle", bundle.path, cid) for cid in ids]
    assert [p.wait(60) for p in creates] == [0] * 4
    listed = json.loads(oci("list", "--format", "json", check=True).stdout)
    assert sorted(c["id"] for c in listed) == sorted(ids)
    assert all(c["status"] == "created" for c in listed)
    pids = json.loads(oci("ps", "--format", "json", ids[0], check=True).stdout)
    assert pids == [json.loads(oci("state", ids[0]).stdout)["pid"]]
    deletes = [spawn("delete", "--force", cid) for cid in ids]
    assert [p.wait(60) for p in deletes] == [0] * 4
    assert json.loads(oci("list", "--format", "json", check=True).stdout) == []


def test_debug_log(oci, tmp_path):
    log = tmp_path / "debug.log"
    oci("--debug", "--log", log, "list", check=True)
    assert 'level=debug msg="list"' in log.read_text()
