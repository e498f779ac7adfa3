"""The end of a budget inside a compiled trace (compiler/blocks.py): the
instructions left are interpreted one by one, decoded once per place and
kept (the cold path), not decoded again on every turn. Several soft CPUs
run turns of at most 10,000 instructions (machine/smp.py), so a Linux boot
on two CPUs ended budgets inside traces hundreds of thousands of times."""
from ringvisor.exits import Interrupted
from cpu_rig import Rig

LOOP = """
    xor eax, eax
    xor ebx, ebx
1:  inc eax
    add ebx, eax
    cmp eax, 1000000
    jne 1b
    hlt
"""


def rig(use_blocks: bool) -> Rig:
    r = Rig()
    r.cpu.use_blocks = use_blocks
    r.protected(LOOP)
    return r


def test_short_budgets_end_inside_traces_exactly_and_decode_once_per_place():
    compiled, reference = rig(True), rig(False)
    for _ in range(3):                          # compiles the trace from CODE, then the loop's own
        compiled.run(200)
        reference.run(200)
    head = compiled.cpu.eip
    assert head in compiled.cpu.blocks.fast and compiled.cpu.blocks.fast[head].n > 2
    decodes = 0
    decode_at = compiled.cpu.decode_at

    def counting(eip):
        nonlocal decodes
        decodes += 1
        return decode_at(eip)
    compiled.cpu.decode_at = counting
    for budget in [3, 5, 2, 7] * 50:            # each ends inside the 4-instruction loop
        assert isinstance(compiled.run(budget), Interrupted)
        assert isinstance(reference.run(budget), Interrupted)
        assert (compiled.cpu.r, compiled.cpu.eip, compiled.cpu.instructions) == \
            (reference.cpu.r, reference.cpu.eip, reference.cpu.instructions)
    # Each of the loop's four instructions decoded at most once more, not 200 turns' worth.
    assert decodes <= 4, decodes
