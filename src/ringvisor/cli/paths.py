"""Output paths checked before the work that fills them: `compare` measures
for minutes, and a --json or --chart path it cannot write must be said at
once, not after."""
from __future__ import annotations

import os
from pathlib import Path

from ringvisor.errors import ConfigError


def check_writable(path: str, option: str) -> None:
    """The file at `path` can be created or replaced (through a temporary
    file beside it, as write_doc does): its directory exists and is writable,
    and it is not itself a directory."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} {path}: is a directory")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: the directory {folder} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{option} {path}: the file is not writable")
