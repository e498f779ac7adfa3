"""The stub over TCP: acks and NAKs, no-ack mode, Ctrl-C, garbage, and
clients that vanish (mid-packet, while the guest runs). The stub must never
raise; a vanished client ends the session as 'disconnected' with the guest's
breakpoints removed."""
from __future__ import annotations

import random
import socket

import pytest

from ringvisor.errors import ConfigError
from ringvisor.gdb import GdbServer, parse_address
from ringvisor.gdb.packets import PacketReader, Packet, frame


class Client:
    """A minimal gdb: sends packets, collects the stub's bytes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = PacketReader()
        self.pending: list = []
        self.raw = bytearray()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def event(self):
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the stub closed the connection")
            self.raw += data
            self.pending += self.reader.feed(data)
        return self.pending.pop(0)

    def reply(self, ack=True) -> bytes:
        """The next packet (skipping acks), acknowledged like gdb does."""
        while True:
            ev = self.event()
            if isinstance(ev, Packet):
                if ack:
                    self.send_raw(b"+")
                return ev.payload

    def ask(self, payload: bytes, ack=True) -> bytes:
        self.send_raw(frame(payload))
        return self.reply(ack)

    def close(self):
        self.sock.close()


@pytest.fixture
def client(stub):
    c = Client(stub.port)
    yield c
    c.close()


def test_acks_each_good_packet(client, stub):
    client.send_raw(frame(b"qC"))
    assert client.event().__class__.__name__ == "Ack"
    assert client.reply() == b"QC1"
    client.ask(b"D")
    assert stub.finish().how == "detached"


def test_bad_checksum_is_naked_and_the_session_goes_on(client, stub):
    client.send_raw(b"$qC#00")
    assert client.event().__class__.__name__ == "Nak"
    assert client.ask(b"qC") == b"QC1"
    client.ask(b"D")
    assert stub.finish().how == "detached"


def test_a_nak_gets_the_last_reply_again(client, stub):
    assert client.ask(b"qC") == b"QC1"
    client.send_raw(b"-")
    assert client.reply() == b"QC1"
    client.ask(b"D")
    stub.finish()


def test_no_ack_mode_stops_the_acks(client, stub):
    assert client.ask(b"QStartNoAckMode") == b"OK"
    client.raw.clear()
    assert client.ask(b"qC", ack=False) == b"QC1"
    assert b"+" not in client.raw.replace(frame(b"QC1"), b"")
    client.ask(b"D", ack=False)
    stub.finish()


def test_run_length_encoded_replies_decode_to_the_register_file(client, stub):
    from ringvisor.gdb.registers import G_PACKET_SIZE
    client.raw.clear()
    reply = client.ask(b"g")                       # the reader expands runs, as gdb's does
    assert b"*" in client.raw                      # runs of zeros went out compressed
    assert len(reply) == 2 * G_PACKET_SIZE and len(client.raw) < len(reply)
    client.ask(b"D")
    stub.finish()


def test_ctrl_c_over_the_wire(client, stub, fake_target, symbols):
    assert client.ask(b"P8=" + symbols["spin"].to_bytes(4, "little").hex().encode()) == b"OK"
    client.send_raw(frame(b"c"))
    while fake_target.resumes == 0:                # wait until the guest really runs
        pass
    client.send_raw(b"\x03")
    assert client.reply().startswith(b"T02")
    client.ask(b"D")
    assert stub.finish().how == "detached"


def test_random_garbage_never_stops_the_stub(client, stub):
    rng = random.Random(1234)
    for _ in range(50):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        client.send_raw(noise.replace(b"\x03", b""))
    # Close whatever packet the noise left open, then ask as gdb would.
    client.send_raw(b"#00")
    assert client.ask(b"qC") == b"QC1"
    # Well-framed nonsense gets error or empty replies.
    for _ in range(100):
        body = bytes(rng.choice(b"gGpPmMXcszZHTqQv?:;,=0123456789abcdefxyz") for _ in range(rng.randrange(1, 30)))
        if body[:1] in (b"c", b"s", b"k", b"D") or body.startswith(b"vCont") or body.startswith(b"vKill"):
            continue                                # these run or end the guest: not garbage
        client.ask(body)
    assert client.ask(b"qC") == b"QC1"
    client.ask(b"D")
    assert stub.finish().how == "detached"


def test_client_vanishing_mid_packet(client, stub, fake_target):
    client.ask(b"Z0,100a,1")
    client.send_raw(b"$m1000,4#")                    # the checksum never comes
    client.close()
    end = stub.finish()
    assert end.how == "disconnected"
    assert fake_target.software == frozenset()
    assert any("went away" in line for line in stub.lines)


def test_client_vanishing_while_the_guest_runs(client, stub, fake_target, symbols):
    client.ask(b"P8=" + symbols["spin"].to_bytes(4, "little").hex().encode())
    client.ask(b"Z2,2000,4")
    client.send_raw(frame(b"c"))
    while fake_target.resumes == 0:
        pass
    client.close()
    end = stub.finish()
    assert end.how == "disconnected" and fake_target.watchpoints == ()


def test_kill_ends_the_session(client, stub):
    client.send_raw(frame(b"k"))
    assert stub.finish().how == "killed"


def test_guest_exit_ends_the_session_after_W(client, stub):
    assert client.ask(b"c") == b"W2a"
    end = stub.finish()
    assert end.how == "exited" and end.stop.code == 42


def test_port_in_use_is_one_clear_line(fake_target):
    first = GdbServer(fake_target, "127.0.0.1", 0)
    port = first.listen()[1]
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            GdbServer(fake_target, "127.0.0.1", port).listen()
    finally:
        first.close()


def test_unresolvable_host_is_one_clear_line(fake_target):
    with pytest.raises(ConfigError, match="cannot resolve"):
        GdbServer(fake_target, "no such host.invalid", 1234).listen()


def test_accept_in_background_calls_back(fake_target):
    import threading
    server = GdbServer(fake_target, "127.0.0.1", 0, log=lambda s: None)
    port = server.listen()[1]
    arrived = threading.Event()
    server.accept_in_background(arrived.set)
    c = Client(port)
    assert arrived.wait(10) and server.client_waiting
    c.close()
    assert server.serve().how == "disconnected"
    server.close()


@pytest.mark.parametrize("text, expected", [
    (None, ("127.0.0.1", 1234)), ("", ("127.0.0.1", 1234)), ("1235", ("127.0.0.1", 1235)),
    (":4000", ("127.0.0.1", 4000)), ("0.0.0.0:4000", ("0.0.0.0", 4000)),
    ("localhost:1", ("localhost", 1)), ("[::1]:1234", ("::1", 1234)),
    ("tcp::1234", ("127.0.0.1", 1234)), ("example.org:", ("example.org", 1234)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["0", "65536", "abc", "host:port", "::1:1234", "[::1", "a b:12",
                                  "12.5", "-1", "１２３４"])
def test_parse_address_refuses_bad_input(text):
    with pytest.raises(ConfigError, match="--gdb"):
        parse_address(text)


def test_listening_says_whether_the_network_can_reach_the_stub(fake_target):
    lines = []
    server = GdbServer(fake_target, "127.0.0.1", 0, log=lines.append)
    port = server.listen()[1]
    server.close()
    assert lines == [f"gdb stub listening on 127.0.0.1:{port} (loopback only)"]
    lines.clear()
    server = GdbServer(fake_target, "0.0.0.0", 0, log=lines.append)
    server.listen()
    server.close()
    assert "reachable from the network" in lines[0]
