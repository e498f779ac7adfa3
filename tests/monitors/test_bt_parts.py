"""The binary translator's pieces without a guest: what is copied and what
rewritten, the cache's maps back to guest EIPs, chaining and unchaining,
and the return cache's code."""
from __future__ import annotations

import pytest

from ringvisor.cpu.isa.decoder import NeedMore, decode
from ringvisor.machine.memory import GuestMemory
from ringvisor.monitors.bt.cache import CHAIN, HLT, TranslationCache
from ringvisor.monitors.bt.returns import STACK1, STACK2, UNDO1, ReturnCache
from ringvisor.monitors.bt.translate import MAX_INSNS, Undecodable, translate
from ringvisor.monitors.common import region as R

BASE = 0x100000


def draft(code: bytes, eip: int = BASE, known=()):
    """Translate `code` placed at guest EIP `eip` (frames: the EIP's page)."""
    def fetch(g):
        off = g - eip
        if not 0 <= off < len(code):
            raise NeedMore()                    # past the test's code: the block ends there
        return code[off:off + 15]
    return translate(eip, fetch, lambda g: g & ~0xFFF, lambda g: g in known)


def insns(code: bytes) -> list[str]:
    out, i = [], 0
    while i < len(code):
        ins = decode(code[i:i + 15], True)
        out.append(repr(ins)[7:-1])
        i += ins.length
    return out


def test_innocuous_instructions_are_copied_byte_for_byte():
    body = bytes.fromhex("8b03" "83c001" "8ed8" "8cd8" "0fa2")   # mov eax,[ebx]; add; mov ds; mov eax,ds; cpuid
    d = draft(body + b"\xc3")
    assert bytes(d.code[:len(body)]) == body
    assert d.at == {BASE: 0, BASE + 2: 2, BASE + 5: 5, BASE + 7: 7, BASE + 9: 9, BASE + 11: 11}
    assert d.sites == {11: ("ret", BASE + 11)}          # no return cache given: RET is a callout


@pytest.mark.parametrize("code, kind", [
    ("fa", "cli"), ("fb", "sti"), ("9c", "pushf"), ("9d", "popf"), ("f4", "hlt"),
    ("0f0100", "sgdt"), ("0f0108", "sidt"), ("0f00c8", "str"), ("0f00c0", "sldt"),
    ("0f01e0", "smsw"), ("0f02c3", "lar"), ("0f03c3", "lsl"), ("0f00e3", "verr"), ("0f00eb", "verw"),
    ("8cc8", "mov from cs/ss"), ("8cd0", "mov from cs/ss"), ("0e", "push cs"), ("16", "push ss"),
    ("8ed0", "mov ss"), ("ec", "io"), ("e6f5", "io"), ("0f22d8", "privileged"),
    ("0f0110", "privileged"), ("cd80", "int"), ("cf", "iret"), ("cb", "retf"), ("c20400", "ret"),
    ("ffe0", "indirect jmp"), ("ffd0", "indirect call"), ("ea000000000800", "far jmp"),
    ("2e8b03", "step"), ("2ed7", "step"), ("66e90000", "step"),
])
def test_sensitive_and_privileged_instructions_become_callouts(code, kind):
    d = draft(bytes.fromhex(code) + b"\x90\xc3")
    assert d.sites[0] == (kind, BASE)
    assert d.code[0] == HLT
    assert d.back[0] == BASE


def test_a_callout_that_does_not_transfer_control_continues_the_block():
    d = draft(bytes.fromhex("fa" "40" "fb"))          # cli; inc eax; sti
    assert d.code[:3] == bytes([HLT, 0x40, HLT])
    assert d.at == {BASE: 0, BASE + 1: 1, BASE + 2: 2}


def test_jcc_becomes_a_rel32_pair_and_the_fallthrough_jump_stands_for_the_next_eip():
    d = draft(bytes.fromhex("85c0" "7405"))           # test eax,eax; jz +5
    assert bytes(d.code[:13]) == bytes.fromhex("85c0" "0f8400000000" "e900000000")   # rel32s: resolved at install
    jcc = BASE + 2
    assert d.links == [(2 + 2, jcc + 2 + 5), (2 + 6 + 1, jcc + 2)]
    assert d.back[2] == jcc and d.back[8] == jcc + 2       # after a not-taken jz: the next guest EIP


def test_call_pushes_the_guest_return_eip():
    d = draft(bytes.fromhex("e810000000"))            # call +0x10
    assert d.code[:5] == b"\x68" + (BASE + 5).to_bytes(4, "little")
    assert d.code[5] == 0xE9 and d.links == [(6, BASE + 5 + 0x10)]
    assert d.back[0] == BASE and d.back[5] == BASE + 0x15  # after the push the call is done


