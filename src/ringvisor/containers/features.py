"""`features`: what this runtime implements, in the runtime-spec's features.json format."""
import json

from . import caps, mounts, seccomp, spec
from .syscalls import NAMESPACE_FLAGS


def features():
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(spec.HOOK_STAGES),
        "mountOptions": sorted(set(mounts.MOUNT_FLAGS) | set(mounts.PROPAGATION)),
        "linux": {
            "namespaces": list(NAMESPACE_FLAGS),
            "capabilities": list(caps.CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {"enabled": True, "actions": [a for a in seccomp.ACTIONS
                                                     if a != "SCMP_ACT_NOTIFY"],
                        "operators": list(seccomp.OPERATORS),
                        "archs": list(seccomp.ARCHES), "knownFlags": list(seccomp.FLAGS),
                        "supportedFlags": list(seccomp.FLAGS)},
            "apparmor": {"enabled": spec.apparmor_enabled()},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "ringvisor-oci 0.1.0"},
    }


def print_features():
    print(json.dumps(features(), indent=2))
