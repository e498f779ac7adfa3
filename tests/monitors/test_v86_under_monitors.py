"""Virtual-8086 mode under the trap (ring 1, ring 3) and bt monitors
(monitors/common/v86.py, v86_emulate.py): the guest kernel IRETs to VM=1,
its 8086 program runs on the real CPU in virtual-8086 mode at real IOPL 0,
and the guest kernel sees what bare hardware shows it.

guests/tests/v86.c prints the same verdict line as natively (and as QEMU,
test_v86_kernel.py): at IOPL 0 the program's CLI/STI/INT n reach the guest
kernel's #GP handler with the v86 frame, at IOPL 3 they run (emulated by
the monitor against the virtual flags) and INT n goes through the guest's
DPL-3 gates; the OUT the guest TSS does not grant is the guest's #GP at
both."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ringvisor.errors import GuestCrashed
from monitor_rig import run
from test_v86_kernel import VERDICTS

MONITORS = [("trap", 1), ("trap", 3), ("bt", 1)]


@pytest.mark.parametrize("iopl", sorted(VERDICTS))
@pytest.mark.parametrize("technique,ring", MONITORS)
def test_v86_kernel_verdict_as_natively(test_kernels, technique, ring, iopl):
    result, out = run(test_kernels / "v86.elf", f"entry=iret {iopl}", technique=technique, ring=ring)
    assert result.status == 0, out
    assert out[-2:] == ["v86: hello from virtual-8086 mode", VERDICTS[iopl]]


# --- guests/tests/v86ops.c: every event out of v86 mode, logged by the guest kernel ---------
CMDLINES = ["iopl=0", "iopl=3", "iopl=0 vme=1", "iopl=3 vme=1"]
# What the monitor does itself (virtual_8086.emulated): at IOPL 0 without VME
# only INT3, INTO (not IOPL-sensitive: through the guest's gates) and the I/O
# the guest's bitmap grants (OUT, OUTSB to port 0x80); at IOPL 3 every
# sensitive instruction (the real IOPL is 0); with VME also the VIF forms
# and the INT 0x34 its redirection bitmap sends to the program's IVT.
EMULATED = {"iopl=0": 4, "iopl=3": 26, "iopl=0 vme=1": 16, "iopl=3 vme=1": 28}


def v86ops(test_kernels, cmdline: str, technique: str = "native", ring: int = 1):
    kw = {"paging": "ept"} if technique == "native" else {"ring": ring}
    result, out = run(test_kernels / "v86ops.elf", cmdline, technique=technique, **kw)
    assert result.status == 0, out
    return result, [line for line in out if line.startswith(("ev ", "irq ", "v86ops "))]


@pytest.fixture(scope="module")
def native(test_kernels):
    return {cmdline: v86ops(test_kernels, cmdline)[1] for cmdline in CMDLINES}


@pytest.mark.parametrize("cmdline", CMDLINES)
@pytest.mark.parametrize("technique,ring", MONITORS)
def test_v86ops_guest_kernel_sees_what_bare_hardware_shows(test_kernels, native, technique, ring,
                                                          cmdline):
    result, lines = v86ops(test_kernels, cmdline, technique, ring)
    assert lines == native[cmdline]
    v86 = result.stats["monitor"]["virtual_8086"]
    # One entry (the kernel's IRET to VM=1) per event out of v86 mode.
    events = int(lines[-1].rsplit("events=", 1)[1])
    assert v86["entries"] == v86["exits"] == events
    assert v86["emulated"] == EMULATED[cmdline]
    assert v86["redirected"] == (1 if "vme=1" in cmdline else 0)     # INT 0x34 to the 8086 IVT
    # The program's store into the guest kernel's page table (a page the
    # monitor traces) is stepped in v86 mode and mirrored before the read
    # through the new mapping: it reads the remapped page's 0x7171.
    assert results(lines)[18] == 0x7171
    if technique == "trap":          # the kernel's two PTE writes in its #PF handler, and this one
        assert result.stats["monitor"]["shadow_paging"]["pte_write_traps"] == 3


def field(line: str, name: str) -> int:
    return int(line.split(f" {name}=")[1].split()[0], 16)


def events(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ev ")]


def results(lines: list[str]) -> list[int]:
    return [int(w, 16) for w in lines[-1].split()[2:-1]]


def test_v86ops_at_iopl3_follows_the_sdm(native):
    """Facts of the SDM the native run (and so every monitor) shows."""
    ev = events(native["iopl=3"])
    gp = sorted(field(line, "e") for line in ev if field(line, "v") == 13)
    # OUT 0x84, OUT 0x7F (word), IN 0x84, HLT: #GP(0); INT 0x31 (DPL-0 gate):
    # #GP(vector*8+2); INT 0x32/0x33 to a conforming / DPL-3 code segment:
    # #GP(its selector) (SDM 20.3.1.1); INT3 on a DPL-0 gate: #GP(0x1A).
    assert gp == [0, 0, 0, 0, 0x1A, 0x28, 0x38, 0x18A]
    assert field(ev[0], "v") == 0x30
    for line in ev:
        assert field(line, "fl") & 0x20000 and field(line, "fl") >> 12 & 3 == 3   # VM, IOPL 3
        assert field(line, "hds") == 0                   # DS null in the handler
        assert (field(line, "fs"), field(line, "gs")) == (0x4444, 0x5555)
    pf = [line for line in ev if field(line, "v") == 14]
    assert [(field(p, "e"), field(p, "cr2")) for p in pf] == [(4, 0x50010), (7, 0x60004)]
    # PUSHF image; POPF cannot change IOPL; PUSHFD clears VM and RF, POPFD sets AC and ID
    # but not RF; IRET and IRETD inside v86 mode keep IOPL.
    assert results(native["iopl=3"])[:9] == [0x3046, 0x1234, 0x7CD7, 0x3002, 0, 0x38C3, 0x24,
                                             0x38D7, 0x3CC7]


def test_v86ops_at_iopl0_every_sensitive_instruction_is_the_kernels(native):
    gp = [line for line in events(native["iopl=0"]) if field(line, "v") == 13]
    # PUSHF x4, POPF x2, PUSHFD x3, POPFD x3, IRET, IRETD, INT x6 (error code 0),
    # INT3 (0x1A), OUT 0x84, OUT 0x7F (word), IN 0x84, STI, CLI, HLT.
    assert len(gp) == 27
    assert sorted(field(line, "e") for line in gp)[-2:] == [0, 0x1A]


def test_v86ops_with_vme_below_iopl3_uses_vif(native):
    """SDM 20.3: the 16-bit PUSHF/POPF/IRET and CLI/STI do not trap; PUSHF
    shows IOPL 3 and VIF as IF; the 32-bit forms still #GP(0); INT n by
    Table 20-2: INT 0x34 (redirection bit clear) runs the program's own
    handler, the others (bit set) #GP(0)."""
    lines = native["iopl=0 vme=1"]
    words = results(lines)
    assert words[0] == 0x3046 and words[2] == 0x7CD7 and words[7] == 0x38D7
    assert words[15:18] == [0x3434, 0x3046, 0x3046]
    gp_ips = [field(line, "ip") for line in events(lines) if field(line, "v") == 13]
    opcodes = {0x28: "pushfd", 0x36: "popfd", 0x38: "pushfd", 0x43: "popfd", 0x64: "iretd",
               0x66: "pushfd", 0x71: "popfd"}
    assert [ip for ip in gp_ips if ip < 0x76] == list(opcodes)     # before INT 0x30: only these
    assert not any(field(line, "fl") & 0x200 for line in events(lines)[:-2])   # real IF stays 0
    # At IOPL 3 INT 0x34 goes to the 8086 handler too (method 5), not to the IDT.
    assert results(native["iopl=3 vme=1"])[15] == 0x3434
    assert not any(field(line, "v") == 0x34 for line in events(native["iopl=3 vme=1"]))
    assert any(field(line, "v") == 0x34 for line in events(native["iopl=3"]))


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="QEMU not installed")
@pytest.mark.parametrize("cmdline", ["iopl=0", "iopl=3"])
def test_v86ops_native_matches_qemu(test_kernels, native, cmdline):
    """QEMU TCG as a reference nobody here wrote, without VME (its TCG has
    neither the VIF forms nor the redirection of Table 20-2: it traps them,
    as found here). It does not set RF in the EFLAGS image of a fault (SDM
    vol. 3 17.3.1.1 says the processor does): RF is masked."""
    proc = subprocess.run(
        ["qemu-system-i386", "-accel", "tcg", "-cpu", "pentium2", "-m", "64",
         "-kernel", str(test_kernels / "v86ops.elf"), "-append", cmdline, "-nographic",
         "-serial", "stdio", "-monitor", "none", "-display", "none", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=1"],
        capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    text = proc.stdout.decode(errors="replace").replace("\r", "")
    lines = [line for line in text[text.index("ev v="):].splitlines()      # after the BIOS's noise
             if line.startswith(("ev ", "irq ", "v86ops "))]

    def no_rf(line: str) -> str:
        return re.sub(r"fl=0x(\w+)", lambda m: f"fl={int(m[1], 16) & ~0x10000:#010x}", line)
    assert [no_rf(x) for x in lines] == [no_rf(x) for x in native[cmdline]]


@pytest.mark.parametrize("cmdline", CMDLINES)
@pytest.mark.parametrize("paging", ["ept", "shadow"])
def test_v86ops_under_hw_as_natively(test_kernels, native, paging, cmdline):
    """hw runs the v86 task in VMX non-root operation with the guest's CR4.VME
    and PVI passed through (monitors/hw/shadow.py)."""
    result, out = run(test_kernels / "v86ops.elf", cmdline, technique="hw", paging=paging)
    assert result.status == 0, out
    assert [line for line in out if line.startswith(("ev ", "irq ", "v86ops "))] == native[cmdline]


@pytest.mark.parametrize("technique,ring", MONITORS)
def test_a_task_switch_into_v86_is_refused_with_one_line(test_kernels, technique, ring):
    """trap and bt do not emulate task switches: the guest's far JMP to its
    v86 TSS ends the run with one clear line (it used to reach the guest as a
    #GP its CPU would not raise, under trap)."""
    with pytest.raises(GuestCrashed) as e:
        run(test_kernels / "v86.elf", "entry=task iopl=0", technique=technique, ring=ring)
    assert e.value.exit_code == 4
    first = str(e.value).splitlines()[0]
    assert "far JMP through system descriptor 0x0020" in first and "task switches" in first
