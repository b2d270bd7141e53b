from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets.engine.merge import SpillReport, merge_sorted, sort_out_of_core

KEYS = ("time", "id")


def _stable_sort(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in KEYS]))


def _random_stream(rng: np.random.Generator, stream: int, rows: int) -> pa.Table:
    """Few distinct keys, so equal keys meet within and across streams and batches."""
    return pa.table(
        {
            "time": rng.integers(0, 4, rows),
            "id": rng.integers(0, 3, rows),
            "stream": np.full(rows, stream),
            "position": np.arange(rows),
        }
    )


def _batches(table: pa.Table, rows: int) -> list[pa.RecordBatch]:
    return table.to_batches(max_chunksize=rows)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("batch_rows", [1, 2, 7, 1000])
def test_merge_is_the_stable_sort_of_the_concatenation(seed: int, batch_rows: int) -> None:
    rng = np.random.default_rng(seed)
    streams = [
        _stable_sort(_random_stream(rng, stream, int(rng.integers(0, 30)))) for stream in range(4)
    ]
    merged = pa.concat_tables(
        merge_sorted([_batches(stream, batch_rows) for stream in streams], KEYS)
    )
    assert merged.equals(_stable_sort(pa.concat_tables(streams)))


def test_merge_of_nothing() -> None:
    assert list(merge_sorted([], KEYS)) == []
    empty = _random_stream(np.random.default_rng(0), 0, 0)
    assert list(merge_sorted([[empty], []], KEYS)) == []


def test_a_null_key_is_an_error() -> None:
    table = pa.table({"time": pa.array([1, None]), "id": [0, 0]})
    with pytest.raises(ValueError, match="nulls"):
        list(merge_sorted([[table]], KEYS))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(
    ("batch_rows", "run_rows", "merge_rows"), [(1, 1, 1), (3, 5, 2), (7, 20, 1000)]
)
def test_out_of_core_sort_is_stable(
    seed: int, batch_rows: int, run_rows: int, merge_rows: int, tmp_path: Path
) -> None:
    table = _random_stream(np.random.default_rng(seed), 0, 60)
    report = SpillReport()
    result = pa.concat_tables(
        sort_out_of_core(_batches(table, batch_rows), KEYS, tmp_path, run_rows, merge_rows, report)
    )
    assert result.equals(_stable_sort(table))
    run_batches = -(-run_rows // batch_rows)  # a run is cut between whole batches
    assert report.runs == -(-60 // (run_batches * batch_rows)) and report.bytes > 0
    assert not any(tmp_path.iterdir())


def test_one_run_is_sorted_in_memory(tmp_path: Path) -> None:
    table = _random_stream(np.random.default_rng(1), 0, 60)
    report = SpillReport()
    result = pa.concat_tables(sort_out_of_core(_batches(table, 7), KEYS, tmp_path, 100, 10, report))
    assert result.equals(_stable_sort(table))
    assert report == SpillReport() and not any(tmp_path.iterdir())
