"""The POST diagnostic ports: firmware writes a byte at each step of its
power-on self test, which a POST card shows on two hex digits. Port 0x80 on
AT-compatible PCs; 0x190 on IBM's PS/2 models 25/30 and PS/1 (whose BIOS
writes its POST function codes there).

Every value written is kept in order, with its port (the first `KEEP`: an
OS such as Linux also writes 0x80 as an I/O delay), with the total count.
Reads return all ones, as QEMU's port 0x80 and a bus nothing drives do."""
from __future__ import annotations

PORTS = (0x80, 0x190)
KEEP = 256


class _Port:
    def __init__(self, codes: "PostCodes", port: int):
        self.codes, self.port = codes, port

    def io_read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.codes.record(self.port, value & 0xFF)   # the card shows a wide write's low byte


class PostCodes:
    def __init__(self):
        self.codes: list[tuple[int, int]] = []      # (port, value), in order
        self.writes = 0

    def register(self, ports) -> None:
        for port in PORTS:
            ports.register(port, 1, _Port(self, port), f"POST diagnostic port ({port:#x})")

    def record(self, port: int, value: int) -> None:
        self.writes += 1
        if len(self.codes) < KEEP:
            self.codes.append((port, value))

    def statistics(self) -> dict:
        """Codes as "0x11" (port 0x80) or "0x190:0x11", in the order written."""
        return {"codes": [f"{v:#04x}" if p == PORTS[0] else f"{p:#x}:{v:#04x}" for p, v in self.codes],
                "writes": self.writes}
