"""Returns and indirect jumps inside the translation cache, without a callout.

A translated CALL pushes the *guest* return EIP, so a RET's target is a
guest EIP that must be looked up, and so is the target of `jmp r/m32` and
`call r/m32`. Doing that in the monitor costs a trap per kernel function
return (15,606 in `compute`); here the lookup is code in the cache,
flag-free (LEA + JECXZ compare, no CMP), with the guest's ECX saved on its
own stack below the guest target:

    RET site:   push ecx
                (lookup)
    JMP r/m:    push r/m32                        ; the target
                push ecx
                (lookup)
    CALL r/m:   push imm32 <guest return EIP>
                push r/m32                        ; the target
                push ecx
                (lookup)
    lookup:     movzx ecx, byte [esp+4]          ; low byte of the guest target
                lea ecx, [ecx*8 + buckets]
                jmp ecx                           ; bucket: jmp rel32 -> first entry, or miss
    entry R:    mov ecx, [esp+4]
                lea ecx, [ecx - R]
                jecxz hit
                jmp <next entry or miss>
    hit:        pop ecx
                lea esp, [esp+4]
                jmp <translation of R>
    miss:       pop ecx
                hlt                               ; callout "lookup miss": adds an entry for R

Traps in the middle of it map to a guest state exactly: at a site's first
instruction the guest is at its RET/JMP/CALL; with the target on the stack
(STACK1) or ECX and the target (STACK2) the monitor completes the transfer
(restores ECX, pops the target) and the guest is at the target, as if the
trap came right after the instruction; between a CALL's two pushes (UNDO1)
it drops the pushed return EIP and the guest is at its CALL. A fault on a
site's own pushes (the stack below ESP unmapped, or the r/m operand) falls
back to emulating the instruction, so the guest never sees a fault the
instruction would not raise. RET imm16, 16-bit forms and a CALL through an
ESP-relative operand stay callouts. Entries are thrown away whenever a
block is invalidated or the cache flushed; the pool starts over when full.
"""
from __future__ import annotations

STACK2, STACK1, UNDO1 = "stack2", "stack1", "undo1"
LOOKUP = b"\x0F\xB6\x4C\x24\x04" + b"\x8D\x0C\xCD"          # movzx ecx,byte [esp+4]; lea ecx,[ecx*8+..]
BUCKETS = 256
BUCKET_BYTES = 8
ENTRY_BYTES = 32
ENTRIES = 2048
AREA = BUCKETS * BUCKET_BYTES + 16 + ENTRIES * ENTRY_BYTES      # buckets, miss code, entries
# Entry layout: offsets of its instructions and what a trap there means.
ENTRY_FIXUPS = {0: STACK2, 4: STACK2, 10: STACK2, 12: STACK2, 17: STACK2, 18: STACK1}
ENTRY_TARGET_JMP = 22


def rel32(frm_next: int, to: int) -> bytes:
    return ((to - frm_next) & 0xFFFFFFFF).to_bytes(4, "little")


class ReturnCache:
    def __init__(self, region, base_off: int):
        """The area at region offset `base_off` (linear region.linear(base_off))."""
        self.region = region
        self.phys = region.physical(base_off)
        self.base = region.linear(base_off)
        self.buckets = self.base
        self.miss = self.base + BUCKETS * BUCKET_BYTES
        self.miss_hlt = self.miss + 1
        self.pool = self.miss + 16
        self.targets: dict[int, int] = {}          # entry address -> guest return EIP
        self.resets = 0
        self.region.write_bytes(self._p(self.miss), b"\x59\xF4")     # pop ecx; hlt
        self.reset()

    def _p(self, lin: int) -> int:
        return self.phys + (lin - self.base)

    def reset(self) -> None:
        self.next = 0
        self.targets.clear()
        self.keys: set[int] = set()
        code = bytearray()
        for i in range(BUCKETS):
            at = self.buckets + i * BUCKET_BYTES
            code += b"\xE9" + rel32(at + 5, self.miss) + b"\x90\x90\x90"
        self.region.write_bytes(self._p(self.buckets), bytes(code))
        self.resets += 1

    def lookup(self) -> bytes:
        """push ecx, then the lookup of the guest target at [esp+4]."""
        return b"\x51" + LOOKUP + self.buckets.to_bytes(4, "little") + b"\xFF\xE1"

    def site(self, at: int = 0) -> bytes:
        """The bytes replacing a RET (at cache offset `at`: unused, the code is position-free)."""
        return self.lookup()

    @staticmethod
    def site_fixups(at: int) -> dict[int, str]:
        """Where a trap inside `lookup()` placed at `at` needs completing."""
        return {at + 1: STACK2, at + 6: STACK2, at + 13: STACK2}

    def add(self, ret_eip: int, tc: int) -> None:
        """An entry: guest target `ret_eip` continues at cache address `tc`."""
        if ret_eip in self.keys:
            return
        if self.next >= ENTRIES:
            self.reset()
        self.keys.add(ret_eip)
        at = self.pool + self.next * ENTRY_BYTES
        self.next += 1
        bucket = self.buckets + (ret_eip & 0xFF) * BUCKET_BYTES
        old_next = (int.from_bytes(self.region.mm[self._p(bucket) + 1:self._p(bucket) + 5], "little")
                    + bucket + 5) & 0xFFFFFFFF
        code = (b"\x8B\x4C\x24\x04" + b"\x8D\x89" + ((-ret_eip) & 0xFFFFFFFF).to_bytes(4, "little")
                + b"\xE3\x05" + b"\xE9" + rel32(at + 17, old_next)
                + b"\x59" + b"\x8D\x64\x24\x04" + b"\xE9" + rel32(at + 27, tc))
        self.region.write_bytes(self._p(at), code.ljust(ENTRY_BYTES, b"\xCC"))
        self.region.write_bytes(self._p(bucket) + 1, rel32(bucket + 5, at))
        self.targets[at] = ret_eip

    # --- traps inside the machinery --------------------------------------------------------------
    def contains(self, tc: int) -> bool:
        return self.base <= tc < self.base + AREA

    def fixup(self, tc: int) -> tuple[str | None, int | None]:
        """(fixup, guest EIP) for a trap at `tc` in this area: STACK2/STACK1
        with no EIP (the return EIP is on the stack), or no fixup and the
        entry's guest return EIP (its final jmp)."""
        if tc < self.miss:
            return STACK2, None                              # a bucket's jmp
        if tc == self.miss:
            return STACK2, None
        if tc == self.miss_hlt:
            return STACK1, None
        off = (tc - self.pool) % ENTRY_BYTES
        entry = tc - off
        if off == ENTRY_TARGET_JMP:
            return None, self.targets.get(entry)
        kind = ENTRY_FIXUPS.get(off)
        return (kind, None) if kind else (None, None)
