"""The stub's commands against the fake target, packet by packet (no socket):
what gdb sends for each of its commands and what an i386 target must answer."""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import pytest

from ringvisor.gdb import registers
from ringvisor.gdb.session import Session
from ringvisor.gdb.target import Target, TargetError


class Recorder:
    """A Channel that keeps what the session sends."""

    def __init__(self):
        self.sent: list[bytes] = []
        self.acking = True

    def send(self, payload, binary=False):
        self.sent.append(payload)

    def stop_acking(self):
        self.acking = False


@pytest.fixture
def session(fake_target):
    s = Session(fake_target, Recorder())
    s.handle(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    return s


def ask(session, packet: bytes) -> bytes:
    session.channel.sent.clear()
    session.handle(packet)
    assert session.channel.sent, f"no reply to {packet!r}"
    return session.channel.sent[-1]


def console(session) -> str:
    """The text of the O packets sent for the last command."""
    return "".join(bytes.fromhex(p[1:].decode()).decode()
                   for p in session.channel.sent if p.startswith(b"O") and p != b"OK")


def hex32(v: int) -> bytes:
    return v.to_bytes(4, "little").hex().encode()


def test_fake_target_is_a_target(fake_target):
    assert isinstance(fake_target, Target)


def test_qsupported_announces_what_the_stub_does(session):
    reply = ask(session, b"qSupported:swbreak+")
    features = reply.split(b";")
    assert b"PacketSize=4000" in features
    for f in (b"qXfer:features:read+", b"swbreak+", b"hwbreak+", b"vContSupported+",
              b"QStartNoAckMode+"):
        assert f in features


def test_target_description_is_i386_with_a_system_feature(session):
    doc = b""
    offset = 0
    while True:       # read it in small pieces, as gdb may
        reply = ask(session, b"qXfer:features:read:target.xml:%x,%x" % (offset, 0x100))
        doc += reply[1:]
        offset += len(reply) - 1
        if reply[:1] == b"l":
            break
        assert reply[:1] == b"m"
    root = ET.fromstring(doc)
    assert root.findtext("architecture") == "i386"
    features = {f.get("name"): [r.get("name") for r in f.findall("reg")] for f in root.findall("feature")}
    core = features["org.gnu.gdb.i386.core"]
    assert core[:16] == ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
                         "cs", "ss", "ds", "es", "fs", "gs"]
    assert core[16:24] == [f"st{i}" for i in range(8)]
    system = features["org.ringvisor.i386.system"]
    for name in ("cr0", "cr2", "cr3", "cr4", "gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit"):
        assert name in system
    regnums = [int(r.get("regnum")) for f in root.findall("feature") for r in f.findall("reg")]
    assert regnums == list(range(len(registers.REGISTERS)))


def test_unknown_xfer_annex_is_an_error(session):
    assert ask(session, b"qXfer:features:read:nope.xml:0,100").startswith(b"E")


def test_g_reads_the_guest_view_in_gdb_order(session, fake_target):
    fake_target.state.ecx = 0x11223344
    fake_target.state.cr3 = 0x5000
    reply = bytes.fromhex(ask(session, b"g").decode())
    assert len(reply) == registers.G_PACKET_SIZE
    assert reply[4:8] == (0x11223344).to_bytes(4, "little")          # ecx is register 1
    assert reply[32:36] == fake_target.state.eip.to_bytes(4, "little")
    cr3 = registers.BY_NAME["cr3"]
    offset = sum(r.size for r in registers.REGISTERS[:cr3])
    assert reply[offset:offset + 4] == (0x5000).to_bytes(4, "little")


def test_G_writes_back_and_keeps_x87_out(session, fake_target):
    raw = bytearray(bytes.fromhex(ask(session, b"g").decode()))
    raw[0:4] = (0xCAFE).to_bytes(4, "little")
    raw[64:74] = b"\x01" * 10                  # st0: no FPU, ignored
    assert ask(session, b"G" + raw.hex().encode()) == b"OK"
    assert fake_target.state.eax == 0xCAFE
    assert ask(session, b"p10") == b"00" * 10


def test_p_and_P_by_register_number(session, fake_target):
    assert ask(session, b"p8") == hex32(fake_target.state.eip)
    assert ask(session, b"P0=" + hex32(0x1234)) == b"OK"
    assert fake_target.state.eax == 0x1234
    idtr_limit = registers.BY_NAME["idtr_limit"]
    assert ask(session, b"P%x=ff07" % idtr_limit) == b"OK"
    assert fake_target.state.idt.limit == 0x7FF
    assert ask(session, b"p%x" % idtr_limit) == b"ff07"


def test_P_refusals(session):
    assert ask(session, b"P10=" + b"00" * 10) == b"E01"       # st0: no FPU
    assert ask(session, b"P0=12") == b"E01"                   # wrong size
    assert ask(session, b"P%x=" % registers.BY_NAME["cs"] + hex32(0x23)) == b"E01"  # target refuses
    assert ask(session, b"p999") == b"E22"


def test_m_reads_linear_memory(session, symbols):
    assert ask(session, b"m%x,5" % symbols["_start"]) == b"b800000000"


