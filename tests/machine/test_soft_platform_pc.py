"""The soft platform's PC devices seen by a guest through the whole machine:
a boot sector that talks to the i8042, the RTC and port 0x61, then asks for
a reset, which ends `ringvisor run` with status 0."""
from __future__ import annotations

import subprocess
import sys

import pytest


def out(port, value):
    return bytes((0xB0, value, 0xE6, port))               # mov al,value; out port,al


def guest(reset: bytes) -> bytes:
    """i8042 self-test (0xAA -> 0x55), RTC status D (0x80: valid), PIT channel 2
    one-shot through port 0x61 until OUT2 rises, then `reset`. Any wrong answer:
    cli; hlt (the machine reports a crash, exit 4)."""
    code = bytearray(b"\xfa")                               # cli
    code += out(0x64, 0xAA)
    code += b"\xe4\x64\xa8\x01\x74\xfa"                     # wait: in al,0x64; test al,1; jz wait
    code += b"\xe4\x60\x3c\x55"                             # in al,0x60; cmp al,0x55
    fails = [len(code)]
    code += b"\x75\x00"                                     # jne fail
    code += out(0x70, 0x0D) + b"\xe4\x71\x3c\x80"           # RTC register D; cmp al,0x80
    fails.append(len(code))
    code += b"\x75\x00"
    code += out(0x61, 0x01)                                 # GATE2 on, speaker off
    code += out(0x43, 0xB0) + out(0x42, 0x00) + out(0x42, 0x10)   # channel 2, mode 0, 4096 clocks
    code += b"\xe4\x61\xa8\x20\x74\xfa"                     # poll: in al,0x61; test al,0x20; jz poll
    code += reset
    code += b"\xeb\xfe"                                     # jmp $ (the reset never returns)
    fail = len(code)
    code += b"\xfa\xf4"                                     # fail: cli; hlt
    for at in fails:
        code[at + 1] = fail - (at + 2)
    return bytes(code)


@pytest.mark.parametrize("reset,reason", [(out(0x64, 0xFE), "i8042 reset pulse"),
                                          (out(0x92, 0x03), "port 0x92 fast reset")], ids=["i8042", "port92"])
def test_a_guest_reset_request_ends_the_run_with_status_0(tmp_path, reset, reason):
    image = tmp_path / "pc.bin"
    image.write_bytes(guest(reset))
    proc = subprocess.run([sys.executable, "-m", "ringvisor", "run", str(image), "--format", "flat16",
                           "--engine", "soft", "--technique", "native", "--stats", "--timeout", "30"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=90)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = proc.stdout + proc.stderr                       # --stats goes to the terminal's stderr
    assert f"guest reset ({reason})" in report
    for device in ("i8042 keyboard controller", "CMOS RTC", "system control port B"):
        assert device in report
