"""The binary translator: one guest kernel basic block at a guest EIP into a
Draft for the translation cache (bt_cache.py).

The block is decoded with the soft CPU's table decoder (the same rows whose
PRIV/IOPL/SENSITIVE flags bt_classify.py reads) through the guest's own page
tables, and ends at a control transfer, at a callout that transfers
control, at the end of the guest page, at an instruction already translated
(the block then jumps there), or after MAX_INSNS instructions. What each
instruction becomes:

    copied                  the same bytes
    jmp rel8/rel32          jmp rel32 -> the target's translation or an exit stub
    jcc rel8/rel32          jcc rel32 -> taken; jmp rel32 -> fall-through
    call rel32              push imm32 <guest return EIP>; jmp rel32 -> target
    ret, jmp/call r/m32     the target cache's inline lookup (bt_returns.py)
    loop/jecxz rel8         loop +2; jmp short +5; jmp rel32 -> taken; jmp rel32 -> next
    callout                 hlt (one byte; #GP at ring 1), emulated by the monitor
    a store in `adapted`    hlt: a "pte store" callout (bt_adaptive.py)
"""
from __future__ import annotations

from ringvisor.cpu.core import CpuFault
from ringvisor.cpu.isa.decoder import NeedMore, decode
from ringvisor.monitors.bt import classify as C
from ringvisor.monitors.bt.adaptive import PTE_STORE, handled
from ringvisor.monitors.bt.cache import Draft
from ringvisor.monitors.bt.returns import STACK1, UNDO1

MAX_INSNS = 48
# Prefixes a rewritten LOOP keeps (address size picks CX/ECX); branch hints
# and segment overrides mean nothing to a relative jump.
KEPT_PREFIXES = {0x67}


class Undecodable(Exception):
    """The first instruction of a block cannot be decoded (a #GP for the guest)."""


def translate(eip: int, fetch, frame_of, known, returns=None, adapted=()) -> Draft:
    """Translate the block at guest EIP `eip`.

    fetch(eip) -> up to 15 instruction bytes (raises the guest's #PF for the
    first byte's page); frame_of(eip) -> the guest frame holding that byte;
    known(eip) -> whether the cache already has a translation of eip;
    returns: the ReturnCache whose inline lookup replaces RET (None: a callout);
    adapted: guest EIPs of stores that trapped on traced page tables."""
    d = Draft(eip)
    b = d.block
    g = eip
    page = eip & ~0xFFF
    while True:
        if b.insns and (known(g) or b.insns >= MAX_INSNS or g & ~0xFFF != page):
            d.jump(b"\xE9", g, g)
            break
        try:
            code = fetch(g)
            ins = decode(code, True)
        except (NeedMore, CpuFault):
            if not b.insns:
                raise Undecodable(g) from None
            d.jump(b"\xE9", g, g)               # let the instruction start its own block
            break
        n = ins.length
        last = (g + n - 1) & 0xFFFFFFFF
        if last & ~0xFFF == g & ~0xFFF:
            pieces = ((g, g & 0xFFF, (g & 0xFFF) + n),)
        else:                                    # the instruction straddles two pages
            pieces = ((g, g & 0xFFF, 0x1000), (last, 0, (last & 0xFFF) + 1))
        for at, lo, hi in pieces:
            frame = frame_of(at)
            b.frames.add(frame)
            b.pages[at & ~0xFFF] = frame
            span = b.spans.setdefault(frame, [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
        nxt = (g + n) & 0xFFFFFFFF
        action, kind = C.classify(ins)
        d.at[g] = len(d.code)
        b.insns += 1
        if action == C.COPY and g in adapted and handled(ins):
            d.callout(PTE_STORE, g)
            g = nxt
            continue
        if action == C.COPY:
            d.mark(g)
            d.code += code[:n]
            if ins.row is None or ins.ud:
                break                            # #UD: what follows may not be code
            g = nxt
            continue
        target = (nxt + ins.imm) & 0xFFFFFFFF if action != C.CALLOUT else None
        if action == C.JUMP:
            d.jump(b"\xE9", target, g)
        elif action == C.JCC:
            d.jump(bytes([0x0F, 0x80 | ins.row.cc]), target, g)
            d.jump(b"\xE9", nxt, nxt)
        elif action == C.CALL:
            d.mark(g)
            d.code += b"\x68" + nxt.to_bytes(4, "little")
            d.jump(b"\xE9", target, target)     # the return EIP is pushed: the call is done
            d.returns.append(nxt)
        elif action == C.LOOP:
            d.mark(g)
            d.code += bytes(p for p in ins.prefixes if p in KEPT_PREFIXES) + bytes([code[len(ins.prefixes)], 2])
            d.mark(nxt)
            d.code += b"\xEB\x05"
            d.jump(b"\xE9", target, target)
            d.jump(b"\xE9", nxt, nxt)
        elif returns is not None and inline_lookup(ins, kind):
            _inline_lookup(d, returns, ins, kind, code, g, nxt)
        else:
            d.callout(kind, g)
            if kind not in C.ENDS:
                g = nxt
                continue
        break
    return d


def inline_lookup(ins, kind: str) -> bool:
    """RET, JMP r/m32 and CALL r/m32 that bt_returns.py can do in the cache."""
    if ins.osz != 4 or 0x66 in ins.prefixes:
        return False
    if kind == "ret":
        return ins.row.opcode == "C3"
    if kind not in ("indirect jmp", "indirect call"):
        return False
    if not ins.mem:
        return ins.rm != 4                              # not through ESP itself
    # CALL pushes its return EIP first: an ESP-relative operand would move.
    return kind == "indirect jmp" or 4 not in (ins.base, ins.index)


def _inline_lookup(d: Draft, returns, ins, kind: str, code: bytes, g: int, nxt: int) -> None:
    """A fault on the site's own pushes: the monitor emulates the instruction
    (the sites), so the guest sees only the faults the instruction raises."""
    at = d.mark(g)
    d.sites[at] = (kind, g)
    if kind != "ret":
        p = len(ins.prefixes)
        push_rm = bytes(code[:p]) + bytes([0xFF, (code[p + 1] & 0xC7) | (6 << 3)]) + bytes(code[p + 2:ins.length])
        if kind == "indirect call":
            d.returns.append(nxt)
            d.code += b"\x68" + nxt.to_bytes(4, "little")
            at = d.mark(g)
            d.sites[at] = (kind, g)
            d.fixups[at] = UNDO1                        # the return EIP pushed, the target not yet
        d.code += push_rm
        d.fixups[len(d.code)] = STACK1                   # the target pushed: the jump is as good as done
    at = len(d.code)
    d.code += returns.lookup()
    d.fixups.update(returns.site_fixups(at))
