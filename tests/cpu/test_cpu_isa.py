"""Integer ISA spot checks against values from the SDM (both the interpreter
and compiled blocks)."""
import pytest

from ringvisor.exits import Fault
from cpu_rig import CODE, Rig, needs_as

pytestmark = needs_as


@pytest.fixture(params=[False, True], ids=["interp", "blocks"])
def run(request):
    def go(src, **regs):
        rig = Rig()
        rig.protected(src + "\nint3", **regs)
        rig.cpu.use_blocks = request.param
        rig.intercept(*range(32))
        e = rig.run()
        return rig, e
    return go


def R(rig, name):
    return rig.cpu.r[["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"].index(name)]


def test_bcd(run):
    rig, e = run("mov al, 0x79\nadd al, 0x35\ndaa\nmov bl, al\nsetc bh\n"
                 "mov al, 0x3f\naam\nmov ecx, eax\nmov ax, 0x0607\naad\nmov edx, eax\n"
                 "mov ax, 0x000f\naaa\nmov esi, eax\nmov al, 0x10\nsub al, 0x01\ndas\nmov edi, eax")
    assert e.vector == 3
    assert R(rig, "ebx") & 0xFFFF == 0x0114
    assert R(rig, "ecx") & 0xFFFF == 0x0603 and R(rig, "edx") & 0xFFFF == 0x0043
    assert R(rig, "esi") & 0xFFFF == 0x0105 and R(rig, "edi") & 0xFF == 0x09


def test_divide_errors_are_faults(run):
    rig, e = run("xor ecx, ecx\ndiv ecx")
    assert e.vector == 0 and rig.cpu.eip == CODE + 2
    rig, e = run("mov edx, 0xffffffff\nmov eax, 0x80000000\nmov ecx, -1\nidiv ecx")
    assert e.vector == 0
    rig, e = run("mov eax, -7\ncdq\nmov ecx, 2\nidiv ecx")
    assert R(rig, "eax") == 0xFFFFFFFD and R(rig, "edx") == 0xFFFFFFFF


def test_multiply(run):
    rig, e = run("mov eax, 0x80000000\nmov ecx, 4\nmul ecx\nsetc bl\n"
                 "imul esi, ecx, -3\nmov edi, 5\nimul edi, ecx")
    assert R(rig, "edx") == 2 and R(rig, "eax") == 0 and R(rig, "ebx") & 0xFF == 1
    assert R(rig, "esi") == (-12) & 0xFFFFFFFF and R(rig, "edi") == 20


def test_bits(run):
    rig, e = run("mov eax, 0x00f0\nbsf ecx, eax\nbsr edx, eax\nmov ebx, 0x12345678\nbswap ebx\n"
                 "mov esi, 0x80000001\nmov edi, 0xffffffff\nshld esi, edi, 4\n"
                 "mov dword ptr [0x6000], 0\nmov eax, -1\nbts [0x6004], eax\nsetc al")
    assert R(rig, "ecx") == 4 and R(rig, "edx") == 7 and R(rig, "ebx") == 0x78563412
    assert R(rig, "esi") == 0x0000001F
    assert rig.u32(0x6000) == 0x80000000 and R(rig, "eax") & 0xFF == 0     # bit -1 of [0x6004]


def test_atomics(run):
    rig, e = run("mov dword ptr [0x6000], 5\nmov eax, 5\nmov ecx, 9\nlock cmpxchg [0x6000], ecx\n"
                 "setz bl\nmov edx, 3\nlock xadd [0x6000], edx\n"
                 "mov dword ptr [0x6010], 1\nmov dword ptr [0x6014], 2\n"
                 "mov eax, 1\nmov edx, 2\nmov ebx, 0xaa\nmov ecx, 0xbb\ncmpxchg8b [0x6010]")
    assert rig.u32(0x6000) == 12 and R(rig, "edx") == 2
    assert rig.u32(0x6010) == 0xAA and rig.u32(0x6014) == 0xBB


def test_strings(run):
    rig, e = run("mov edi, 0x6000\nmov eax, 0x41414141\nmov ecx, 4\ncld\nrep stosd\n"
                 "mov byte ptr [0x600a], 0\nmov edi, 0x6000\nxor al, al\nmov ecx, -1\nrepne scasb\n"
                 "not ecx\ndec ecx\nmov ebx, ecx\n"
                 "mov esi, 0x6000\nmov edi, 0x6100\nmov ecx, 3\nrep movsb")
    assert R(rig, "ebx") == 10 and rig.mem.read(0x6100, 4) == b"AAA\0"
    assert R(rig, "ecx") == 0 and R(rig, "esi") == 0x6003


def test_enter_leave_pusha(run):
    rig, e = run("mov ebp, 0x1234\nenter 16, 2\nmov ebx, ebp\nmov ecx, esp\nleave\n"
                 "mov eax, 1\nmov edx, 3\npushad\nxor eax, eax\nxor edx, edx\npopad")
    s0 = 0x80000
    assert R(rig, "ebx") == s0 - 4 and R(rig, "ecx") == s0 - 12 - 16
    assert R(rig, "ebp") == 0x1234 and R(rig, "esp") == s0
    assert R(rig, "eax") == 1 and R(rig, "edx") == 3


def test_bound_and_into(run):
    rig, e = run("mov dword ptr [0x6000], 0\nmov dword ptr [0x6004], 10\nmov eax, 11\nbound eax, [0x6000]")
    assert isinstance(e, Fault) and e.vector == 5
    rig, e = run("mov al, 0x7f\nadd al, 1\ninto\nnop")
    assert e.vector == 4 and rig.cpu.eip == CODE + 5      # trap: after INTO


def test_cpuid_and_flags(run):
    rig, e = run("xor eax, eax\ncpuid\npushfd\npop esi\nor esi, 0x200000\npush esi\npopfd\npushfd\npop edi")
    assert rig.mem.read(0, 0) == b""
    assert (R(rig, "ebx"), R(rig, "edx"), R(rig, "ecx")) == (0x756E6547, 0x49656E69, 0x6C65746E)
    assert R(rig, "edi") & 0x200000                        # ID flag toggles: CPUID exists


def test_shifts_and_rotates(run):
    rig, e = run("mov al, 0x81\nrol al, 1\nsetc bl\nseto bh\nmov ecx, 0x80000000\nsar ecx, 31\n"
                 "mov dl, 1\nstc\nrcr dl, 1\nsetc dh\nmov esi, 1\nshl esi, 32")
    assert R(rig, "eax") & 0xFF == 0x03 and R(rig, "ebx") & 0xFFFF == 0x0101
    assert R(rig, "ecx") == 0xFFFFFFFF and R(rig, "edx") & 0xFFFF == 0x0180
    assert R(rig, "esi") == 1                               # count masked to 0


def test_sixteen_bit_forms(run):
    rig, e = run("mov eax, 0x12345678\nadd ax, 0x8000\nmovsx ecx, ax\nmovzx edx, ah\n"
                 "xchg bx, ax\ncwde\nlea si, [ebx+ebx]")
    assert R(rig, "ecx") == 0xFFFFD678 and R(rig, "edx") == 0xD6


def test_aas_borrows_into_ah(run):
    # AL=0x02 (< 6) with AF: AX - 6 borrows from AH, then AH - 1 (SDM AAS, IA-32 form).
    rig2, _ = run("push 0x10\npopfd\nmov ax, 0x0502\naas")     # AF=1
    assert R(rig2, "eax") & 0xFFFF == 0x030C
