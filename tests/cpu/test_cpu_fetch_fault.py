"""Instruction-fetch page faults at the start of a block: the fault belongs
to the instruction that could not be fetched (saved EIP = its address, ESP
untouched), on the compiled-block path as on the interpreter. Found by the
trap monitor, whose shadow page tables start empty so that the guest's very
first fetch faults."""
import pytest

from ringvisor.exits import Fault
from cpu_rig import CODE, STACK0, Rig, needs_as

pytestmark = needs_as


@pytest.mark.parametrize("blocks", [True, False])
def test_fetch_fault_on_a_jump_target_saves_the_target(blocks):
    rig = Rig()
    rig.protected("push eax\nmov eax, 0x200000\njmp eax")
    rig.cpu.use_blocks = blocks
    rig.identity_paging()
    rig.set_pte(0x200000, 0)
    rig.enable_paging()
    rig.intercept(14)
    e = rig.run()
    assert isinstance(e, Fault) and e.vector == 14 and e.cr2 == 0x200000
    assert rig.cpu.eip == 0x200000 and rig.cpu.r[4] == STACK0 - 4


@pytest.mark.parametrize("blocks", [True, False])
def test_fetch_fault_on_the_first_instruction_of_a_run(blocks):
    rig = Rig()
    rig.protected("nop")
    rig.cpu.use_blocks = blocks
    rig.identity_paging()
    rig.set_pte(CODE, 0)
    rig.enable_paging()
    rig.intercept(14)
    e = rig.run()
    assert isinstance(e, Fault) and e.cr2 == CODE
    assert rig.cpu.eip == CODE and rig.cpu.r[4] == STACK0
