"""Protected-mode virtual interrupts (CR4.PVI; SDM vol. 3A 20.4; vol. 2 CLI,
STI): at CPL 3 below IOPL, CLI and STI change EFLAGS.VIF instead of
faulting, STI #GP(0)s while VIP is set; nothing else changes (PUSHF, POPF
and IRET do not look at VIF), nor at CPL 1 or 2, nor without PVI.
Interpreter and compiled traces."""
import pytest

from ringvisor.exits import Fault, Halt
from cpu_rig import STACK3, UCODE, UDATA, Rig, needs_as

pytestmark = needs_as

IF, VIF, VIP = 0x200, 0x80000, 0x100000
CR4_PVI = 2
both = pytest.mark.parametrize("blocks", [False, True], ids=["interp", "blocks"])


def user(code: str, blocks: bool, eflags: int = 2, cpl: int = 3, pvi: bool = True) -> Rig:
    rig = Rig()
    rig.cpu.use_blocks = blocks
    rig.protected(code + "\nhlt", cpl=cpl, eflags=eflags)
    rig.cpu.cr4 |= CR4_PVI if pvi else 0
    rig.intercept(13)
    return rig


def gp(exit) -> bool:
    return isinstance(exit, Fault) and exit.vector == 13 and exit.error_code == 0


@both
def test_cli_sti_at_cpl3_change_vif(blocks):
    rig = user("cli\npushfd\npop eax\nsti\npushfd\npop ebx", blocks, eflags=2 | IF | VIF)
    e = rig.run()
    assert gp(e)                                            # the HLT at CPL 3
    c = rig.cpu
    assert c.r[0] & (IF | VIF) == IF and c.r[3] & (IF | VIF) == IF | VIF   # IF kept throughout


@both
def test_sti_while_vip_is_gp(blocks):
    rig = user("sti", blocks, eflags=2 | VIP)
    assert gp(rig.run())
    assert not rig.cpu.flags & VIF and rig.cpu.eip == 0x10000


@both
@pytest.mark.parametrize("cpl,pvi", [(3, False), (1, True)], ids=["no-pvi", "cpl1"])
def test_without_pvi_or_below_cpl3_cli_is_gp(cpl, pvi, blocks):
    rig = user("cli", blocks, eflags=2 | IF, cpl=cpl, pvi=pvi)
    assert gp(rig.run())
    assert rig.cpu.flags & IF and rig.cpu.eip == 0x10000


@both
def test_at_iopl3_cli_changes_if(blocks):
    rig = user("cli\nint3", blocks, eflags=2 | IF | VIF | 0x3000)
    rig.intercept(3)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 3
    assert not rig.cpu.flags & IF and rig.cpu.flags & VIF


@both
def test_popf_at_cpl3_changes_neither_if_nor_vif(blocks):
    rig = user(f"push {2 | IF | VIF | 1}\npopfd", blocks, eflags=2)
    assert gp(rig.run())
    assert rig.cpu.flags & (IF | VIF | 1) == 1


@both
def test_popf_at_cpl0_leaves_vif_and_vip(blocks):
    rig = Rig()
    rig.cpu.use_blocks = blocks
    rig.protected(f"push {2 | VIF | VIP}\npopfd\nhlt", eflags=2)
    assert isinstance(rig.run(), Halt)
    assert not rig.cpu.flags & (VIF | VIP)


@both
def test_iret_from_cpl0_to_cpl3_loads_vif_and_vip(blocks):
    rig = Rig()
    rig.cpu.use_blocks = blocks
    rig.protected(f"""
        push {UDATA | 3}
        push {STACK3}
        push {2 | VIF | VIP}
        push {UCODE | 3}
        push OFFSET user
        iretd
    user:
        sti
    """, eflags=2)
    rig.cpu.cr4 |= CR4_PVI
    rig.intercept(13)
    assert gp(rig.run())                                    # STI while VIP (from the IRET)
    assert rig.cpu.cpl == 3 and rig.cpu.flags & (VIF | VIP) == VIF | VIP
