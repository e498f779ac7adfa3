"""process.terminal: a pseudo-terminal made inside the container, its master sent to the
engine's --console-socket (SCM_RIGHTS, as runc and conmon expect)."""
import fcntl
import os
import struct
import termios

from .errors import OciError


def connect(path):
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise OciError(f"--console-socket {path}: {exc.strerror}") from None
    return sock


def make_controlling_pty(sock, size=None):
    """Open a pty in this (container) mount namespace, send the master over sock, make the
    slave this session's controlling terminal and stdio."""
    import socket
    master, slave = os.openpty()
    name = os.ttyname(slave)
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    socket.send_fds(sock, [name.encode()], [master])
    os.close(master)
    sock.close()
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
