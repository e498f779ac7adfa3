"""Bad bundles and impossible requests: one line, a non-zero exit, nothing left behind
(the `oci` fixture checks state, cgroups and mounts on the host after each test)."""
import json

import pytest

from oci_support import assert_one_line_error


def create(oci, bundle):
    cid = oci.new_id()
    result = oci("create", "--bundle", bundle, cid)
    assert_one_line_error(result)
    assert oci("state", cid).returncode != 0
    return result.stderr


def test_missing_bundle(oci, tmp_path):
    assert "no such directory" in create(oci, tmp_path / "nope")


def test_bundle_without_config(oci, tmp_path):
    assert "no config.json" in create(oci, tmp_path)


def test_malformed_json(oci, tmp_path):
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2", "root": ')
    assert "not valid JSON" in create(oci, tmp_path)


def test_nonexistent_rootfs(oci):
    bundle = oci.bundle()
    bundle.config["root"]["path"] = "/nonexistent/rootfs"
    assert "no such directory" in create(oci, bundle.write())


def edit(bundle, change):
    change(bundle.config)
    return bundle.write()


CASES = {
    "unknown namespace type": (lambda c: c["linux"]["namespaces"].append({"type": "galaxy"}),
                               "unknown namespace type"),
    "namespace twice": (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "twice"),
    "hostname without uts": (lambda c: c["linux"].update(namespaces=[
        {"type": "mount"}, {"type": "pid"}]), "UTS namespace"),
    "mappings without user namespace": (lambda c: c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]), "no user namespace"),
    "net sysctl without netns": (lambda c: (c["linux"].update(namespaces=[
        {"type": "mount"}, {"type": "uts"}]), c["linux"].update(
        sysctl={"net.ipv4.ip_forward": "1"})), "network namespace"),
    "host sysctl": (lambda c: c["linux"].update(sysctl={"vm.swappiness": "1"}), "not namespaced"),
    "soft above hard rlimit": (lambda c: c["process"].update(rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]), "above the hard limit"),
    "unknown rlimit": (lambda c: c["process"].update(rlimits=[
        {"type": "RLIMIT_WARP", "soft": 1, "hard": 1}]), "unknown rlimit"),
    "unknown capability": (lambda c: c["process"]["capabilities"].update(
        bounding=["CAP_FLY"]), "unknown capability"),
    "relative cwd": (lambda c: c["process"].update(cwd="tmp"), "not absolute"),
    "empty args": (lambda c: c["process"].update(args=[]), "non-empty"),
    "old spec version": (lambda c: c.update(ociVersion="0.6.0"), "ociVersion"),
    "intelRdt": (lambda c: c["linux"].update(intelRdt={"closID": "x"}), "intelRdt"),
    "selinux label": (lambda c: c["process"].update(selinuxLabel="system_u:x"), "SELinux"),
    "bad seccomp action": (lambda c: c["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_MAYBE"}), "unknown action"),
    "bad seccomp operator": (lambda c: c["linux"].update(seccomp={
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
        "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
        "unknown argument operator"),
    "impossible cpuset": (lambda c: c["linux"]["resources"].update(cpu={"cpus": "4096"}),
                          "cpu.cpus"),
    "impossible memory limit": (lambda c: c["linux"]["resources"].update(
        memory={"limit": 4096, "swap": 1}), "memory"),
    "missing executable": (lambda c: c["process"].update(args=["/bin/nosuchprogram"]),
                           "nosuchprogram"),
    "command not in PATH": (lambda c: c["process"].update(args=["nosuchcommand"]),
                            "not found in $PATH"),
    "bind source missing": (lambda c: c["mounts"].append({"destination": "/mnt",
        "type": "bind", "source": "/nonexistent", "options": ["rbind"]}), "/nonexistent"),
    "unknown filesystem": (lambda c: c["mounts"].append({"destination": "/mnt",
        "type": "nosuchfs", "source": "x"}), "/mnt"),
    "rlimit above the hard limit here": (lambda c: c["process"].update(rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 1 << 40, "hard": 1 << 40}]), "RLIMIT_NOFILE"),
    "terminal without console socket": (lambda c: c["process"].update(terminal=True),
                                        "console-socket"),
    "scheduler": (lambda c: c["process"].update(scheduler={"policy": "SCHED_FIFO"}), "scheduler"),
    "bad io priority class": (lambda c: c["process"].update(ioPriority={"class": "FAST"}),
                              "ioPriority"),
    "id-mapped mount": (lambda c: c["mounts"].append({"destination": "/mnt", "type": "bind",
        "source": "/tmp", "options": ["rbind"], "uidMappings": [{"containerID": 0,
        "hostID": 1000, "size": 1}]}), "id-mapped"),
    "join a namespace path that is missing": (lambda c: c["linux"]["namespaces"].__setitem__(
        1, {"type": "network", "path": "/proc/nonexistent/ns/net"}), "no such file"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_cleanly(oci, name):
    change, expected = CASES[name]
    message = create(oci, edit(oci.bundle("true"), change))
    assert expected in message, message


def test_failing_prestart_hook_leaves_nothing(oci, tmp_path):
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "echo hook says no >&2; exit 3"]}
    bundle = oci.bundle("true")
    bundle.config["hooks"] = {"prestart": [hook]}
    message = create(oci, bundle.write())
    assert "prestart hook /bin/sh: exit status 3: hook says no" in message


def test_hook_timeout(oci):
    bundle = oci.bundle("true")
    bundle.config["hooks"] = {"createRuntime": [
        {"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    assert "timed out after 1 s" in create(oci, bundle.write())


def test_config_not_an_object(oci, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps([1, 2]))
    assert "JSON object" in create(oci, tmp_path)
