"""Days without deltas: `snapshot_anchored` (the vendor snapshots are the book) and
`origin_time_sort` (no book data at all)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from rlx_assets.engine.book_tables import (
    STATE_SCHEMA,
    book_table,
    crossed_rows,
    level_names,
    matrix,
    price_names,
    size_names,
    state_table,
    table_digits,
)
from rlx_assets.engine.book_types import BookSide
from rlx_assets.engine.reconstruction import Reconstruction


def without_deltas(strategy: str, snapshots: pa.Table, day: dt.date | None) -> Reconstruction:
    """`snapshot_anchored`: the vendor snapshots are the book (crossing levels removed, counted);
    `origin_time_sort`: no book data at all, so no book rows and an empty end state (the next day
    starts cold rather than from a book nobody saw)."""
    price_digits = table_digits(snapshots, "price", price_names())
    size_digits = table_digits(snapshots, "size", size_names())
    matrices = {
        (side, kind): matrix(
            snapshots, level_names(side, kind), price_digits if kind == "price" else size_digits
        )
        for side in ("bid", "ask")
        for kind in ("price", "size")
    }
    rows = snapshots.num_rows
    repaired = np.zeros(rows, dtype=np.int32)
    bid_sizes, ask_sizes = matrices["bid", "size"], matrices["ask", "size"]
    bid_prices, ask_prices = matrices["bid", "price"], matrices["ask", "price"]
    for row in np.flatnonzero(
        (bid_sizes[:, 0] > 0) & (ask_sizes[:, 0] > 0) & (bid_prices[:, 0] >= ask_prices[:, 0])
    ):
        repaired[row] = _uncross_row(
            bid_prices[row], bid_sizes[row], ask_prices[row], ask_sizes[row]
        )
    levels = {"bid": (bid_prices, bid_sizes), "ask": (ask_prices, ask_sizes)}
    book = book_table(
        snapshots["origin_time"],
        snapshots["received_time"],
        snapshots["sequence_number"].to_numpy() if rows else np.zeros(0, np.int64),
        levels,
        price_digits,
        size_digits,
        resynced=np.zeros(rows, dtype=bool),
        repaired=repaired,
        # Each row is the vendor's snapshot itself.
        vendor_match=pa.array(np.ones(rows, dtype=bool)),
        deviation=pa.array(np.zeros(rows)),
    )
    last = rows - 1
    state = (
        state_table(
            BookSide(
                bid_prices[last][bid_sizes[last] > 0][::-1].copy(),
                bid_sizes[last][bid_sizes[last] > 0][::-1].copy(),
                np.full(int((bid_sizes[last] > 0).sum()), -1, dtype=np.int64),
            ),
            BookSide(
                ask_prices[last][ask_sizes[last] > 0][::-1].copy(),
                ask_sizes[last][ask_sizes[last] > 0][::-1].copy(),
                np.full(int((ask_sizes[last] > 0).sum()), -1, dtype=np.int64),
            ),
            price_digits,
            size_digits,
        )
        if rows
        else STATE_SCHEMA.empty_table()
    )
    result = Reconstruction(book=book, state=state, strategy=strategy, seed=strategy, messages=rows)
    result.stats = {
        "vendor_snapshots_compared": 0,
        "top20_matches": 0,
        "top20_match_share": 1.0,
        "gaps_detected": 0,
        "gaps_filled": 0,
        "sequence_id_gaps": 0,
        "gaps_detected_per_hour": [0] * 24 if day else [],
        "gaps_filled_per_hour": [0] * 24 if day else [],
        "stale_levels_repaired": int(repaired.sum()),
        "mid_deviation_max_bps": 0.0,
        "mid_deviation_p99_bps": 0.0,
        "crossed_books_published": crossed_rows(bid_prices, bid_sizes, ask_prices, ask_sizes),
        "end_depth_bids": int((bid_sizes[last] > 0).sum()) if rows else 0,
        "end_depth_asks": int((ask_sizes[last] > 0).sum()) if rows else 0,
    }
    return result


def _uncross_row(bid_prices, bid_sizes, ask_prices, ask_sizes) -> int:
    """Drop crossing best levels pairwise (a lone snapshot cannot tell which one is stale)."""
    removed = 0
    while bid_sizes[0] > 0 and ask_sizes[0] > 0 and bid_prices[0] >= ask_prices[0]:
        for prices, sizes in ((bid_prices, bid_sizes), (ask_prices, ask_sizes)):
            prices[:-1], sizes[:-1] = prices[1:].copy(), sizes[1:].copy()
            prices[-1], sizes[-1] = 0, 0
        removed += 2
    return removed
