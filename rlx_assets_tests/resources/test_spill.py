from pathlib import Path

import pyarrow as pa
import pytest

from rlx_assets.engine.runs import RUN_BATCH_ROWS, MemoryRun
from rlx_assets.resources.spill import DiskRuns


def _rows(first: int, count: int) -> pa.Table:
    ids = pa.array(range(first, first + count), pa.int64())
    return pa.table({"id": ids, "price": pa.array([i / 4 for i in range(count)]), "side": ids})


def test_a_run_on_disk_gives_back_its_rows_whole_or_only_the_columns_asked_for(
    tmp_path: Path,
) -> None:
    tables = [_rows(0, RUN_BATCH_ROWS + 5), _rows(10**6, 7)]
    memory = MemoryRun()
    with DiskRuns(tmp_path) as store:
        disk = store.create()
        for table in tables:
            disk.write(table)
            memory.write(table)
        disk.finish()
        whole = pa.concat_tables(tables)
        for run in (disk, memory):
            assert pa.concat_tables(run.batches()).equals(whole)
            asked = pa.concat_tables(run.batches(["side", "id"]))  # not in the file's order
            assert asked.equals(whole.select(["side", "id"]))
            assert all(batch.num_rows <= RUN_BATCH_ROWS for batch in run.batches(["id"]))
        with pytest.raises(KeyError, match="no column"):
            list(disk.batches(["id", "volume"]))
