"""What the soft engine lacks that KVM's host kernel gives a VM: the 8259A
PIC pair, the 8254 PIT, and a clock to drive them; and the rest of a PC's
motherboard that a stock OS (Linux) touches: port 0x61 (PIT channel 2's gate
and output), the CMOS RTC on IRQ 8, the i8042 keyboard controller and port
0x92. A reset request from the i8042 (0xFE) or port 0x92 ends the run with
status 0, as a guest `reboot` (GuestStopped, like the debug-exit port).

Time on the soft engine is virtual and deterministic: the CPU is a 100 MHz
processor retiring one instruction per cycle, so virtual time is the retired
instruction count times `NS_PER_INSTRUCTION`, plus the time skipped while the
guest halted waiting for the timer. A halted guest costs no host time: the
clock jumps to the PIT's next edge. The TSC keeps counting through the skip,
as a real TSC does while the processor sleeps.
"""
from __future__ import annotations

import time

from ringvisor.devices import port61, reset_control, rtc_cmos
from ringvisor.devices.i8042 import AUX_IRQ, KBD_IRQ, I8042
from ringvisor.devices.pic8259 import PicPair
from ringvisor.devices.pit8254 import BASE as PIT_BASE, PORTS as PIT_PORTS, Pit8254
from ringvisor.exits import GuestStopped

NS_PER_INSTRUCTION = 10          # 100 MHz, one instruction per cycle


class _Clocked:
    """A device as the bus sees it, brought to the CPU's present before every access."""

    def __init__(self, platform: "SoftPlatform", device):
        self.platform, self.device = platform, device

    def io_read(self, offset: int, size: int) -> int:
        self.platform.sync()
        return self.device.io_read(offset, size)

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.platform.sync()
        self.device.io_write(offset, size, value)


RTC_IRQ = 8


def acpi_power_off() -> None:
    """The guest entered ACPI S5 (soft off): the run ends with status 0."""
    raise GuestStopped(0, "ACPI power-off (S5)")


def guest_reset(source: str) -> None:
    """A reset request from the guest: the run ends with status 0."""
    raise GuestStopped(0, f"guest reset ({source})")


