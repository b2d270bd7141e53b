"""`run_partition` (the scripts' way to run a partition) runs the steps with the Definitions'
executor, as `dagster asset materialize` does, not one at a time."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from rlx_assets.pipeline import run_partition
from rlx_assets_tests.conftest import FIXTURE_DAYS, make_settings


def _step_windows(instance: DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            ends[event.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts}


def _overlapping_steps(tmp_path: Path, **settings) -> list[tuple[str, str]]:
    with DagsterInstance.ephemeral() as instance:
        result = run_partition(
            make_settings(tmp_path / "assets", **settings), instance, FIXTURE_DAYS[0], "BTC-USDT"
        )
        assert result.success
        windows = _step_windows(instance, result.run_id)
    assert {"raw_book_deltas", "reconstruct", "unified_events"} <= set(windows)
    return [
        (a, b)
        for (a, (a_start, a_end)), (b, (b_start, b_end)) in combinations(sorted(windows.items()), 2)
        if a_start < b_end and b_start < a_end
    ]


def test_a_partition_runs_ready_steps_side_by_side(tmp_path: Path) -> None:
    # The three raw tables are ready at once; two of them run together from the start.
    overlapping = _overlapping_steps(tmp_path)
    assert any(a.startswith("raw_") and b.startswith("raw_") for a, b in overlapping), overlapping


def test_the_in_process_executor_setting_runs_one_step_at_a_time(tmp_path: Path) -> None:
    assert _overlapping_steps(tmp_path, executor="in_process") == []
