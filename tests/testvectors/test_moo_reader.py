import gzip
import struct

import pytest

from ringvisor.testvectors import moo
from ringvisor.testvectors.runner import DATA, flags_mask_for


def chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload


def test_synthetic_file_with_unknown_chunk():
    regs = struct.pack("<H", 0b1 | 1 << 12) + struct.pack("<HH", 0x1234, 0x100)
    init = chunk(b"REGS", regs) + chunk(b"RAM ", struct.pack("<I", 1) + struct.pack("<IB", 0x500, 0xF4))
    test = struct.pack("<I", 7) + chunk(b"NAME", struct.pack("<I", 3) + b"hlt") + \
        chunk(b"BYTS", struct.pack("<I", 1) + b"\xf4") + chunk(b"INIT", init) + \
        chunk(b"XXXX", b"ignored") + chunk(b"FINA", chunk(b"REGS", struct.pack("<HH", 1 << 12, 0x101))) + \
        chunk(b"EXCP", struct.pack("<BI", 13, 0x1234)) + chunk(b"HASH", bytes(range(20)))
    data = chunk(b"MOO ", struct.pack("<BBHI", 1, 0, 0, 1) + b"C286") + chunk(b"TEST", test)
    f = moo.parse(gzip.compress(data))
    assert f.cpu == "C286" and f.version == (1, 0) and f.test_count == 1
    t = f.tests[0]
    assert t.index == 7 and t.name == "hlt" and t.bytes == b"\xf4"
    assert t.init.regs == {"ax": 0x1234, "ip": 0x100}
    assert t.init.ram == [(0x500, 0xF4)]
    assert t.final.regs == {"ip": 0x101}
    assert t.exception == (13, 0x1234)
    assert t.hash == bytes(range(20)).hex()


@pytest.mark.testdata
def test_real_files():
    f = moo.load(DATA / "80286_v1_real_mode" / "CD.MOO.gz")
    assert f.cpu == "C286" and len(f.tests) == 5000 and f.meta["mnemonic"] == "int"
    f = moo.load(DATA / "80386_ex_real_mode_sample" / "00.MOO.gz")
    assert f.cpu == "386E" and len(f.tests) == 500
    assert f.tests[0].hash.startswith("435e8cf5")
    assert f.tests[0].init.ea is not None


def test_flags_mask_lookup():
    meta = {"opcodes": {"F6": {"reg": {"4": {"flags-mask": 65323}}}, "00": {}}}
    assert flags_mask_for(meta, "F6.4") == 65323
    assert flags_mask_for(meta, "00") == 0xFFFF