class SoftPlatform:
    def __init__(self, ports, engine=None, ram_size: int = 0, reset=guest_reset, pc=None, mmio=None,
                 memory=None, memory_map=(), cmdline: bytes | None = None):
        """`pc` (a boot.pc_description.PcDescription; None by default, which
        keeps the 1990 PC above) adds the local and I/O APICs, the ACPI PM
        block, fw_cfg, the HPET if described, and the firmware tables
        (machine/pc_platform.py); it needs the MMIO bus and guest memory.
        `reset(source)` is what a guest's reset request does (end the run)."""
        self.engine = engine              # the CPU running now (switch_to)
        self.reset = reset
        self._cpus = None                 # every CPU's engine, the BSP first (set_cpus)
        self.current = 0
        self.idle_ns = 0                  # virtual time the running CPU skipped while halted
        self._idle = [0]                  # the same, per CPU (for the ones not running)
        self.device_ns = 0                # where the shared timers are: never backwards
        self.idle_skips = 0
        self.pic = PicPair()
        self.pc = None
        irq0 = self.pic.irq_line(0)
        on_reset = lambda kind: reset(reset_control.DESCRIPTIONS[kind])  # noqa: E731
        if pc is not None:
            from ringvisor.machine.pc_platform import PcPlatform
            self.pc = PcPlatform(pc, ports=ports, mmio=mmio, memory=memory, pic=self.pic,
                                 clock=lambda: self.clock_ns() if self.engine is not None else 0,
                                 tsc=lambda: self.engine.tsc() if self.engine is not None else 0,
                                 memory_map=memory_map, cmdline=cmdline)
            self.pc.on_reset = on_reset                           # it owns 0xCF9 and 0x92
            self.pc.on_power_off = acpi_power_off
            irq0 = self.pc.pit_line
        else:
            reset_control.register(ports, on_reset)
        self.pit = Pit8254(irq=irq0)
        self.rtc = rtc_cmos.CmosRtc(irq=self.irq_line(RTC_IRQ), ram_size=ram_size)
        self.i8042 = I8042(irq_kbd=self.irq_line(KBD_IRQ), irq_aux=self.irq_line(AUX_IRQ),
                           reset=lambda: reset("i8042 reset pulse"))
        self.pic.register(ports)
        # The PIT as the bus sees it: brought to the CPU's present before every
        # access, so a guest polling the counter watches it move mid-slice.
        ports.register(PIT_BASE, PIT_PORTS, _Clocked(self, self.pit), "8254 PIT")
        self.port61 = port61.Port61(self.pit, self.now_ns)
        ports.register(port61.PORT, 1, _Clocked(self, self.port61), "system control port B (PIT ch2 gate)")
        ports.register(rtc_cmos.BASE, rtc_cmos.PORTS, _Clocked(self, self.rtc), "CMOS RTC (MC146818)")
        self.i8042.register(ports)

    def irq_line(self, irq: int):
        if self.pc is not None:
            return self.pc.irq_line(irq)
        return self.pic.irq_line(irq)

    def set_cpus(self, engines: list) -> None:
        """The machine's CPUs (several on the pc machine with --cpus N), the
        bootstrap processor first; each keeps its own virtual clock."""
        self._cpus = list(engines)
        self._idle = [0] * len(self.cpus)
        self.switch_to(0)
        if self.pc is not None:
            self.pc.attach_cpus(self.cpus)

    @property
    def cpus(self) -> list:
        return self._cpus if self._cpus is not None else [self.engine]

    def switch_to(self, index: int) -> None:
        """Make CPU `index` the running one: its clock is the platform's
        present, its APIC answers at 0xFEE00000."""
        self._idle[self.current] = self.idle_ns
        self.current, self.engine = index, self.cpus[index]
        self.idle_ns = self._idle[index]
        if self.pc is not None:
            self.pc.apic_bus.current = index

    def cpu_now_ns(self, index: int) -> int:
        idle = self.idle_ns if index == self.current else self._idle[index]
        return self.cpus[index].instructions * NS_PER_INSTRUCTION + idle

    def idle_cpu(self, index: int, ns: int) -> None:
        """CPU `index` spent `ns` halted (or waiting for a SIPI): its clock
        and its TSC move on, as a sleeping processor's TSC does."""
        if index == self.current:
            self.idle_ns += ns
        else:
            self._idle[index] += ns
        self.cpus[index].tsc_offset += ns // NS_PER_INSTRUCTION

    def now_ns(self) -> int:
        return self.engine.instructions * NS_PER_INSTRUCTION + self.idle_ns

    def clock_ns(self) -> int:
        """The present the devices see: the running CPU's clock, but never
        behind the shared timers (with several CPUs each runs its quantum
        from the same start, one after the other)."""
        return max(self.now_ns(), self.device_ns)

    def sync(self) -> None:
        """Bring the timers (PIT, RTC, and the APIC-era ones) to the CPU's present."""
        self._advance_to(self.now_ns())

    def _advance_to(self, ns: int) -> None:
        if ns < self.device_ns:
            return
        self.device_ns = ns
        self.pit.advance_to(ns)
        self.rtc.advance_to(ns)
        if self.pc is not None:
            self.pc.advance_to(ns)

    def next_event_ns(self) -> int | None:
        """The next timer edge of any device, in absolute virtual ns."""
        events = [t for t in (self.pit.next_event_ns(), self.rtc.next_event_ns()) if t is not None]
        if self.pc is not None:
            other = self.pc.next_event_ns()
            if other is not None:
                events.append(max(other, self.now_ns() + 1))
        return min(events) if events else None

    def budget(self, slice_: int) -> int:
        """Instructions to run before the PIT's next edge is due, at most
        `slice_`: timer interrupts arrive at the exact instruction they would
        on every run (deterministic)."""
        nxt = self.next_event_ns()
        if nxt is None:
            return slice_
        return max(1, min(slice_, -(-(nxt - self.now_ns()) // NS_PER_INSTRUCTION)))

    def skip_to_next_event(self) -> bool:
        """The CPU halted waiting for an interrupt: let virtual time jump to
        the PIT's next edge. False if no timer will ever fire."""
        nxt = self.next_event_ns()
        if nxt is None:
            return False
        for index in range(len(self.cpus)):
            self.idle_cpu(index, max(0, nxt - self.cpu_now_ns(index)))
        self.idle_skips += 1
        self._advance_to(nxt)
        return True

    def host_clock_tsc(self, traps=lambda: 0) -> list[tuple[int, int]]:
        """Make RDTSC read the host clock (100 MHz: one tick per 10 ns of
        host time) instead of the instruction count, and log every read as
        (host ns, traps so far). `ringvisor compare` uses it: the guest's
        own RDTSC-timed loops then measure host time, monitor included, as
        Adams & Agesen's nanobenchmarks did on real hardware. Runs stop
        being repeatable, so it is never the default."""
        log: list[tuple[int, int]] = []
        clock, start = time.perf_counter_ns, time.perf_counter_ns()

        def tsc() -> int:
            ns = clock() - start
            log.append((ns, traps()))
            return ns // NS_PER_INSTRUCTION
        self.engine.tsc = tsc
        return log

    def statistics(self) -> dict:
        self._idle[self.current] = self.idle_ns
        return {"virtual_seconds": self.now_ns() / 1e9,
                "idle_virtual_seconds": self._idle[0] / 1e9,
                "halts_skipped": self.idle_skips,
                "timer_interrupts": self.pit.stats.irq_pulses,
                "interrupts_by_irq": dict(sorted(self.pic.delivered.items())),
                **({"pc": self.pc.statistics()} if self.pc is not None else {})}
