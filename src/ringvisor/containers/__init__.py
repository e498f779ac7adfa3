"""OS-level virtualization: `ringvisor-oci`, an OCI runtime (runtime-spec 1.0/1.1).

One host kernel, isolation by namespaces, pivot_root, cgroups, capabilities and
seccomp. Modules here import nothing heavy: the runtime's start-up time is
part of what it is measured on (see docs/os-level.md).
"""
