"""Local paths written by the platform: names checked, folders and files owner-only.

A symbol such as `../../etc` or `BTC/USDT` would otherwise write (or read) outside the storage
root; refusing it where it enters (settings, the IO manager, the lake) keeps every path inside.

Market data is licensed to its subscriber: what the platform writes on a local disk is the
owner's alone. Folders it creates are 0o700 (nothing below them is reachable by other users,
whoever wrote it), the files it publishes 0o600.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# Letters, digits, dot, underscore, dash; not starting with a dot (no "..", no hidden folders).
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_LENGTH = 100


def check_path_component(label: str, value: str) -> str:
    """`value` if it is safe as one folder name, else a ValueError saying which and why."""
    if not isinstance(value, str) or not _COMPONENT.fullmatch(value) or len(value) > _MAX_LENGTH:
        raise ValueError(
            f"{label} {value!r} cannot be a folder name (letters, digits, '.', '_' and '-' only,"
            f" not starting with '.', at most {_MAX_LENGTH} characters)"
        )
    return value


def make_private_dirs(path: str | Path) -> None:
    """Create `path` and its missing parents owner-only (0o700; the umask can only take bits
    away). Folders that already exist are left as their owner made them."""
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
