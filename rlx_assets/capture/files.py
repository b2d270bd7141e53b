"""One symbol's capture files: `<dir>/<SYMBOL>-<YYYY-MM-DD>.jsonl.gz`, one per UTC day of capture
time, each a complete gzip stream (optionally encrypted, see `encryption.py`).

A day's file is written as `<name>.partial` and renamed into place when the day (or the capture)
ends, so a reader never takes a file that is still growing for a finished one. A capture started
again on a day that already has a file appends its own complete gzip member (and segment, when
encrypted): the file stays one readable stream, as `gzip` and `golden.parse_golden` read members
one after another.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rlx_assets.capture.encryption import MAGIC, EncryptingWriter
from rlx_assets.engine.days import NS_PER_DAY

log = logging.getLogger(__name__)

PARTIAL = ".partial"
_BATCH_BYTES = 1 << 16


def utc_day(capture_ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=capture_ns // NS_PER_DAY)


def day_end_ns(day: dt.date) -> int:
    """The first nanosecond after `day` (UTC)."""
    return ((day - dt.date(1970, 1, 1)).days + 1) * NS_PER_DAY


def golden_path(directory: Path, symbol: str, day: dt.date) -> Path:
    return directory / f"{symbol}-{day.isoformat()}.jsonl.gz"


@dataclass
class FileSummary:
    path: str
    symbol: str
    day: str
    lines: int = 0
    streams: Counter = field(default_factory=Counter)
    appended: bool = False  # a previous capture of the same day was already there

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "symbol": self.symbol,
            "day": self.day,
            "lines": self.lines,
            "streams": dict(sorted(self.streams.items())),
            "appended_to_existing": self.appended,
        }


class _OpenDay:
    def __init__(self, path: Path, key: bytes | None, summary: FileSummary) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL)
        self.summary = summary
        if self.partial.exists():
            # A capture killed before it could close this day: its file is torn (a reader keeps
            # the lines before the tear). Kept aside, never overwritten.
            aside = self.partial.with_name(f"{self.partial.name}.interrupted-{os.getpid()}")
            log.warning("%s: left by an interrupted capture, kept as %s", self.partial, aside)
            self.partial.replace(aside)
        self.raw: BinaryIO = self.partial.open("wb")
        self.encrypted = EncryptingWriter(self.raw, key) if key is not None else None
        # Level 6 (zlib's default) compresses a busy feed at a fraction of level 9's CPU.
        self.gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self.encrypted or self.raw, mtime=0, compresslevel=6
        )
        self.pending = bytearray()  # lines are compressed in batches, not one call per line

    def write(self, line: bytes, stream: str) -> None:
        self.pending += line
        if len(self.pending) >= _BATCH_BYTES:
            self.gzip.write(self.pending)
            self.pending.clear()
        self.summary.lines += 1
        self.summary.streams[stream] += 1

    def flush(self) -> None:
        self.gzip.write(self.pending)
        self.pending.clear()
        self.gzip.flush()  # a sync flush: everything written so far decompresses
        (self.encrypted or self.raw).flush()

    def close(self) -> None:
        self.gzip.write(self.pending)
        self.pending.clear()
        self.gzip.close()
        if self.encrypted is not None:
            self.encrypted.close()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        if self.path.exists():
            with self.path.open("ab") as target, self.partial.open("rb") as source:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
            self.partial.unlink()
            self.summary.appended = True
        else:
            self.partial.replace(self.path)


class DayFiles:
    """The capture files of one symbol; `write` opens the day's file as capture time goes."""

    def __init__(self, directory: Path, symbol: str, key: bytes | None) -> None:
        self.directory = directory
        self.symbol = symbol
        self.key = key
        self._open: _OpenDay | None = None
        self.day: dt.date | None = None

    def check_existing(self, day: dt.date) -> None:
        """A day's file is appended to only in the same form (encrypted or not)."""
        path = golden_path(self.directory, self.symbol, day)
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb") as handle:
            encrypted = handle.read(len(MAGIC)) == MAGIC
        if encrypted != (self.key is not None):
            state = "encrypted" if encrypted else "not encrypted"
            raise ValueError(
                f"{path} exists and is {state}; a capture of the same day appends to it, so "
                f"RLX_GOLDEN_KEY must be {'set to its key' if encrypted else 'unset'} (or move "
                "the file away)"
            )

    def open(self, day: dt.date) -> None:
        self.check_existing(day)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = golden_path(self.directory, self.symbol, day)
        summary = FileSummary(path=str(path), symbol=self.symbol, day=day.isoformat())
        self._open = _OpenDay(path, self.key, summary)
        self.day = day

    def write(self, line: bytes, stream: str) -> None:
        if self._open is None:
            raise RuntimeError("write before open")
        self._open.write(line, stream)

    def flush(self) -> None:
        if self._open is not None:
            self._open.flush()

    def close(self) -> FileSummary | None:
        if self._open is None:
            return None
        opened, self._open, self.day = self._open, None, None
        opened.close()
        return opened.summary
