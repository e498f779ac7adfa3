"""The stub's TCP side: listen (loopback by default), accept gdb, and run a
`Session` over the connection.

Threads: `serve()` runs in the caller's thread (the vCPU thread: the target's
`resume` runs there); a reader thread owns the socket's receiving side, acks
or NAKs packets, retransmits on NAK, and turns Ctrl-C or a vanished client
into `Target.interrupt()`. Nothing a client sends can raise out of `serve()`:
a broken connection ends the session as 'disconnected' and the guest runs on.
"""
from __future__ import annotations

import queue
import socket
import sys
import threading
from typing import Callable

from ringvisor.errors import ConfigError
from ringvisor.gdb.packets import (Ack, BadPacket, Interrupt, Nak, Packet, PacketReader,
                                   frame, rle_encode)
from ringvisor.gdb.session import Session, SessionEnd
from ringvisor.gdb.stops import describe
from ringvisor.gdb.target import Target

_DISCONNECTED = object()


def _stderr_line(text: str) -> None:
    print(f"ringvisor: {text}", file=sys.stderr, flush=True)


class SocketChannel:
    """Framing, acks and retransmission over one connected socket."""

    def __init__(self, sock: socket.socket, debug: Callable[[str], None]):
        self.sock = sock
        self.debug = debug
        self.acking = True
        self.broken = False
        self._last = b""
        self._send_lock = threading.Lock()
        self.bad_packets = 0

    def send(self, payload: bytes, binary: bool = False) -> None:
        packet = frame(payload if binary else rle_encode(payload))
        with self._send_lock:
            self._last = packet
            self._write(packet)

    def stop_acking(self) -> None:
        # Set before the OK goes out: gdb's next packet already expects no ack.
        self.acking = False

    def resend(self) -> None:
        with self._send_lock:
            if self._last:
                self._write(self._last)

    def _ack(self, byte: bytes) -> None:
        if self.acking:
            with self._send_lock:
                self._write(byte)

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.broken = True
            self.debug(f"gdb: send failed: {e}")

    def read_loop(self, session: Session, events: queue.Queue) -> None:
        """The reader thread: bytes -> events, until the connection ends."""
        reader = PacketReader()
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                for ev in reader.feed(data):
                    if isinstance(ev, Packet):
                        self._ack(b"+")
                        events.put(ev)
                    elif isinstance(ev, BadPacket):
                        self.bad_packets += 1
                        self.debug(f"gdb: {ev.reason}")
                        self._ack(b"-")
                    elif isinstance(ev, Nak):
                        self.resend()
                    elif isinstance(ev, Interrupt):
                        session.interrupt()
                    elif isinstance(ev, Ack):
                        pass
        finally:
            session.client_gone()
            events.put(_DISCONNECTED)


class GdbServer:
    """A GDB remote stub for one target. `listen()`, then `accept()` (or
    `accept_in_background`), then `serve()` for each session."""

    def __init__(self, target: Target, host: str = "127.0.0.1", port: int = 1234,
                 log: Callable[[str], None] = _stderr_line,
                 debug: Callable[[str], None] = lambda s: None):
        self.target = target
        self.host, self.port = host, port
        self.log, self.debug = log, debug
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._client_ready = threading.Event()

    # -- listening ---------------------------------------------------------------
    def listen(self) -> tuple[str, int]:
        """Bind and listen; the address really bound (port 0 picks a free one).
        A host that does not resolve or a port in use is a ConfigError."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ConfigError(f"--gdb: cannot resolve {self.host!r}: {e.strerror}") from None
        family, _, _, _, sockaddr = infos[0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(sockaddr)
            listener.listen(1)
        except OSError as e:
            listener.close()
            raise ConfigError(f"--gdb: cannot listen on {self.host}:{self.port}: "
                              f"{e.strerror or e}") from None
        self._listener = listener
        self.port = listener.getsockname()[1]
        where = "loopback only" if _is_loopback(sockaddr[0]) else "reachable from the network"
        self.log(f"gdb stub listening on {self.host}:{self.port} ({where})")
        return self.host, self.port

    def accept(self, timeout: float | None = None) -> bool:
        """Wait for gdb to connect; False if `timeout` passed first."""
        if self._client_ready.is_set():
            return True
        assert self._listener is not None, "listen() first"
        self._listener.settimeout(timeout)
        try:
            client, peer = self._listener.accept()
        except (socket.timeout, OSError):
            return False
        self._take(client, peer)
        return True

    def accept_in_background(self, on_connect: Callable[[], None]) -> None:
        """Accept in a daemon thread and call `on_connect` (typically
        `target.interrupt`) when gdb arrives, so that the running guest comes
        back to the vCPU thread, which then calls `serve()`. As QEMU's `-s`."""
        def wait():
            if self.accept():
                on_connect()
        threading.Thread(target=wait, name="gdb-accept", daemon=True).start()

    @property
    def client_waiting(self) -> bool:
        return self._client_ready.is_set()

    def _take(self, client: socket.socket, peer) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        self._client_ready.set()
        self.log(f"gdb connected from {peer[0]}:{peer[1]}")

    # -- one session -------------------------------------------------------------
    def serve(self) -> SessionEnd:
        """Run one session on the connected client (accepting one first if
        needed) until gdb detaches, kills, the guest ends, or the client goes."""
        if not self._client_ready.is_set() and not self.accept():
            return SessionEnd("disconnected")     # the listener was closed meanwhile
        client = self._client
        channel = SocketChannel(client, self.debug)
        session = Session(self.target, channel, self.debug)
        events: queue.Queue = queue.Queue()
        reader = threading.Thread(target=channel.read_loop, args=(session, events),
                                  name="gdb-reader", daemon=True)
        reader.start()
        try:
            end = self._loop(session, events)
        finally:
            self._hang_up(client)
            reader.join(timeout=5)
        if channel.bad_packets:
            self.debug(f"gdb: {channel.bad_packets} packets with bad checksums were refused")
        if end.how != "killed":              # the run's own end line says it
            self.log(_end_line(end))
        return end

    def _loop(self, session: Session, events: queue.Queue) -> SessionEnd:
        while True:
            ev = events.get()
            if ev is _DISCONNECTED:
                return session.end_disconnected()
            session.handle(ev.payload)
            if session.ended is not None:
                return session.ended

    def _hang_up(self, client: socket.socket) -> None:
        try:
            client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        client.close()
        self._client = None
        self._client_ready.clear()

    def close(self) -> None:
        if self._client is not None:
            self._hang_up(self._client)
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _is_loopback(address: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _end_line(end: SessionEnd) -> str:
    if end.how == "detached":
        return "gdb detached; the guest runs on"
    if end.how == "disconnected":
        return "gdb went away without detaching; its breakpoints are removed and the guest runs on"
    if end.how == "killed":
        return "gdb killed the guest"
    return f"gdb session over: {describe(end.stop)}"
