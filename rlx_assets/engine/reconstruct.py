"""A day of raw deltas and vendor snapshots in, the reconstructed book and end-of-day state out.

The `full_replay` strategy: every delta message is replayed (see `book.py`), starting from the
previous day's full-depth state when there is one (exact continuity across midnight), else from the
day's opening snapshot burst or its first vendor snapshot (`cold_start`).
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from rlx_assets.engine.day_replay import full_replay
from rlx_assets.engine.reconstruction import (
    FULL_REPLAY,
    ORIGIN_TIME_SORT,
    SNAPSHOT_ANCHORED,
    Reconstruction,
)
from rlx_assets.engine.without_deltas import without_deltas


def choose_strategy(delta_rows: int, snapshot_rows: int) -> str:
    """What the data offers: deltas to replay, else vendor snapshots as the clock, else time."""
    if delta_rows:
        return FULL_REPLAY
    if snapshot_rows:
        return SNAPSHOT_ANCHORED
    return ORIGIN_TIME_SORT


def reconstruct_day(
    deltas: pa.Table,
    snapshots: pa.Table,
    previous_state: pa.Table | None,
    day: dt.date | None = None,
) -> Reconstruction:
    """One day's book by the strategy its data allows (raw assets, sorted by sequence_number)."""
    strategy = choose_strategy(deltas.num_rows, snapshots.num_rows)
    if strategy != FULL_REPLAY:
        return without_deltas(strategy, snapshots, day)
    return full_replay(deltas, snapshots, previous_state, day)
