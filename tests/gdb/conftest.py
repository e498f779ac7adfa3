"""Fixtures for the GDB stub's tests: the fake target's program, built with the
machine's gcc as the guests are, and Debian's gdb (installed through apt when
missing, as .ci/run does)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def program_elf(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gdbprog") / "program.elf"
    subprocess.run(["gcc", "-m32", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none",
                    "-Wl,-Ttext=0x1000", "-Wl,-Tdata=0x2000", "-Wl,--no-warn-rwx-segments",
                    "-o", str(out), str(HERE / "program.S")], check=True)
    return out


@pytest.fixture
def fake_target(program_elf):
    from gdb_fake_target import FakeTarget
    return FakeTarget(program_elf.read_bytes())


@pytest.fixture(scope="session")
def symbols(program_elf) -> dict[str, int]:
    """The program's symbols, by nm."""
    out = subprocess.run(["nm", str(program_elf)], check=True, capture_output=True, text=True).stdout
    return {name: int(addr, 16) for addr, _, name in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="session")
def gdb_binary() -> str:
    path = shutil.which("gdb")
    if path is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "gdb"], check=False,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        path = shutil.which("gdb")
    if path is None:
        pytest.fail("gdb is needed for the stub's tests and could not be installed "
                    "(apt-get install gdb)")
    return path


class StubThread:
    """A GdbServer serving `target` from a background thread (in the tests,
    that thread plays the vCPU thread); `end` is its SessionEnd."""

    def __init__(self, target):
        import threading
        from ringvisor.gdb import GdbServer
        self.lines: list[str] = []
        self.server = GdbServer(target, "127.0.0.1", 0, log=self.lines.append,
                                debug=self.lines.append)
        self.port = self.server.listen()[1]
        self.end = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.end = self.server.serve()
        except BaseException as e:          # the test asserts there was none
            self.error = e

    def finish(self, timeout: float = 20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stub did not end its session"
        assert self.error is None, f"the stub raised {self.error!r}"
        self.server.close()
        return self.end


@pytest.fixture
def stub(fake_target):
    s = StubThread(fake_target)
    yield s
    s.server.close()
