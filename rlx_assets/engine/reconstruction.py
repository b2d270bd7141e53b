"""What reconstructing a day yields (`Reconstruction`): the strategy its data allowed, how the book
was seeded, the rows, the end state and the figures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from rlx_assets.engine.book_types import LEVELS

FULL_REPLAY = "full_replay"
SNAPSHOT_ANCHORED = "snapshot_anchored"
ORIGIN_TIME_SORT = "origin_time_sort"

SEED_PREVIOUS_STATE = "previous_book_state"
SEED_SNAPSHOT_BURST = "snapshot_burst"
SEED_VENDOR_SNAPSHOT = "vendor_snapshot"
SEED_EMPTY = "empty_book"


@dataclass
class Reconstruction:
    book: pa.Table
    state: pa.Table
    strategy: str = FULL_REPLAY
    seed: str = SEED_EMPTY
    messages: int = 0
    messages_before_seed: int = 0
    stats: dict[str, float | int | bool | str] = field(default_factory=dict)

    @property
    def cold_start(self) -> bool:
        return self.seed != SEED_PREVIOUS_STATE


def opening_burst(starts: np.ndarray, side_is_bid: np.ndarray) -> bool:
    """Does the first message carry a whole book (both sides, at least 20 levels each)?"""
    if starts.size < 2:
        return False
    first = side_is_bid[starts[0] : starts[1]]
    return int(first.sum()) >= LEVELS and int((~first).sum()) >= LEVELS