def test_loop_keeps_its_counter_semantics_through_two_jumps():
    d = draft(bytes.fromhex("e2fe"))                  # loop $ (to itself)
    assert bytes(d.code) == bytes.fromhex("e202" "eb05" "e900000000" "e900000000")
    assert [t for _, t in d.links] == [BASE, BASE + 2]


def test_blocks_end_at_the_page_the_limit_and_known_code():
    d = draft(b"\x90" * 0x20, eip=BASE + 0xFF8)
    assert d.block.insns == 8 and d.links == [(9, BASE + 0x1000)]
    d = draft(b"\x90" * 100)
    assert d.block.insns == MAX_INSNS
    d = draft(b"\x90" * 10, known={BASE + 3})
    assert d.block.insns == 3 and d.links == [(4, BASE + 3)]


def cache():
    mem = GuestMemory(16 << 20)
    region = R.MonitorRegion(mem, mem.size, R.TC_BYTES)
    unused = []
    return TranslationCache(region, R.TC + 0x20000, 0x10000, on_unused=unused.append), region, unused


def rel_target(region, tc, field):
    rel = region.read_u32(tc.phys + field - tc.base)
    return (field + 4 + rel) & 0xFFFFFFFF


def test_the_cache_maps_every_address_back_and_chains_then_unchains():
    tc, region, unused = cache()
    a = tc.install(draft(bytes.fromhex("40" "eb10"), eip=BASE))          # inc eax; jmp +0x10
    target = BASE + 3 + 0x10
    (stub, site), = [(t, s) for t, s in tc.sites.items() if s.kind == CHAIN]
    assert site.guest == target and tc.guest_eip(stub) == target
    assert rel_target(region, tc, site.field) == stub                   # not translated yet: the stub
    assert tc.guest_eip(a.start) == BASE and tc.guest_eip(a.start + 1) == BASE + 1
    b = tc.install(translate(target, lambda g: (b"\x90" * 0x40)[:15], lambda g: 0x200000,
                             lambda g: g in tc.at))
    # Translating the target chains the jump that was waiting on its stub.
    assert rel_target(region, tc, site.field) == tc.at[target] == b.start
    assert tc.late_links == 1 and b.incoming == [(a, site.field, stub)]
    # A later block jumping to the same target is chained at once.
    src = BASE + 0x40
    c = tc.install(draft(b"\xe9" + ((target - (src + 5)) & 0xFFFFFFFF).to_bytes(4, "little"), eip=src))
    assert rel_target(region, tc, c.start + 1) == b.start
    assert len(b.incoming) == 2
    assert tc.invalidate_frame(0x200000) == 1
    assert rel_target(region, tc, site.field) == stub                   # unchained, not flushed
    assert target not in tc.at and b.start not in tc.back
    assert rel_target(region, tc, c.start + 1) == c.end - 1             # c's own exit stub
    assert unused == [0x200000] and a.alive and c.alive


def test_a_write_to_one_frame_keeps_the_other_blocks():
    tc, region, unused = cache()
    tc.install(draft(b"\x40\xc3", eip=BASE))
    tc.install(translate(0x300000, lambda g: b"\x48\xc3", lambda g: 0x300000, lambda g: False))
    assert tc.invalidate_frame(BASE) == 1
    assert BASE not in tc.at and 0x300000 in tc.at and tc.blocks == 1


def test_the_return_cache_code_and_its_trap_fixups():
    mem = GuestMemory(16 << 20)
    region = R.MonitorRegion(mem, mem.size, R.TC_BYTES)
    rc = ReturnCache(region, R.TC)
    site = rc.site(0)
    assert site == bytes.fromhex("51" "0fb64c2404" "8d0ccd") + rc.buckets.to_bytes(4, "little") + b"\xff\xe1"
    assert insns(site)[:2] + insns(site)[3:] == ["push ecx", "movzx ecx, byte ptr [esp+0x4]", "jmp ecx"]
    assert rc.site_fixups(100) == {101: STACK2, 106: STACK2, 113: STACK2}
    rc.add(0x1234AB, 0xF0050000)
    entry = rc.pool
    code = bytes(region.mm[rc.phys + entry - rc.base:][:27])
    listing = insns(code)
    assert listing[:3] == ["mov ecx, dword ptr [esp+0x4]", "lea ecx, dword ptr [ecx-0x1234ab]", "jcxz 0x7"]   # to +5: the hit
    assert listing[4:6] == ["pop ecx", "lea esp, dword ptr [esp+0x4]"]
    assert rel_target_at(region, rc, entry + 13) == rc.miss                 # next: the bucket was empty
    assert rel_target_at(region, rc, entry + 23) == 0xF0050000              # hit: on to the translation
    assert rc.fixup(entry) == (STACK2, None) and rc.fixup(entry + 18) == (STACK1, None)
    assert rc.fixup(entry + 22) == (None, 0x1234AB)                      # the jump on to the translation
    assert rc.fixup(rc.miss_hlt) == (STACK1, None)
    bucket = rc.buckets + 0xAB * 8                                       # chosen by the low byte
    assert rel_target_at(region, rc, bucket + 1) == entry


