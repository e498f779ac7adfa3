"""One gdb session: the commands of the remote protocol, answered from a
`Target`. Transport (sockets, acks, retransmission) is the channel's business;
a Session sees whole, checksummed packet payloads and sends reply payloads.

Errors answered to gdb: E14 (EFAULT) for memory the guest does not map, E22
(EINVAL) for malformed requests, E28 (ENOSPC) when the hardware slots are
used up, E01 for what the target refuses. Unknown packets get the empty reply,
which gdb reads as "not supported".
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from ringvisor.gdb import monitor, registers, stops
from ringvisor.gdb.packets import MAX_PACKET, escape_binary, unescape_binary
from ringvisor.gdb.registers import RegisterError
from ringvisor.gdb.target import (Crashed, Exited, MemoryFault, Stop, Target,
                                  TargetError, Watchpoint, WatchKind)

E_FAULT, E_INVAL, E_NOSPC, E_REFUSED = b"E14", b"E22", b"E28", b"E01"
SUPPORTED = (f"PacketSize={MAX_PACKET:x};qXfer:features:read+;swbreak+;hwbreak+;"
             "vContSupported+;QStartNoAckMode+").encode()
WATCH_KINDS = {2: WatchKind.WRITE, 3: WatchKind.READ, 4: WatchKind.ACCESS}
MAX_MEMORY_READ = (MAX_PACKET - 8) // 2      # bytes whose hex fits one reply


class Channel(Protocol):
    def send(self, payload: bytes, binary: bool = False) -> None: ...

    def stop_acking(self) -> None: ...


@dataclass(frozen=True)
class SessionEnd:
    """How a session ended: 'detached', 'killed', 'disconnected', 'exited' or
    'crashed'; `stop` is the guest's last stop (Exited/Crashed carry why)."""
    how: str
    stop: Stop | None = None


class Malformed(ValueError):
    pass


