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
    if os.getsid(0) != os.getpid():  # the container's init is a session leader already
        os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def socket_pair():
    """For `run`/`exec` with a terminal and no --console-socket (runc's own terminal):
    (the end the container's init gets, the end this process keeps)."""
    import socket
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def receive_master(sock):
    import socket
    _, fds, _, _ = socket.recv_fds(sock, 1024, 1)
    sock.close()
    if not fds:
        raise OciError("the container sent no terminal")
    return fds[0]


def proxy(master, done):
    """Copy between this process's stdin/stdout and the container's terminal until the
    terminal closes (its last process exited); stdin is raw meanwhile when it is a tty."""
    import select
    saved = None
    stdin = 0
    if os.isatty(stdin):
        import tty
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        try:
            size = fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:
            pass
    sources = [master, stdin]
    try:
        while True:
            readable, _, _ = select.select(sources, [], [], 0.2)
            if master in readable:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the slave side is closed
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if stdin in readable:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    sources.remove(stdin)  # end of input: keep showing output
            if not readable and done():
                break
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