def rel_target_at(region, rc, field):
    rel = int.from_bytes(region.mm[rc.phys + field - rc.base:][:4], "little")
    return (field + 4 + rel) & 0xFFFFFFFF


class Lookup:
    """A stand-in for the ReturnCache the translator asks for lookup code."""
    buckets = 0xF0030000

    def lookup(self):
        return ReturnCache.lookup(self)

    @staticmethod
    def site_fixups(at):
        return ReturnCache.site_fixups(at)


def draft_with_lookups(code: bytes):
    return translate(BASE, lambda g: code[g - BASE:g - BASE + 15], lambda g: BASE, lambda g: False, Lookup())


def test_indirect_jmp_pushes_its_target_then_looks_it_up():
    d = draft_with_lookups(bytes.fromhex("ff2485" "00201000"))     # jmp [eax*4+0x102000]
    push_rm = bytes.fromhex("ff3485" "00201000")                   # push [eax*4+0x102000]
    assert bytes(d.code[:7]) == push_rm and d.code[7] == 0x51      # then push ecx
    assert d.sites[0] == ("indirect jmp", BASE)                    # a fault on the push: emulated
    assert d.fixups == {7: STACK1, 8: STACK2, 13: STACK2, 20: STACK2}


def test_indirect_call_pushes_the_guest_return_eip_first():
    d = draft_with_lookups(bytes.fromhex("ffd3"))                   # call ebx
    assert bytes(d.code[:8]) == b"\x68" + (BASE + 2).to_bytes(4, "little") + bytes.fromhex("ff f3 51")
    assert d.sites[0] == d.sites[5] == ("indirect call", BASE)
    assert d.fixups[5] == UNDO1 and d.fixups[7] == STACK1           # between the pushes: undo the first
    # Through ESP the operand would move under the pushed return EIP: a callout.
    assert draft_with_lookups(bytes.fromhex("ff542404")).sites[0] == ("indirect call", BASE)
    assert draft_with_lookups(bytes.fromhex("ff542404")).code[0] == HLT


def test_a_write_drops_only_the_blocks_translated_from_the_bytes_it_changed():
    tc, region, unused = cache()
    a = tc.install(draft(b"\x40\x40\xc3", eip=BASE + 0x10))        # bytes 0x10..0x12 of the frame
    b = tc.install(draft(b"\x48\xc3", eip=BASE + 0x20))            # bytes 0x20..0x21
    assert a.spans == {BASE: [0x10, 0x13]} and b.spans == {BASE: [0x20, 0x22]}
    assert tc.invalidate_frame(BASE, 0x13, 0x20) == 0                # data between them
    assert tc.invalidate_frame(BASE, 0x12, 0x14) == 1 and not a.alive and b.alive
    assert unused == []                                              # b still comes from the frame
    assert tc.invalidate_frame(BASE, 0x21, 0x22) == 1 and unused == [BASE]


def test_an_instruction_across_a_page_boundary_belongs_to_both_frames():
    d = draft(bytes.fromhex("b878563412"), eip=BASE + 0xFFE)          # mov eax, imm32 over two pages
    assert d.block.spans == {BASE: [0xFFE, 0x1000], BASE + 0x1000: [0, 3]}


def test_adapted_stores_become_pte_store_callouts_and_other_forms_stay_copied():
    # mov [ebx], eax; mov dword [ebx], 7; xchg [ebx], eax; or dword [ebx], 1; rep stosd
    body = bytes.fromhex("8903" "c70307000000" "8703" "830b01" "f3ab")
    at = [BASE, BASE + 2, BASE + 8, BASE + 10, BASE + 13]
    d = translate(BASE, lambda g: (body + b"\xc3")[g - BASE:g - BASE + 15], lambda g: g & ~0xFFF,
                  lambda g: False, adapted=set(at))
    assert d.sites[0] == ("pte store", BASE) and d.sites[1] == ("pte store", BASE + 2)
    assert bytes(d.code[2:2 + len(body) - 8]) == body[8:]         # XCHG, OR, REP STOS copied
