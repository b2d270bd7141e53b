"""Sorted runs on disk (Arrow IPC): where a day is sorted in bounded memory.

The engine sorts through a `RunStore` (`rlx_assets.engine.runs`); this one keeps each run as an
IPC file in a private temporary folder, removed when the `with` block ends, also on error.
Runs are written on a background thread and read ahead of the caller, so the disk works while
the engine computes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from rlx_assets.background import WriteBehind, read_ahead
from rlx_assets.engine.runs import RUN_BATCH_ROWS

# Uncompressed: a run is read once, soon after, mostly from the page cache; lz4 cost more time
# than the disk it saved.
_OPTIONS = pa.ipc.IpcWriteOptions(compression=None)


class DiskRun:
    def __init__(self, path: Path, behind: WriteBehind) -> None:
        self.path = path
        self.rows = 0
        self._behind = behind
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        self._behind.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, table.schema, options=_OPTIONS)
        self._writer.write_table(table, max_chunksize=RUN_BATCH_ROWS)

    def finish(self) -> DiskRun:
        self._behind.drain()
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None
        return self

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.rows else 0

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        return read_ahead(self._batches(columns))

    def _batches(self, columns: Sequence[str] | None) -> Iterator[pa.Table]:
        if self.rows == 0:
            return
        # Read from a file, not a memory map: mapped pages would count as the process's memory.
        with pa.OSFile(str(self.path)) as source:
            options = None
            if columns is not None:
                names = pa.ipc.open_file(source).schema.names
                missing = [name for name in columns if name not in names]
                if missing:
                    raise KeyError(f"{self.path} holds no column {missing}")
                # Only these columns' buffers are read: a pass over two of a table's columns
                # copies two columns from the disk, not the table.
                indices = [names.index(name) for name in columns]
                options = pa.ipc.IpcReadOptions(included_fields=indices)
            reader = pa.ipc.open_file(source, options=options)
            for index in range(reader.num_record_batches):
                table = pa.Table.from_batches([reader.get_batch(index)])
                yield table if columns is None else table.select(list(columns))


class DiskRuns:
    """A `RunStore` in a temporary folder under `parent` (the system's temp folder if None)."""

    def __init__(self, parent: str | Path | None = None) -> None:
        self.parent = parent
        self.folder: Path | None = None
        self.runs: list[DiskRun] = []
        self._behind = WriteBehind()

    def __enter__(self) -> DiskRuns:
        if self.parent is not None:
            Path(self.parent).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="rlx-runs-", dir=self.parent))
        return self

    def __exit__(self, *exc: object) -> None:
        self._behind.close(raise_errors=False)
        for run in self.runs:
            run.finish()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def create(self) -> DiskRun:
        assert self.folder is not None, "DiskRuns is used as a context manager"
        run = DiskRun(self.folder / f"run-{len(self.runs)}.arrow", self._behind)
        self.runs.append(run)
        return run

    @property
    def bytes_spilled(self) -> int:
        return sum(run.bytes for run in self.runs)
