from ringvisor.cpu import MISSING
from ringvisor.cpu.isa.opcodes import (ENDS_BLOCK, IOPL, LOCK, PRIV, ROWS, SENSITIVE, lookup, rows_with)


def test_every_row_has_semantics():
    assert MISSING == []


def test_lookup_by_bytes_text_and_mnemonic():
    assert lookup(b"\x0f\x01", reg=2).mnemonic == "LGDT"
    assert lookup("0F 01 /2").flags & PRIV
    assert lookup("0F 01 /0").mnemonic == "SGDT" and lookup("0F 01 /0").flags & SENSITIVE
    assert not lookup("0F 01 /0").flags & PRIV
    assert lookup("9D").mnemonic == "POPF" and lookup("9D").sensitive
    assert lookup("FA").flags & IOPL and lookup("FA").flags & ENDS_BLOCK
    assert lookup("01").text == "ADD Ev,Gv" and lookup("01").flags & LOCK
    assert lookup("HLT").privileged
    assert lookup(b"\x0f\xff") is None


def test_policy_lists():
    priv = {r.mnemonic for r in rows_with(PRIV)}
    assert {"HLT", "LGDT", "LIDT", "LLDT", "LTR", "LMSW", "CLTS", "INVLPG", "RDMSR", "WRMSR",
            "MOV"} <= priv
    sens = {r.mnemonic for r in rows_with(SENSITIVE)}
    assert {"POPF", "PUSHF", "SGDT", "SIDT", "SLDT", "STR", "SMSW", "LAR", "LSL", "VERR",
            "VERW"} <= sens
    assert not {"SGDT", "SIDT", "SMSW", "PUSHF", "POPF"} & priv


def test_jcc_expansion():
    names = [r.mnemonic for r in ROWS if r.family == "Jcc" and r.map == 1]
    assert names[:4] == ["JO", "JNO", "JB", "JNB"] and len(names) == 16
