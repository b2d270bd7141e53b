"""Full-depth limit order book replay: compiled kernels over preallocated buffers.

Prices and sizes are int64 at a fixed decimal scale. After every exchange message (all delta rows
sharing a `sequence_number`) the replay:
1. repairs stale crossing levels: while best bid >= best ask, the level updated less recently
   (older `sequence_number` stamp) is stale and removed;
2. compares the rebuilt top 20 with the vendor snapshot of the same sequence number, when there is
   one, and resyncs the snapshot's price range from it when they disagree;
3. emits the top 20 levels of each side.

Two kernels do it with the same output: `dense_book` (a cell per price step over a window of
prices; the usual one) and `sorted_book` (sorted arrays; any price range, and the dense kernel's
fallback).
"""

from __future__ import annotations

from rlx_assets.engine.book_types import BookSide, ReplayInput, ReplayOutput
from rlx_assets.engine.dense_book import replay_dense
from rlx_assets.engine.sorted_book import replay_sorted


def replay(data: ReplayInput, bids: BookSide, asks: BookSide, kernel: str = "auto") -> ReplayOutput:
    """Replay every message of `data` onto the book (bids, asks); inputs are left untouched.

    `kernel`: "dense" (a cell per price step; fast when the day's prices span a moderate grid),
    "sorted" (sorted arrays; any price range), or "auto" (dense when it fits). Same output.
    """
    if kernel in ("auto", "dense"):
        out = replay_dense(data, bids, asks)
        if out is not None:
            return out
        if kernel == "dense":
            raise ValueError("the day's prices span too many grid steps for the dense kernel")
    return replay_sorted(data, bids, asks)
