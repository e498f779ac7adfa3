"""Debian 12's own i386 kernel booting on the soft engine (issues 12, 13):
natively, under binary translation, under trap-and-emulate (ring 1 and
ring 3) and under the hw monitor on the soft CPU's VMX (EPT and shadow
paging). Each boot takes minutes, so `make test-linux` runs them (after
`make linux`), not `make test`; RINGVISOR_LINUX_TECHNIQUES (default
"native,native:smp2,bt,trap,trap:3,hw:ept,hw:ept:smp2,hw:shadow": a
technique and optionally :ring for trap, :paging for hw, :smpN for N CPUs
under native or hw)
chooses which.

One boot per technique serves every test here; it stops at the first of:
the guest's reset (the initramfs ends with `reboot -f`), a kernel panic,
the kernel giving up on its FPU, or the time limit. Each prints its
instructions, wall time and traps by kind.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "guests" / "linux" / "build"
LIMIT_S = 3000
MEMORY = 64 << 20
DEFAULT = "native,native:smp2,bt,trap,trap:3,hw:ept,hw:ept:smp2,hw:shadow"
TECHNIQUES = [t for t in os.environ.get("RINGVISOR_LINUX_TECHNIQUES", DEFAULT).split(",") if t]
STOP_MARKS = (b"Kernel panic", b"x86/fpu: Giving up")

pytestmark = [
    pytest.mark.skipif(os.environ.get("RINGVISOR_LINUX_BOOT") != "1",
                       reason="booting Linux takes minutes: `make test-linux` runs these"),
    pytest.mark.skipif(not (BUILD / "vmlinuz").is_file() or not (BUILD / "initrd.cpio.gz").is_file(),
                       reason="Debian's kernel is not fetched: `make linux` downloads it through apt"),
]


class Boot:
    def __init__(self, choice: str):
        from ringvisor import monitors
        from ringvisor.errors import RingvisorError
        from ringvisor.boot import linux
        from ringvisor.vm import VmConfig, build_machine
        technique, *variants = choice.split(":")
        self.technique, self.name = technique, choice
        self.console = bytearray()
        self.cpus = next((int(v[3:]) for v in variants if v.startswith("smp")), 1)
        variant = next((v for v in variants if not v.startswith("smp")), "")
        if technique == "hw":
            ring, paging = 1, variant or "ept"
        else:
            ring, paging = (1 if self.cpus > 1 else int(variant or 1)), "ept"
        config = VmConfig(kernel=str(BUILD / "vmlinuz"), engine="soft", technique=technique, ring=ring, paging=paging,
                          modules=(str(BUILD / "initrd.cpio.gz"),), image_format="linux",
                          timeout=LIMIT_S, cmdline="", memory=MEMORY, cpus=self.cpus)
        self.machine = build_machine(config, self._write)
        pc = self.machine.platform.pc is not None             # the pc machine: APICs left on
        self.default_cmdline = linux.command_line("", monitors.reserved_linear(technique), apic=pc)
        self.usable_end = MEMORY - monitors.reserved_top(technique, "soft")
        start, cpu_start = time.monotonic(), time.process_time()
        try:
            result = self.machine.run()
            self.status, self.reason = result.status, result.reason
        except RingvisorError as e:
            self.status, self.reason = e.exit_code, str(e).splitlines()[0]
        finally:
            self.wall = time.monotonic() - start
            self.stats = self.machine.statistics(self.wall)
            self.machine.close()
        self.instructions = self.stats["instructions"] if self.cpus > 1 else \
            self.machine.platform.engine.instructions      # (every CPU's, with several)
        self.cpu_seconds = time.process_time() - cpu_start
        self.text = self.console.decode(errors="replace")

    def _write(self, data: bytes) -> None:
        self.console.extend(data)
        tail = bytes(self.console[-64:])
        if any(mark in tail for mark in STOP_MARKS):
            self.machine.request_quit()


@pytest.fixture(scope="module", params=TECHNIQUES)
def boot(request):
    b = Boot(request.param)
    line = (f"\nlinux boot, {b.name}: {b.instructions:,} instructions in {b.wall:.0f} s "
            f"({b.cpu_seconds:.0f} s CPU); ended: {b.reason}")
    for cpu in b.stats.get("cpus", []) if b.cpus > 1 else ():
        line += f"\n  cpu{cpu['cpu']}: {cpu['instructions']:,} instructions, {cpu['pause_yields']:,} PAUSE yields"
    mon = b.stats.get("monitor") or {}
    if mon.get("exits"):
        line += f"\n  {mon['exits']:,} VM exits"
    if mon.get("traps"):
        kinds = ", ".join(f"{k} {n:,}" for k, n in mon["traps_by_kind"].items())
        line += f"\n  {mon['traps']:,} traps: {kinds}"
    if mon.get("device_mmio"):
        dev = mon["device_mmio"]
        line += (f"\n  device MMIO: {dev['emulated']:,} emulated, {dev['stepped']:,} stepped; "
                 + ", ".join(f"{k} {n:,}" for k, n in dev["by_device"].items()))
    print(line)
    return b


def test_the_kernel_starts_and_reads_what_the_loader_gave_it(boot):
    assert "Linux version 6.1." in boot.text
    assert f"Kernel command line: {boot.default_cmdline}" in boot.text
    assert "printk: console [ttyS0] enabled" in boot.text
    # The e820 map the loader wrote, as the kernel prints it.
    assert "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable" in boot.text
    assert f"BIOS-e820: [mem 0x0000000000100000-0x{boot.usable_end - 1:016x}] usable" in boot.text
    assert "RAMDISK: [mem 0x03" in boot.text


def test_the_soft_platform_answers_every_port_the_kernel_touches(boot):
    assert "Unable to read current time from RTC" not in boot.text
    assert not boot.machine.ports.unknown


def test_the_kernel_reaches_the_initramfs_and_ends_the_run_cleanly(boot):
    assert "linux guest ready: Linux 6.1." in boot.text
    assert boot.status == 0 and "reset" in boot.reason


def test_under_a_monitor_linux_keeps_out_of_the_monitors_linear_region(boot):
    if boot.technique in ("native", "hw"):         # hw's monitor lives outside the guest's address space
        assert "Reserving virtual address space" not in boot.text
    else:
        assert "Reserving virtual address space above 0xffc00000" in boot.text
        assert boot.stats["monitor"]["descriptors_updated"] > 0       # the TLS slots, followed


def test_on_the_pc_machine_trap_and_bt_virtualize_the_apics(boot):
    """Linux without `noapic nolapic`: its xAPIC and I/O APIC accesses
    trap into the monitor (device_access.py), none is left unemulated."""
    if boot.technique not in ("trap", "bt") or boot.machine.platform.pc is None:
        pytest.skip("the trap and bt monitors on the pc machine")
    assert "nolapic" not in boot.default_cmdline
    dev = boot.stats["monitor"]["device_mmio"]
    assert dev["by_device"]["local APIC 0xfee00000"] > 0 and dev["by_device"]["I/O APIC"] > 0
    assert dev["emulated"] > 0
    assert boot.stats["platform"]["pc"]["cpus"][0]["timer_expiries"] > 0     # the APIC timer ticks


def test_no_msr_the_kernel_reads_is_missing(boot):
    assert "unchecked MSR access error" not in boot.text


def test_the_monitors_ram_is_reserved_in_the_e820_map(boot):
    if boot.usable_end < MEMORY:
        assert f"BIOS-e820: [mem 0x{boot.usable_end:016x}-0x{MEMORY - 1:016x}] reserved" in boot.text


def test_on_several_cpus_every_cpu_comes_up(boot):
    if boot.cpus == 1:
        pytest.skip("one CPU")
    assert f"smp: Brought up 1 node, {boot.cpus} CPUs" in boot.text
    assert f"smpboot: Total of {boot.cpus} processors activated" in boot.text
    per_cpu = boot.stats["cpus"]
    assert [c["startups"] for c in per_cpu] == [0] + [1] * (boot.cpus - 1)
    assert all(c["instructions"] > 0 for c in per_cpu)


def test_hw_only_cpuid_tells_and_every_exit_was_handled(boot):
    if boot.technique != "hw":
        pytest.skip("the hw monitor's exits")
    # /proc/cpuinfo's flags show the hypervisor bit.
    assert "hypervisor" in boot.text.split("linux guest ready:")[1]
    mon = boot.stats["monitor"]
    reasons = mon["exits_by_reason"]
    assert reasons["io_instruction"] > 0 and reasons["cpuid"] > 0
    if mon["paging"] == "shadow":
        assert reasons["cr_access"] > 0 and reasons["exception_nmi"] > 0     # CR3 loads, #PF
    else:
        assert "exception_nmi" not in reasons
        # Under EPT the only violations are device accesses (the pc machine's
        # local and I/O APICs), each one instruction emulated.
        assert reasons.get("ept_violation", 0) == sum(mon["mmio_exits_by_page"].values())
        assert set(mon["mmio_exits_by_page"]) <= {"0xfee00000", "0xfec00000", "0xfed00000"}


def test_on_the_pc_machine_linux_finds_the_440fx_through_configuration_mechanism_1(boot):
    if boot.machine.platform.pc is None:
        pytest.skip("the isa machine has no PCI bus (its command line says pci=off)")
    assert "pci=off" not in boot.default_cmdline
    assert "PCI: Using configuration type 1 for base access" in boot.text
    assert "pci 0000:00:00.0: [8086:1237] type 00 class 0x060000" in boot.text
    assert "pci 0000:00:01.0: [8086:7000] type 00 class 0x060100" in boot.text
    assert boot.stats["platform"]["pc"]["pci_config_cycles"] > 0
