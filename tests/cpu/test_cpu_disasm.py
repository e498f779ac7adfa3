from ringvisor.cpu.isa.decoder import decode
from ringvisor.cpu.isa.disasm import disassemble, listing


def test_disassembly_from_the_table():
    assert disassemble(bytes.fromhex("01d8")) == "add eax, ebx"
    assert disassemble(bytes.fromhex("8b440e10")) == "mov eax, dword ptr [esi+ecx+0x10]"
    assert disassemble(bytes.fromhex("0f0115" "00100000")) == "lgdt fword ptr [0x1000]"
    assert disassemble(bytes.fromhex("f3a4"), code32=False) == "rep movsb"
    assert disassemble(bytes.fromhex("66b83412")) == "mov ax, 0x1234"
    assert disassemble(bytes.fromhex("75fe"), address=0x100) == "jnz 0x100"
    assert disassemble(bytes.fromhex("0fff")) == "(bad)"
    assert disassemble(bytes.fromhex("0f20c0")) == "mov eax, cr0"
    assert [t for _, _, t in listing(bytes.fromhex("9cfaf4"))] == ["pushfd", "cli", "hlt"]
    assert "add" in repr(decode(bytes.fromhex("01d8"), True))
