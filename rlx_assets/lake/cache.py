"""A local cache of whole lake files from an object store, keyed by URI and ETag, bounded in size.

An S3 object's ETag changes whenever its bytes do, so a file whose listing shows the same ETag
as a cached copy is not downloaded again. Each entry is the file's bytes and a small record of
what they are (URI, ETag, size, SHA-256); a copy whose bytes no longer match its record (a
disk fault, an edit) is dropped and downloaded again, never used. Beyond the size limit the least
recently used entries go. Several processes may share one cache: entries appear by atomic rename
and one removed under a reader stays readable through the reader's open handle.

    <folder>/<key[:2]>/<key>.parquet   the bytes
    <folder>/<key[:2]>/<key>.json      {"uri", "etag", "size", "sha256"}
    <folder>/.staging/                 downloads in progress
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from rlx_assets.paths import PRIVATE_FILE_MODE, make_private_dirs

log = logging.getLogger(__name__)

_BLOCK = 8 << 20
_STAGING = ".staging"


@dataclass
class CachedFile:
    """An entry opened for reading, its bytes checked against its record."""

    handle: pa.OSFile
    size: int
    sha256: str


class LakeCache:
    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("a lake cache needs a size limit above 0 (0 means no cache)")
        self.folder = Path(folder).absolute()
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"LakeCache({str(self.folder)!r}, max_bytes={self.max_bytes})"

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def open(self, uri: str, etag: str, size: int) -> CachedFile | None:
        """The cached copy of that version of `uri`, opened, or None (absent or damaged)."""
        data, record = self._paths(uri, etag)
        try:
            expected = json.loads(record.read_text())
            handle = pa.OSFile(str(data))
        except (FileNotFoundError, ValueError):
            return None
        digest = hashlib.sha256()
        stored = 0
        with contextlib.ExitStack() as on_error:
            on_error.callback(handle.close)
            while block := handle.read(_BLOCK):
                digest.update(block)
                stored += len(block)
            if (expected.get("uri"), expected.get("etag")) != (uri, etag) or not (
                stored == size == expected.get("size")
                and digest.hexdigest() == expected.get("sha256")
            ):
                log.warning("%s: cached copy damaged (%s); downloading it again", uri, data)
                self._remove(data)
                return None
            handle.seek(0)
            on_error.pop_all()
        # Recently used: the last to go when the cache is full.
        with contextlib.suppress(FileNotFoundError):
            os.utime(data)
        return CachedFile(handle, stored, expected["sha256"])

    @contextlib.contextmanager
    def staging_file(self) -> Iterator[Path]:
        """A fresh private file to download into (removed unless `add` took it)."""
        staging = self.folder / _STAGING
        make_private_dirs(staging)
        path = staging / f"{uuid.uuid4().hex}.part"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def add(self, staged: Path, uri: str, etag: str, size: int, sha256: str) -> Path:
        """Move a verified download into the cache; returns where it now is."""
        data, record = self._paths(uri, etag)
        make_private_dirs(data.parent)
        os.replace(staged, data)
        # The record last: an entry without one is not found, so a crash leaves nothing half-true.
        text = json.dumps({"uri": uri, "etag": etag, "size": size, "sha256": sha256})
        staged_record = self.folder / _STAGING / f"{uuid.uuid4().hex}.json"
        staged_record.write_text(text)
        os.chmod(staged_record, PRIVATE_FILE_MODE)
        os.replace(staged_record, record)
        self._evict(keep=data)
        return data

    def entries(self) -> list[Path]:
        """The cached files (not their records), in no particular order."""
        return [p for p in self.folder.glob("??/*.parquet") if p.is_file()]

    def _evict(self, keep: Path) -> None:
        """Remove the least recently used entries until the cache is within its limit."""
        sized = []
        for path in self.entries():
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                sized.append((info.st_mtime_ns, info.st_size, path))
        total = sum(size for _, size, _ in sized)
        for _, size, path in sorted(sized, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            self._remove(path)
            total -= size

    def _paths(self, uri: str, etag: str) -> tuple[Path, Path]:
        key = hashlib.sha256(f"{uri}\n{etag}".encode()).hexdigest()
        folder = self.folder / key[:2]
        return folder / f"{key}.parquet", folder / f"{key}.json"

    @staticmethod
    def _remove(data: Path) -> None:
        for path in (data.with_suffix(".json"), data):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
