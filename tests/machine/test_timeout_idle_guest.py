"""--timeout ends a soft-engine guest that idles in HLT between timer ticks
(such a guest never ends a slice by its instruction budget, so the machine
must look at the watchdog when it halts). Regression: Linux stopping at
"no FPU found" sits in `for (;;) hlt;` with the PIT ticking, and ran past
--timeout forever."""
from __future__ import annotations

import struct
import subprocess
import sys


def idle_loop_with_timer() -> bytes:
    """A real-mode boot sector: IRQ 0 handler in the IVT, 8259 initialised
    with only IRQ 0 unmasked, PIT channel 0 at 100 Hz, then sti; hlt; jmp."""
    base = 0x7C00
    code = bytearray()
    code += b"\xfa\x31\xc0\x8e\xd8"                                  # cli; xor ax,ax; mov ds,ax
    handler_fixup = len(code) + 4
    code += b"\xc7\x06\x20\x00\x00\x00"                              # mov word [0x20], handler
    code += b"\xc7\x06\x22\x00\x00\x00"                              # mov word [0x22], 0
    for port, value in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFE),
                        (0x43, 0x34), (0x40, 0x9C), (0x40, 0x2E)):
        code += bytes((0xB0, value, 0xE6, port))                     # mov al,value; out port,al
    code += b"\xfb\xf4\xeb\xfd"                                      # sti; hlt; jmp $-1
    handler = base + len(code)
    code += b"\x50\xb0\x20\xe6\x20\x58\xcf"                          # push ax; EOI; pop ax; iret
    struct.pack_into("<H", code, handler_fixup, handler)
    return bytes(code)


def test_timeout_stops_a_guest_idling_on_timer_ticks(tmp_path):
    image = tmp_path / "idle.bin"
    image.write_bytes(idle_loop_with_timer())
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(image), "--format", "flat16",
                           "--engine", "soft", "--technique", "native", "--timeout", "1"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "did not finish within 1 s" in proc.stderr
    assert "hlt" in proc.stderr or "jmp" in proc.stderr
