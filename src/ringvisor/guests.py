"""Where the guest images built from guests/ live (built by `make install`)."""
from __future__ import annotations

import os
from pathlib import Path

from ringvisor.errors import GuestImageError

ROOT = Path(os.environ.get("RINGVISOR_GUESTS", Path(__file__).resolve().parents[2] / "guests"))
BUNDLED = {"ringos": "os/build/ringos.elf", "ringos-pv": "os/build/ringos-pv.elf"}


def path(relative: str) -> str:
    p = ROOT / relative
    if not p.is_file():
        raise GuestImageError(f"{p} is not built: run `make install` (it builds the guests with gcc)")
    return str(p)


def bundled(name: str = "ringos") -> str:
    return path(BUNDLED[name])


def test_kernel(name: str) -> str:
    return path(f"tests/build/{name}.elf")
