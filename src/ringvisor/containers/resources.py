"""linux.resources translated into cgroup files, for v1 and v2 (the runtime-spec's
conversions, as runc does them).

`writes(resources, available)` yields (controller, file, value, spec name) in the order
they must be written; `available` maps a controller to its hierarchy, whose version
picks the file names.
"""
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc")

# Devices every container may use whatever its rules say (runc's AllowedDevices).
ALLOWED_DEVICES = [
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
]


def _version(available, controller):
    entry = available.get(controller)
    return entry[0].version if entry else 1


def _num(value):
    return "max" if value is None or value < 0 else str(value)


def shares_to_weight(shares):
    """cpu.shares (2..262144) to cpu.weight (1..10000), the runtime-spec's formula."""
    return 1 + ((shares - 2) * 9999) // 262142 if shares else 0


def blkio_weight_to_io(weight):
    return 1 + (weight - 10) * 9999 // 990


def device_rule(kind, major, minor, access):
    star = lambda n: "*" if n is None or n < 0 else str(n)
    return f"{kind or 'a'} {star(major)}:{star(minor)} {access or 'rwm'}"


def writes(resources, available):
    out = []
    memory = resources.get("memory") or {}
    if memory:
        v2 = _version(available, "memory") == 2
        limit, swap = memory.get("limit"), memory.get("swap")
        if v2:
            if "reservation" in memory:
                out.append(("memory", "memory.low", _num(memory["reservation"]), "memory.reservation"))
            if limit is not None:
                out.append(("memory", "memory.max", _num(limit), "memory.limit"))
            if swap is not None:  # v1 counts memory+swap, v2 swap alone
                value = swap if swap < 0 or limit is None or limit < 0 else swap - limit
                out.append(("memory", "memory.swap.max", _num(value), "memory.swap"))
        else:
            if "reservation" in memory:
                out.append(("memory", "memory.soft_limit_in_bytes", str(memory["reservation"]),
                            "memory.reservation"))
            # memory+swap must stay >= memory: cgroups.apply swaps these two when the
            # kernel refuses the first (a limit above the current memory+swap)
            if limit is not None:
                out.append(("memory", "memory.limit_in_bytes", str(limit), "memory.limit"))
            if swap is not None and swap != 0:
                out.append(("memory", "memory.memsw.limit_in_bytes", str(swap), "memory.swap"))
            if memory.get("swappiness") is not None:
                out.append(("memory", "memory.swappiness", str(memory["swappiness"]),
                            "memory.swappiness"))
            if memory.get("disableOOMKiller"):
                out.append(("memory", "memory.oom_control", "1", "memory.disableOOMKiller"))
    pids = resources.get("pids") or {}
    if "limit" in pids:
        out.append(("pids", "pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"]), "pids.limit"))
    cpu = resources.get("cpu") or {}
    if cpu:
        v2 = _version(available, "cpu") == 2
        if cpu.get("shares"):
            if v2:
                out.append(("cpu", "cpu.weight", str(shares_to_weight(cpu["shares"])), "cpu.shares"))
            else:
                out.append(("cpu", "cpu.shares", str(cpu["shares"]), "cpu.shares"))
        quota, period = cpu.get("quota"), cpu.get("period")
        if v2 and (quota or period):
            out.append(("cpu", "cpu.max", f"{_num(quota) if quota else 'max'} {period or 100000}",
                        "cpu.quota"))
        elif not v2:
            if period:
                out.append(("cpu", "cpu.cfs_period_us", str(period), "cpu.period"))
            if quota:
                out.append(("cpu", "cpu.cfs_quota_us", str(quota), "cpu.quota"))
            if cpu.get("realtimePeriod"):
                out.append(("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]), "cpu.realtimePeriod"))
            if cpu.get("realtimeRuntime"):
                out.append(("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]),
                            "cpu.realtimeRuntime"))
        if cpu.get("idle") is not None:
            out.append(("cpu", "cpu.idle", str(cpu["idle"]), "cpu.idle"))
        if cpu.get("cpus"):
            out.append(("cpuset", "cpuset.cpus", cpu["cpus"], "cpu.cpus"))
        if cpu.get("mems"):
            out.append(("cpuset", "cpuset.mems", cpu["mems"], "cpu.mems"))
    out.extend(_blkio(resources.get("blockIO") or {}, "blkio" not in available
                      and _version(available, "io") == 2))
    for page in resources.get("hugepageLimits") or []:
        size, limit = page.get("pageSize"), page.get("limit")
        name = (f"hugetlb.{size}.max" if _version(available, "hugetlb") == 2
                else f"hugetlb.{size}.limit_in_bytes")
        out.append(("hugetlb", name, str(limit), f"hugepageLimits[{size}]"))
    network = resources.get("network") or {}
    if network.get("classID") is not None:
        out.append(("net_cls", "net_cls.classid", str(network["classID"]), "network.classID"))
    for entry in network.get("priorities") or []:
        out.append(("net_prio", "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}",
                    "network.priorities"))
    for key, value in (resources.get("unified") or {}).items():  # v2 files, written as given
        out.append((key.split(".", 1)[0], key, str(value), f"unified.{key}"))
    if resources.get("devices") is not None and "devices" in available:
        out.extend(device_writes(resources["devices"]))  # v1; v2 uses devices_bpf
    return out


def allowed_device_rules():
    """ALLOWED_DEVICES as runtime-spec device rules (for the v2 BPF filter)."""
    return [{"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
            for kind, major, minor, access in ALLOWED_DEVICES]


def device_writes(rules, extra=()):
    """v1 devices.allow/deny lines: the spec's rules in order, then runc's always-allowed
    devices and the container's own linux.devices."""
    out = []
    for rule in rules:
        line = device_rule(rule.get("type", "a"), rule.get("major"), rule.get("minor"),
                           rule.get("access"))
        out.append(("devices", "devices.allow" if rule.get("allow") else "devices.deny", line,
                    "devices"))
    for kind, major, minor, access in ALLOWED_DEVICES + list(extra):
        out.append(("devices", "devices.allow", device_rule(kind, major, minor, access), "devices"))
    return out


def _blkio(blkio, v2):
    out = []
    if not blkio:
        return out
    if blkio.get("weight"):
        if v2:
            out.append(("io", "io.weight", f"default {blkio_weight_to_io(blkio['weight'])}", "blockIO.weight"))
        else:
            out.append(("blkio", "blkio.weight", str(blkio["weight"]), "blockIO.weight"))
    for dev in blkio.get("weightDevice") or []:
        if dev.get("weight"):
            where = f"{dev['major']}:{dev['minor']}"
            if v2:
                out.append(("io", "io.weight", f"{where} {blkio_weight_to_io(dev['weight'])}",
                            "blockIO.weightDevice"))
            else:
                out.append(("blkio", "blkio.weight_device", f"{where} {dev['weight']}",
                            "blockIO.weightDevice"))
    throttles = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps"),
                 ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device", "wbps"),
                 ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device", "riops"),
                 ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops"))
    for key, v1_file, v2_key in throttles:
        for dev in blkio.get(key) or []:
            where = f"{dev['major']}:{dev['minor']}"
            if v2:
                out.append(("io", "io.max", f"{where} {v2_key}={dev['rate']}", f"blockIO.{key}"))
            else:
                out.append(("blkio", v1_file, f"{where} {dev['rate']}", f"blockIO.{key}"))
    return out
