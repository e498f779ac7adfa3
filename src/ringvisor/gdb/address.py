"""`--gdb [HOST:]PORT`: where the stub listens. Loopback unless the user names
another host, as QEMU's `-s` (tcp::1234, but on loopback: a debug stub gives
whoever connects full control of the guest)."""
from __future__ import annotations

from ringvisor.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1234
DEFAULT = f"{DEFAULT_HOST}:{DEFAULT_PORT}"


def parse_address(text: str | None) -> tuple[str, int]:
    """`PORT`, `:PORT`, `HOST:PORT` or `[IPV6]:PORT` -> (host, port). None or
    an empty string gives the default. Bad input raises ConfigError."""
    if text is None or not text.strip():
        return DEFAULT_HOST, DEFAULT_PORT
    text = text.strip()
    if text.startswith("tcp:"):        # QEMU's spelling, -gdb tcp::1234
        text = text[4:]
    if text.startswith("["):
        host, sep, port = text[1:].partition("]")
        if not sep or (port and not port.startswith(":")):
            raise ConfigError(f"--gdb {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        port = port[1:]
    elif text.count(":") > 1:
        raise ConfigError(f"--gdb {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif ":" in text:
        host, _, port = text.partition(":")
    else:
        host, port = "", text
    host = host or DEFAULT_HOST
    if any(c.isspace() for c in host):
        raise ConfigError(f"--gdb {text!r}: the host name contains a space")
    if not port:
        port_number = DEFAULT_PORT
    elif not port.isdigit() or not port.isascii():
        raise ConfigError(f"--gdb {text!r}: the port must be a number from 1 to 65535")
    else:
        port_number = int(port)
        if not 1 <= port_number <= 65535:
            raise ConfigError(f"--gdb {text!r}: the port must be a number from 1 to 65535")
    return host, port_number
