"""Where a book step's checkpoint files live: a local folder, or a prefix on an object store.

The checkpoint format (`Checkpoints` in streaming.py) is the same on both; only where the bytes
go differs. On local disk a file is written under a temporary name and renamed (a kill mid-write
leaves the previous file). On an object store (s3://, through fsspec with the IO manager's
options and credentials) each file is one PUT, visible only when complete, so the same guarantee
holds without a rename; a step restarted on another machine finds the checkpoint there.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from typing import BinaryIO

from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from rlx_assets.paths import PRIVATE_FILE_MODE, make_private_dirs


class CheckpointStore:
    """Named files under one folder (`root`, without protocol) of an fsspec filesystem."""

    def __init__(self, fs: AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)

    @property
    def location(self) -> str:
        """The folder as users copy it: an absolute local path, else the full URL."""
        return self.root if self.local else self.fs.unstrip_protocol(self.root)

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        path = self._path(name)
        if self.local:
            return os.path.exists(path)
        self.fs.invalidate_cache(path)  # another worker may have written it since
        return self.fs.exists(path)

    def open(self, name: str) -> BinaryIO:
        """The file for reading (FileNotFoundError when absent). Remote files are fetched whole:
        a checkpoint file is small (the rows of one chunk, or the replay's state)."""
        if self.local:
            return open(self._path(name), "rb")
        return io.BytesIO(self.fs.cat_file(self._path(name)))

    def read_text(self, name: str) -> str:
        with self.open(name) as handle:
            return handle.read().decode()

    def write(self, name: str, data: bytes) -> None:
        """Replace `name` with `data` atomically (readers see the old file or the new one)."""
        path = self._path(name)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        make_private_dirs(self.root)
        tmp = f"{path}.tmp"
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def remove(self, name: str) -> None:
        path = self._path(name)
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def clear(self) -> None:
        """Remove the folder and everything in it (nothing there is fine)."""
        if self.local:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        self.fs.invalidate_cache(self.root)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.root, recursive=True)
