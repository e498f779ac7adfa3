"""JSON lines between `create` and the container's set-up processes, over two pipes.
Each message is one short write (below PIPE_BUF), so writers never interleave."""
from . import fastjson as json
import os


class Channel:
    def __init__(self, read_fd, write_fd):
        self.read_fd, self.write_fd = read_fd, write_fd
        self._buffer = b""

    def send(self, **message):
        os.write(self.write_fd, json.dumps(message).encode() + b"\n")

    def recv(self):
        """The next message, or None at end of file (every writer gone)."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
