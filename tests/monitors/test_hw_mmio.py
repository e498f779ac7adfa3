"""MMIO under the hw monitor with EPT (monitors/hw/mmio.py): a guest-physical
address above RAM is a device on the machine's MMIO bus; the access is an
EPT violation and the monitor emulates the instruction with the soft CPU's
own interpreter, so every instruction form behaves as natively. Tiny flat
guests (32-bit protected mode, paging off) against a register file on the
bus; each ends with `out %al, $0xf4`, its status the byte under test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitor_rig import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))   # the CPU tests' assembler
from cpu_rig import asm, needs_as  # noqa: E402

pytestmark = needs_as
EXIT = "\nout 0xf4, al\nhlt"
BASE = 0xFE000000       # free on both machines (the pc machine has its I/O APIC at 0xFEC00000)


class Registers:
    """A device of 32-bit little-endian registers, logging each access."""

    def __init__(self):
        self.mem = bytearray(64)
        self.log = []

    def io_read(self, offset, size):
        self.log.append(("r", offset, size))
        return int.from_bytes(self.mem[offset:offset + size], "little")

    def io_write(self, offset, size, value):
        self.log.append(("w", offset, size, value))
        self.mem[offset:offset + size] = value.to_bytes(size, "little")


def run(tmp_path, code: str, technique="hw", paging="ept", init=b""):
    image = tmp_path / "guest.bin"
    image.write_bytes(asm(code + EXIT, org=0x100000))
    dev = Registers()
    dev.mem[:len(init)] = init
    m = machine(image, technique=technique, paging=paging, image_format="flat")
    m.mmio.register(BASE, 64, dev, "test registers")
    try:
        result = m.run()
        stats = m.engine.statistics() if technique == "hw" else {}
    finally:
        m.close()
    return result.status, dev, stats


def test_mov_load_and_store_reach_the_device(tmp_path):
    status, dev, stats = run(tmp_path, f"mov dword ptr [{BASE + 8:#x}], 0x12345678\n"
                                       f"mov eax, [{BASE + 8:#x}]\nshr eax, 8")
    assert status == 0x56
    assert dev.log == [("w", 8, 4, 0x12345678), ("r", 8, 4)]
    assert stats["exits_by_reason"]["ept_violation"] == 2
    assert stats["mmio_exits_by_page"] == {f"{BASE:#010x}": 2}


def test_partial_register_and_zero_extension_as_natively(tmp_path):
    code = (f"mov eax, 0xAABBCCDD\nmov al, [{BASE + 1:#x}]\n"       # AL only
            f"cmp eax, 0xAABBCC22\njne 1f\n"
            f"movzx ebx, word ptr [{BASE:#x}]\n"                      # 0x2211
            f"cmp ebx, 0x2211\njne 1f\nmov eax, 7\njmp 2f\n1: mov eax, 1\n2:")
    status, dev, _ = run(tmp_path, code, init=bytes([0x11, 0x22]))
    assert status == 7


def test_read_modify_write_with_flags(tmp_path):
    # OR to a device register: one read and one write of the bus, ZF as the result says.
    code = (f"mov dword ptr [{BASE + 4:#x}], 0\n"
            f"or dword ptr [{BASE + 4:#x}], 0x30\n"
            f"setnz al\nmov ebx, [{BASE + 4:#x}]\nadd al, bl")
    status, dev, _ = run(tmp_path, code)
    assert status == 0x31
    assert dev.log[1:3] == [("r", 4, 4), ("w", 4, 4, 0x30)]


def test_string_copy_from_the_device(tmp_path):
    code = (f"mov esi, {BASE:#x}\nmov edi, 0x200000\nmov ecx, 4\ncld\nrep movsd\n"
            "mov eax, [0x20000c]")
    status, dev, _ = run(tmp_path, code, init=bytes(range(16)))
    assert status == 12


@pytest.mark.parametrize("technique,paging", [("native", "ept"), ("hw", "ept"), ("hw", "shadow")])
def test_same_device_log_natively_and_under_hw(tmp_path, technique, paging):
    code = (f"mov byte ptr [{BASE + 3:#x}], 0x5a\nxchg eax, [{BASE:#x}]\n"
            f"add word ptr [{BASE + 16:#x}], 3\nmov eax, [{BASE + 16:#x}]")
    status, dev, _ = run(tmp_path, code, technique=technique, paging=paging)
    assert status == 3
    assert dev.log == [("w", 3, 1, 0x5a), ("r", 0, 4), ("w", 0, 4, 0), ("r", 16, 2),
                       ("w", 16, 2, 3), ("r", 16, 4)]