def test_m_in_an_unmapped_page_is_E14(session):
    assert ask(session, b"m4000,4") == b"E14"
    assert ask(session, b"mffffff00,4") == b"E14"


def test_m_across_into_a_hole_returns_the_readable_part(session, fake_target):
    fake_target.ram[0x3FFE:0x4000] = b"\xAA\xBB"
    assert ask(session, b"m3ffe,8") == b"aabb"


def test_M_and_X_write_memory(session, fake_target):
    assert ask(session, b"M3000,3:010203") == b"OK"
    assert fake_target.ram[0x3000:0x3003] == b"\x01\x02\x03"
    # X carries binary data with '#', '$', '}' and '*' escaped.
    assert ask(session, b"X3010,4:}\x03}\x04}]}\x0a") == b"OK"
    assert fake_target.ram[0x3010:0x3014] == b"#$}*"
    assert ask(session, b"X3010,0:") == b"OK"                 # gdb's probe for X support
    assert ask(session, b"M4000,1:00") == b"E14"
    assert ask(session, b"M3000,2:01") == b"E22"              # length and data disagree


def test_initial_stop_and_thread_queries(session):
    assert ask(session, b"?").startswith(b"T05")
    assert b"thread:1;" in ask(session, b"?")
    assert ask(session, b"qC") == b"QC1"
    assert ask(session, b"qfThreadInfo") == b"m1"
    assert ask(session, b"qsThreadInfo") == b"l"
    assert ask(session, b"qAttached") == b"1"
    assert ask(session, b"Hg1") == b"OK"
    assert ask(session, b"Hc-1") == b"OK"
    assert ask(session, b"Hg7") == b"E22"
    assert ask(session, b"T1") == b"OK"
    assert ask(session, b"T2") == b"E01"
    assert ask(session, b"vMustReplyEmpty") == b""
    assert ask(session, b"qThreadExtraInfo,1").startswith(b"4350")   # "CP..."


def test_software_breakpoint_then_continue(session, fake_target, symbols):
    loop = symbols["loop"]
    assert ask(session, b"Z0,%x,1" % loop) == b"OK"
    reply = ask(session, b"c")
    assert reply.startswith(b"T05") and b"swbreak:;" in reply and b"thread:1;" in reply
    assert b"08:" + hex32(loop) in reply                       # EIP expedited
    assert fake_target.state.eip == loop and fake_target.state.ecx == 5
    # The breakpoint at the resume address does not stop the guest again at once.
    reply = ask(session, b"c")
    assert fake_target.state.eip == loop and fake_target.state.ecx == 4
    assert ask(session, b"z0,%x,1" % loop) == b"OK"
    assert ask(session, b"c") == b"W2a"                        # hlt with eax = 42
    assert session.ended.how == "exited"


def test_hardware_breakpoint_reports_hwbreak(session, symbols):
    assert ask(session, b"Z1,%x,1" % symbols["bump"]) == b"OK"
    assert b"hwbreak:;" in ask(session, b"vCont;c")


def test_swbreak_is_left_out_for_a_gdb_that_did_not_ask(fake_target, symbols):
    s = Session(fake_target, Recorder())
    s.handle(b"qSupported:multiprocess+")
    assert ask(s, b"Z0,%x,1" % symbols["loop"]) == b"OK"
    reply = ask(s, b"c")
    assert reply.startswith(b"T05") and b"swbreak" not in reply


def test_single_step(session, fake_target, symbols):
    reply = ask(session, b"s")
    assert reply.startswith(b"T05") and fake_target.state.eip == symbols["_start"] + 5
    ask(session, b"vCont;s:1")
    assert fake_target.state.eip == symbols["loop"]
    ask(session, b"s%x" % symbols["bump"])                      # step from a given address
    assert fake_target.state.eip == symbols["bump"] + 1 and fake_target.state.edx == 1


def test_vcont_query_and_actions_for_other_threads(session, fake_target):
    assert ask(session, b"vCont?") == b"vCont;c;C;s;S;t"
    # An action for another thread is not ours; the default (c) follows.
    assert ask(session, b"vCont;s:2;c") == b"W2a"


def test_watchpoints_report_kind_and_address(session, fake_target, symbols):
    counter, limit = symbols["counter"], symbols["limit"]
    assert ask(session, b"Z2,%x,4" % counter) == b"OK"
    reply = ask(session, b"c")
    assert reply.startswith(b"T05") and b"watch:%x;" % counter in reply
    assert fake_target.state.eip == symbols["loop"] + 6         # after the store retired
    assert ask(session, b"z2,%x,4" % counter) == b"OK"
    assert ask(session, b"Z3,%x,4" % limit) == b"OK"
    assert b"rwatch:%x;" % limit in ask(session, b"c")
    assert fake_target.state.eax == 42


def test_access_watchpoint(session, symbols):
    assert ask(session, b"Z4,%x,2" % (symbols["counter"] + 2)) == b"OK"
    assert b"awatch:%x;" % symbols["counter"] in ask(session, b"c")


