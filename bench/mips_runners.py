"""The runners of bench/mips.py: each boots guests/tests/build/mips.elf with
`rounds=N ring=R` and returns what the guest reported (its checksum and exact
instruction count) and the host wall time of the run.

soft and kvm run in this process through ringvisor's Machine (the time is
Machine.run's: VM set-up and loading excluded); unicorn runs in this process
too (the time is emu_start's); tcg is a qemu-system-i386 process (the time is
the whole process's). The differential method of bench/mips.py cancels
whatever start-up each one includes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from common import ROOT

PAYLOAD = ROOT / "guests" / "tests" / "build" / "mips.elf"
MEMORY = 16 << 20
COM1, COM1_LSR, LSR_THRE_TEMT = 0x3F8, 0x3FD, 0x60
DEBUG_EXIT = 0xF4
TIMEOUT = 900.0                         # seconds: a guest that never exits is a failure

HEAD = re.compile(rb"mips rounds=(\d+) cpl=(\d)")
REPORT = re.compile(rb"mips checksum=0x([0-9a-f]{8}) instructions=(\d+)")


class Unavailable(Exception):
    """The runner cannot run on this machine (a missing peer, no /dev/kvm)."""


class RunFailed(Exception):
    """The runner ran but the guest did not report (crash, bad exit)."""


@dataclass(frozen=True)
class Sample:
    checksum: int
    instructions: int
    seconds: float
    host_emulated: int | None = None    # kvm: instructions the host kernel's emulator ran


def cmdline(rounds: int, ring: int) -> str:
    return f"rounds={rounds} ring={ring}"


def parse(output: bytes, rounds: int, ring: int, seconds: float,
          host_emulated: int | None = None) -> Sample:
    head, report = HEAD.search(output), REPORT.search(output)
    if not head or not report:
        tail = output[-300:].decode(errors="replace").strip()
        raise RunFailed(f"no report from the guest (output: {tail!r})")
    if int(head[1]) != rounds or int(head[2]) != ring:
        raise RunFailed(f"the guest ran rounds={int(head[1])} at CPL {int(head[2])}, "
                        f"asked for rounds={rounds} ring={ring}")
    return Sample(int(report[1], 16), int(report[2]), seconds, host_emulated)


# -- ringvisor's engines, through Machine -----------------------------------------
def _machine(engine: str, technique: str, rounds: int, ring: int) -> Sample:
    from ringvisor.errors import ConfigError, KvmUnavailable, RingvisorError
    from ringvisor.vm import VmConfig, build_machine
    out = bytearray()
    config = VmConfig(kernel=str(PAYLOAD), engine=engine, technique=technique,
                           cmdline=cmdline(rounds, ring), memory=MEMORY, timeout=TIMEOUT)
    try:
        machine = build_machine(config, out.extend)
    except (KvmUnavailable, ConfigError) as e:
        raise Unavailable(str(e)) from None
    try:
        result = machine.run()
    except RingvisorError as e:
        raise RunFailed(str(e).splitlines()[0]) from None
    finally:
        machine.close()
    if result.status != 0:
        raise RunFailed(f"the guest exited with status {result.status} ({result.reason})")
    kernel = result.stats.get("kernel")             # kvm only; zero counters are left out
    emulated = kernel.get("vcpu", {}).get("insn_emulation", 0) if kernel is not None else None
    return parse(bytes(out), rounds, ring, result.wall_seconds, emulated)


def soft(rounds: int, ring: int) -> Sample:
    return _machine("soft", "native", rounds, ring)


def kvm(rounds: int, ring: int) -> Sample:
    return _machine("kvm", "hw", rounds, ring)


# -- Unicorn (PyPI): QEMU's TCG as a library --------------------------------------------
def unicorn(rounds: int, ring: int) -> Sample:
    try:
        import unicorn as U
        from unicorn import x86_const as R
    except ImportError:
        raise Unavailable("unicorn is not installed (pip install -e '.[bench]')") from None
    from ringvisor.boot import image
    from ringvisor.boot.layout import Layout
    from ringvisor.cpu_state import CpuState
    from ringvisor.machine.memory import GuestMemory

    # ringvisor's Multiboot loader fills the RAM and gives the entry state;
    # Unicorn maps the same bytes (no copy).
    memory = GuestMemory(MEMORY)
    state = image.load(str(PAYLOAD), memory, Layout(MEMORY), cmdline(rounds, ring))
    uc = U.Uc(U.UC_ARCH_X86, U.UC_MODE_32)
    uc.mem_map_ptr(0, MEMORY, U.UC_PROT_ALL, memory.host_address)
    for name in CpuState.GPRS + ("eip", "eflags"):
        uc.reg_write(getattr(R, f"UC_X86_REG_{name.upper()}"), getattr(state, name))
    out, status = bytearray(), []

    def port_in(uc, port, size, _):
        return LSR_THRE_TEMT if port == COM1_LSR else 0xFF

    def port_out(uc, port, size, value, _):
        if port == COM1:
            out.append(value & 0xFF)
        elif port == DEBUG_EXIT:
            status.append(value & 0xFF)
            uc.emu_stop()

    uc.hook_add(U.UC_HOOK_INSN, port_in, None, 1, 0, R.UC_X86_INS_IN)
    uc.hook_add(U.UC_HOOK_INSN, port_out, None, 1, 0, R.UC_X86_INS_OUT)
    start = time.perf_counter()
    try:
        uc.emu_start(state.eip, 0xFFFFFFFF, timeout=int(TIMEOUT * 1e6))
    except U.UcError as e:
        # emu_stop() ends the run at the end of the translation block, so the
        # exit's `cli; hlt` may still fault in ring 3: then the guest is done.
        if not status:
            eip = uc.reg_read(R.UC_X86_REG_EIP)
            raise RunFailed(f"unicorn stopped at eip={eip:#x}: {e}") from None
    seconds = time.perf_counter() - start
    if status != [0]:
        raise RunFailed("the guest did not exit through the debug-exit port" if not status
                        else f"the guest exited with status {status[0]}")
    return parse(bytes(out), rounds, ring, seconds)


# -- QEMU TCG (Debian's qemu-system-i386) -------------------------------------------
def tcg(rounds: int, ring: int) -> Sample:
    qemu = shutil.which("qemu-system-i386")
    if not qemu:
        raise Unavailable("qemu-system-i386 not found (apt-get install qemu-system-x86)")
    cmd = [qemu, "-accel", "tcg", "-kernel", str(PAYLOAD), "-append", cmdline(rounds, ring),
           "-nodefaults", "-nographic", "-serial", "stdio", "-monitor", "none", "-display", "none",
           "-no-reboot", "-m", str(MEMORY >> 20),
           "-device", f"isa-debug-exit,iobase={DEBUG_EXIT:#x},iosize=1"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                              env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise RunFailed(f"qemu did not finish within {TIMEOUT:g} s") from None
    seconds = time.perf_counter() - start
    if proc.returncode != 1:          # isa-debug-exit: (status << 1) | 1
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RunFailed(f"qemu exited with {proc.returncode}: {err[-1] if err else 'no message'}")
    return parse(proc.stdout, rounds, ring, seconds)


RUNNERS = {"soft": soft, "unicorn": unicorn, "tcg": tcg, "kvm": kvm}