class Session:
    def __init__(self, target: Target, channel: Channel, log: Callable[[str], None] = lambda s: None):
        self.target = target
        self.channel = channel
        self.log = log
        self.software: frozenset[int] = frozenset()
        self.hardware: frozenset[int] = frozenset()
        self.watchpoints: tuple[Watchpoint, ...] = ()
        self.client_features: frozenset[str] = frozenset()
        self.last_stop: Stop | None = None          # None: stopped before the first instruction
        self.ended: SessionEnd | None = None
        self._running = False
        self._lock = threading.Lock()
        self._gone = False

    # -- called from the channel's reader thread ---------------------------------
    def interrupt(self) -> None:
        """Ctrl-C from gdb: interrupt the guest if it runs (ignored when stopped)."""
        with self._lock:
            if self._running:
                self.target.interrupt()

    def client_gone(self) -> None:
        """The connection broke: a running guest must come back to us."""
        with self._lock:
            self._gone = True
            if self._running:
                self.target.interrupt()

    # -- the command loop --------------------------------------------------------
    def handle(self, payload: bytes) -> None:
        """Answer one packet (may run the guest until it stops)."""
        try:
            reply = self._dispatch(payload)
        except Malformed as e:
            self.log(f"gdb: malformed packet {payload[:40]!r}: {e}")
            reply = E_INVAL
        except (ValueError, IndexError) as e:
            self.log(f"gdb: malformed packet {payload[:40]!r}: {e}")
            reply = E_INVAL
        except MemoryFault:
            reply = E_FAULT
        except TargetError as e:
            self.log(f"gdb: the target refused {payload[:40]!r}: {e}")
            reply = E_REFUSED
        if reply is not None:
            # qXfer data is binary-escaped: sent as it is, without run-length encoding.
            self.channel.send(reply, binary=payload.startswith(b"qXfer:"))

    def end_disconnected(self) -> SessionEnd:
        """The client vanished: take our breakpoints out and let the guest go on."""
        if self.ended is None:
            self._clear_debug_state()
            self.ended = SessionEnd("disconnected", self.last_stop)
        return self.ended

    def _dispatch(self, p: bytes) -> bytes | None:
        if not p:
            return b""
        head = p[:1]
        handler = _SIMPLE.get(head)
        if handler is not None:
            return handler(self, p[1:])
        if p.startswith(b"q") or p.startswith(b"Q"):
            return self._query(p)
        if p.startswith(b"v"):
            return self._v(p)
        return b""

    # -- registers ---------------------------------------------------------------
    def _g(self, _):
        return registers.encode_all(self.target.read_registers()).hex().encode()

    def _G(self, body):
        try:
            state = registers.decode_all(self.target.read_registers(), _unhex(body))
            self.target.write_registers(state)
        except (RegisterError, TargetError) as e:
            self.log(f"gdb: G refused: {e}")
            return E_REFUSED
        return b"OK"

    def _p(self, body):
        number = _int(body)
        try:
            return registers.read_register(self.target.read_registers(), number).hex().encode()
        except RegisterError:
            return E_INVAL

    def _P(self, body):
        number, _, value = body.partition(b"=")
        state = self.target.read_registers()
        try:
            registers.write_register(state, _int(number), _unhex(value))
            self.target.write_registers(state)
        except (RegisterError, TargetError) as e:
            self.log(f"gdb: P refused: {e}")
            return E_REFUSED
        return b"OK"

    # -- memory ------------------------------------------------------------------
    def _m(self, body):
        address, length = _address_length(body)
        length = min(length, MAX_MEMORY_READ)
        if length == 0:
            return b""
        try:
            data = self.target.read_memory(address, length)
        except MemoryFault as fault:
            # Give gdb what precedes the fault (a partial read), else E14.
            readable = fault.address - address
            if not 0 < readable < length:
                return E_FAULT
            try:
                data = self.target.read_memory(address, readable)
            except MemoryFault:
                return E_FAULT
        return data.hex().encode()

    def _M(self, body):
        where, _, data = body.partition(b":")
        address, length = _address_length(where)
        data = _unhex(data)
        if len(data) != length:
            raise Malformed(f"M says {length} bytes, carries {len(data)}")
        return self._write_memory(address, data)

    def _X(self, body):
        where, sep, data = body.partition(b":")
        if not sep:
            raise Malformed("X without ':'")
        address, length = _address_length(where)
        data = unescape_binary(data)
        if len(data) != length:
            raise Malformed(f"X says {length} bytes, carries {len(data)}")
        return self._write_memory(address, data) if data else b"OK"

    def _write_memory(self, address, data):
        try:
            self.target.write_memory(address, data)
        except MemoryFault:
            return E_FAULT
        return b"OK"

    # -- running -----------------------------------------------------------------
    def _c(self, body):
        return self._resume(step=False, address=body)

    def _s(self, body):
        return self._resume(step=True, address=body)

    def _C(self, body):            # continue with signal: a bare-metal guest has no signals
        _, _, address = body.partition(b";")
        return self._resume(step=False, address=address)

    def _S(self, body):
        _, _, address = body.partition(b";")
        return self._resume(step=True, address=address)

    def _resume(self, step: bool, address: bytes = b"") -> bytes | None:
        if isinstance(self.last_stop, (Exited, Crashed)):
            return self._stop_reply()          # nothing left to run: say so again
        if address:
            state = self.target.read_registers()
            state.eip = _int(address)
            self.target.write_registers(state)
        with self._lock:
            if self._gone:
                return None
            self._running = True
        try:
            stop = self.target.resume(step)
        finally:
            with self._lock:
                self._running = False
                gone = self._gone
        self.last_stop = stop
        if gone:
            return None                         # the reader ends the session
        if isinstance(stop, Crashed):
            self._console(f"ringvisor: {stop.message}\n")
        reply = self._stop_reply()
        if isinstance(stop, (Exited, Crashed)):
            self.ended = SessionEnd("exited" if isinstance(stop, Exited) else "crashed", stop)
        return reply

    def _stop_reply(self) -> bytes:
        alive = not isinstance(self.last_stop, (Exited, Crashed))
        eip = self.target.read_registers().eip if alive else None
        return stops.stop_reply(self.last_stop, eip, self.software, self.hardware,
                                self.client_features)

    def _question(self, _):
        return self._stop_reply()

    # -- breakpoints and watchpoints ---------------------------------------------
    def _Z(self, body, insert=True):
        fields = body.split(b";", 1)[0].split(b",")
        if len(fields) != 3:
            raise Malformed("Z/z takes TYPE,ADDR,KIND")
        kind, address, size = _int(fields[0]), _int(fields[1]), _int(fields[2])
        if kind in (0, 1):
            software, hardware = self.software, self.hardware
            if kind == 0:
                software = _toggle(software, address, insert)
            else:
                if insert and address not in hardware and not self._slot_free():
                    return E_NOSPC
                hardware = _toggle(hardware, address, insert)
            try:
                self.target.set_breakpoints(software, hardware)
            except TargetError as e:
                self.log(f"gdb: breakpoint refused: {e}")
                return E_NOSPC
            self.software, self.hardware = software, hardware
            return b"OK"
        if kind in WATCH_KINDS:
            if size <= 0:
                raise Malformed("a watchpoint needs a length")
            wp = Watchpoint(address, size, WATCH_KINDS[kind])
            if insert:
                if wp in self.watchpoints:
                    return b"OK"
                if not self._slot_free():
                    return E_NOSPC
                self.watchpoints += (wp,)
            else:
                self.watchpoints = tuple(w for w in self.watchpoints if w != wp)
            try:
                self.target.set_watchpoints(self.watchpoints)
            except TargetError as e:
                self.log(f"gdb: watchpoint refused: {e}")
                self.watchpoints = tuple(w for w in self.watchpoints if w != wp)
                return E_REFUSED
            return b"OK"
        return b""                              # an unknown type: not supported

    def _z(self, body):
        return self._Z(body, insert=False)

    def _slot_free(self) -> bool:
        slots = self.target.hardware_slots
        return slots is None or len(self.hardware) + len(self.watchpoints) < slots

    def _clear_debug_state(self) -> None:
        self.software, self.hardware, self.watchpoints = frozenset(), frozenset(), ()
        try:
            self.target.set_breakpoints(self.software, self.hardware)
            self.target.set_watchpoints(())
        except TargetError as e:
            self.log(f"gdb: could not clear breakpoints: {e}")

    def breakpoints_text(self) -> str:
        lines = [f"software breakpoint at {a:#010x}" for a in sorted(self.software)]
        lines += [f"hardware breakpoint at {a:#010x}" for a in sorted(self.hardware)]
        lines += [f"{w.kind.name.lower()} watchpoint on {w.address:#010x}, {w.length} bytes"
                  for w in self.watchpoints]
        return "\n".join(lines or ["no breakpoints or watchpoints"]) + "\n"

    # -- threads, detach, kill ---------------------------------------------------
    def _H(self, body):
        return b"OK" if body[1:] in (b"0", b"-1", b"1") and body[:1] in (b"g", b"c") else E_INVAL

    def _T(self, body):
        return b"OK" if _int(body) == stops.THREAD else E_REFUSED

    def _D(self, _):
        self._clear_debug_state()
        self.ended = SessionEnd("detached", self.last_stop)
        return b"OK"

    def _k(self, _):
        self.ended = SessionEnd("killed", self.last_stop)
        return None                              # gdb does not wait for a reply to k

    # -- queries -----------------------------------------------------------------
    def _query(self, p: bytes) -> bytes | None:
        name, _, args = p.partition(b":")
        if name == b"qSupported":
            self.client_features = frozenset(f[:-1].decode(errors="replace")
                                             for f in args.split(b";") if f.endswith(b"+"))
            return SUPPORTED
        if name == b"QStartNoAckMode":
            self.channel.stop_acking()
            return b"OK"
        if name == b"qXfer":
            return self._xfer(args)
        if p == b"qAttached" or name == b"qAttached":
            return b"1"                          # attached to a running machine: quit detaches
        if p == b"qC":
            return b"QC%x" % stops.THREAD
        if p == b"qfThreadInfo":
            return b"m%x" % stops.THREAD
        if p == b"qsThreadInfo":
            return b"l"
        if p.startswith(b"qThreadExtraInfo,"):
            return f"CPU 0 ({self.target.describe()})".encode().hex().encode()
        if p.startswith(b"qRcmd,"):
            return self._rcmd(_unhex(p[len(b"qRcmd,"):]).decode(errors="replace"))
        if name == b"qSymbol":
            return b"OK"
        return b""

    def _xfer(self, args: bytes) -> bytes:
        fields = args.split(b":")
        if len(fields) != 4 or fields[0] != b"features" or fields[1] != b"read":
            return b""
        if fields[2] != b"target.xml":
            return b"E00"
        offset, length = _address_length(fields[3])
        document = registers.target_xml().encode()
        chunk = document[offset:offset + min(length, MAX_PACKET // 2)]
        more = offset + len(chunk) < len(document)
        return (b"m" if more else b"l") + escape_binary(chunk)

    def _rcmd(self, line: str) -> bytes:
        text = monitor.run_command(line, self.target, self.breakpoints_text)
        self._console(text)
        return b"OK"

    def _console(self, text: str) -> None:
        """Text for gdb's console (O packets), cut to fit the packet size."""
        data = text.encode()
        step = (MAX_PACKET - 8) // 2
        for i in range(0, len(data), step):
            self.channel.send(b"O" + data[i:i + step].hex().encode())

    def _v(self, p: bytes) -> bytes | None:
        if p == b"vCont?":
            return b"vCont;c;C;s;S;t"
        if p.startswith(b"vCont;"):
            return self._vcont(p[len(b"vCont;"):])
        if p.startswith(b"vKill"):
            self.ended = SessionEnd("killed", self.last_stop)
            return b"OK"
        return b""                               # vMustReplyEmpty, vFile, vRun ...

    def _vcont(self, actions: bytes) -> bytes | None:
        """Apply the first action for our thread (or for all threads)."""
        for action in actions.split(b";"):
            verb, _, thread = action.partition(b":")
            if thread and thread not in (b"-1", b"0", b"%x" % stops.THREAD, b"p1.1", b"p1.-1"):
                continue
            op = verb[:1]
            if op in (b"c", b"C"):
                return self._resume(step=False)
            if op in (b"s", b"S"):
                return self._resume(step=True)
            if op == b"t":                       # stop: in all-stop mode it already is
                return self._stop_reply()
            if op == b"r":                       # range step: one step at a time is a valid answer
                return self._resume(step=True)
            raise Malformed(f"unknown vCont action {verb!r}")
        raise Malformed("vCont names no action for this thread")


_SIMPLE: dict[bytes, Callable] = {
    b"g": Session._g, b"G": Session._G, b"p": Session._p, b"P": Session._P,
    b"m": Session._m, b"M": Session._M, b"X": Session._X,
    b"c": Session._c, b"s": Session._s, b"C": Session._C, b"S": Session._S,
    b"?": Session._question, b"Z": Session._Z, b"z": Session._z,
    b"H": Session._H, b"T": Session._T, b"D": Session._D, b"k": Session._k,
}


def _int(text: bytes) -> int:
    if not text or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise Malformed(f"{text[:20]!r} is not a hexadecimal number")
    return int(text, 16)


def _unhex(text: bytes) -> bytes:
    if len(text) % 2 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise Malformed("bad hexadecimal data")
    return bytes.fromhex(text.decode("ascii"))


def _address_length(text: bytes) -> tuple[int, int]:
    address, sep, length = text.partition(b",")
    if not sep:
        raise Malformed("expected ADDR,LENGTH")
    address, length = _int(address), _int(length)
    if address > 0xFFFFFFFF:
        raise Malformed("address beyond 32 bits")
    return address, length


def _toggle(addresses: frozenset[int], address: int, insert: bool) -> frozenset[int]:
    return addresses | {address} if insert else addresses - {address}