def test_hardware_slots_run_out_with_E28(session):
    for i in range(4):
        assert ask(session, b"Z2,%x,4" % (0x3000 + 4 * i)) == b"OK"
    assert ask(session, b"Z1,1000,1") == b"E28"
    assert ask(session, b"Z2,3100,4") == b"E28"
    assert ask(session, b"Z0,1000,1") == b"OK"                  # software ones are not limited
    assert ask(session, b"z2,3000,4") == b"OK"
    assert ask(session, b"Z1,1000,1") == b"OK"


def test_unknown_breakpoint_type_is_unsupported(session):
    assert ask(session, b"Z9,1000,1") == b""


def test_ctrl_c_interrupts_a_running_guest(session, fake_target, symbols):
    fake_target.state.eip = symbols["spin"]
    done = threading.Event()
    worker = threading.Thread(target=lambda: (session.handle(b"c"), done.set()), daemon=True)
    worker.start()
    while fake_target.resumes == 0:
        threading.Event().wait(0.001)
    session.interrupt()
    worker.join(10)
    assert done.is_set()
    assert session.channel.sent[-1].startswith(b"T02thread:1;") or \
        session.channel.sent[-1].startswith(b"T02")
    assert fake_target.state.eip == symbols["spin"]


def test_ctrl_c_while_stopped_is_ignored(session, fake_target):
    session.interrupt()
    assert ask(session, b"s").startswith(b"T05")               # a real step, not a stale interrupt


def test_monitor_commands(session, fake_target):
    def rcmd(text):
        assert ask(session, b"qRcmd," + text.encode().hex().encode()) == b"OK"
        return console(session)
    fake_target.state.eax = 0xDEADBEEF
    regs = rcmd("info registers")
    assert "eax=deadbeef" in regs and "CPL 0" in regs and "cr0=00000011" in regs
    assert "protected mode" in regs and "gdtr=" in regs
    assert "guest instructions: 0" in rcmd("info exits")
    assert "traps.general_protection" in rcmd("info traps")
    assert rcmd("technique") == "fake engine, no technique (tests)\n"
    assert "info registers" in rcmd("help")
    assert "unknown monitor command" in rcmd("frobnicate")
    ask(session, b"Z0,100a,1")
    assert "software breakpoint at 0x0000100a" in rcmd("info breakpoints")


def test_detach_removes_breakpoints_and_ends(session, fake_target):
    ask(session, b"Z0,100a,1")
    ask(session, b"Z2,2000,4")
    assert ask(session, b"D") == b"OK"
    assert session.ended.how == "detached"
    assert fake_target.software == frozenset() and fake_target.watchpoints == ()


def test_kill_ends_without_a_reply(session):
    session.channel.sent.clear()
    session.handle(b"k")
    assert session.channel.sent == [] and session.ended.how == "killed"
    session.ended = None
    assert ask(session, b"vKill;1") == b"OK" and session.ended.how == "killed"


def test_crash_is_told_on_the_console_then_X(session, fake_target):
    fake_target.ram[0x3000] = 0x0F                             # not an instruction the fake CPU has
    fake_target.state.eip = 0x3000
    reply = ask(session, b"c")
    assert reply == b"X0b"
    assert "invalid opcode" in console(session)
    assert session.ended.how == "crashed"


def test_exited_guest_answers_every_resume_with_its_status(session):
    assert ask(session, b"c") == b"W2a"
    assert ask(session, b"?") == b"W2a"
    assert ask(session, b"s") == b"W2a"


@pytest.mark.parametrize("packet", [
    b"m", b"m12", b"mzz,4", b"m1000,", b"M1000,2", b"M1000,1:zz", b"X1000,2", b"Z0,1000",
    b"Z2,1000,0", b"p", b"pxyz", b"P", b"P0=", b"vCont;x", b"vCont;", b"qRcmd,zz",
    b"qXfer:features:read:target.xml:zz,10", b"G1", b"c12q", b"H", b"\xff\xfe",
    b"m100000000,4",
])
def test_malformed_packets_get_errors_not_crashes(session, packet):
    reply = ask(session, packet)
    assert reply == b"" or reply.startswith(b"E")
    assert ask(session, b"qC") == b"QC1"                       # and the session goes on


def test_no_ack_mode_switch(session):
    assert ask(session, b"QStartNoAckMode") == b"OK"
    assert session.channel.acking is False


def test_a_refused_resume_address_is_an_error_not_a_crash(session, fake_target):
    def refuse(state):
        raise TargetError("no descriptor tables")
    fake_target.write_registers = refuse
    assert ask(session, b"c1000") == b"E01"
    assert ask(session, b"qC") == b"QC1"


def test_monitor_registers_names_the_mode_and_cpl(session, fake_target):
    def regs():
        ask(session, b"qRcmd," + b"info registers".hex().encode())
        return console(session).splitlines()[0]
    fake_target.state.eflags |= 0x20000
    assert regs().startswith("virtual-8086 mode, CPL 3")
    fake_target.state.cr0 &= ~1
    assert regs().startswith("real mode, CPL 0")
