"""One simulated origin day: the three tables of (exchange, symbol, date) from the market model and
the numba kernel, and the vendor's 20-level book table."""

from __future__ import annotations

import datetime as dt
import math
import threading
from functools import lru_cache

import numpy as np
import pyarrow as pa

from rlx_assets import schema
from rlx_assets.lake.synthetic import kernel
from rlx_assets.lake.synthetic.market import (
    DELTA_ROWS_PER_MESSAGE,
    FILLS_SIGMA,
    FIRST_FILL_MS,
    MESSAGES_PER_DAY,
    ROWS_MEDIAN,
    ROWS_SIGMA,
    SECONDS_PER_DAY,
    Instrument,
    as_date,
    day_anchor,
    day_start_ns,
    delays_ns,
    first_sequence,
    first_trade_id,
    instrument,
    intraday_activity,
    kernel_params,
    message_times,
    price_path,
    received_ns,
    seed_of,
    seeded_rng,
    sequence_steps,
    unit,
)


def book_table(
    inst: Instrument,
    origin: np.ndarray,
    received: np.ndarray,
    sequence: np.ndarray,
    snapshots: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> pa.Table:
    """The vendor `book` table from the kernel's snapshots (tick -1 = level absent = null)."""
    snap_msg, snap_tick, snap_lots = snapshots
    columns: dict[str, pa.Array] = {
        "origin_time": pa.array(origin[snap_msg]),
        "received_time": pa.array(received[snap_msg]),
        "sequence_number": pa.array(sequence[snap_msg]),
    }
    for level in range(kernel.LEVELS):
        for side, name in ((kernel.BID, "bid"), (kernel.ASK, "ask")):
            ticks = snap_tick[:, side, level]
            missing = ticks < 0
            columns[f"{name}_{level}_price"] = pa.array(inst.prices(ticks), mask=missing)
            lots = snap_lots[:, side, level]
            columns[f"{name}_{level}_size"] = pa.array(inst.sizes(lots), mask=missing)
    return pa.table(columns, schema=schema.SCHEMAS[schema.BOOK])


def _simulate(exchange: str, symbol: str, day: dt.date, scale: float) -> dict[str, pa.Table]:
    """One origin day: plan it in numpy, run the kernel, shape the three tables."""
    inst = instrument(symbol)
    next_day = day + dt.timedelta(days=1)
    open_book = day_anchor(exchange, symbol, day)
    close_book = day_anchor(exchange, symbol, next_day)
    rng = seeded_rng("day", exchange, symbol, day, repr(scale))

    activity = intraday_activity(exchange, symbol, day)
    volume = 0.95 + 0.05 * unit("volume", exchange, symbol, day)
    n_intraday = max(1, round(MESSAGES_PER_DAY * scale * volume))
    t_ms = message_times(activity, n_intraday, rng)
    n_msgs = t_ms.shape[0]
    msg_activity = activity[np.minimum(t_ms // 1000, SECONDS_PER_DAY - 1)]
    path = price_path(inst, open_book, close_book, t_ms, msg_activity, rng)

    # Rows per message: lognormal like Binance's depth messages, more when busy.
    busy = np.sqrt(msg_activity) / np.sqrt(msg_activity).mean()
    # The midnight messages (about twice the anchor book) come out of the day's row budget, so
    # the volume stays linear in `scale` down to small scales.
    anchor_rows = open_book.bid_ticks.shape[0] + open_book.ask_ticks.shape[0]
    budget = np.clip(1.0 - 2.0 * anchor_rows / (DELTA_ROWS_PER_MESSAGE * n_intraday), 0.5, 1.0)
    rows_wanted = ROWS_MEDIAN * np.exp(ROWS_SIGMA * rng.standard_normal(n_msgs)) * busy * budget
    rows_wanted = np.maximum(1, np.round(rows_wanted)).astype(np.int64)
    rows_wanted[[0, -1]] = 0

    # Fills: the day's exact count (ids continue across days), spread over messages by activity.
    first_trade = first_trade_id(exchange, symbol, day, scale)
    n_trades = first_trade_id(exchange, symbol, next_day, scale) - first_trade
    weight = msg_activity[1:] * np.exp(FILLS_SIGMA * rng.standard_normal(n_msgs - 1))
    fills = np.concatenate([[0], rng.multinomial(n_trades, weight / weight.sum())])
    fill_lo = np.maximum(np.maximum(t_ms - 99, FIRST_FILL_MS), np.roll(t_ms, 1) + 1)
    fill_lo[0] = 0

    depth = inst.depth_ticks
    lo = min(
        int(path.target_bid.min()), int(open_book.bid_ticks.min()), int(close_book.bid_ticks.min())
    )
    hi = max(
        int(path.target_ask.max()), int(open_book.ask_ticks.max()), int(close_book.ask_ticks.max())
    )
    lo = max(1, lo - depth - 64)
    n_cells = hi + depth + 64 - lo + 1
    params = kernel_params(inst, open_book.mid_ticks * inst.tick)
    seed = np.uint64(seed_of("kernel", exchange, symbol, day, repr(scale)))
    capacity = int(1.3 * rows_wanted.sum() + 2 * fills.sum() + 4 * anchor_rows + 20 * n_msgs)
    plan = (t_ms, fill_lo, path.target_bid, path.target_ask, path.direction, rows_wanted, fills)
    plan += (kernel.snapshot_mask(t_ms, n_msgs - 1),)
    while True:
        n_rows, rows, fill_rows, snapshots = kernel.simulate_day(
            lo, n_cells, plan, open_book.levels, close_book.levels, params, seed, capacity
        )
        if n_rows >= 0:
            break
        capacity *= 2
    row_msg, row_bid, row_tick, row_lots = (column[:n_rows] for column in rows)
    tr_time, tr_buy, tr_tick, tr_lots = fill_rows

    first_seq = first_sequence(exchange, symbol, day, scale)
    room = first_sequence(exchange, symbol, next_day, scale) - first_seq
    rows_per_msg = np.bincount(row_msg, minlength=n_msgs)
    sequence = first_seq + sequence_steps(rows_per_msg, room, rng)

    day_ns = day_start_ns(day)
    origin = day_ns + t_ms * 1_000_000
    delay = delays_ns(exchange, origin, rng)
    # The two midnight messages take the anchor's delay, so the reconciliation is received 1 ms
    # before the next day's opening burst (both are derived from that midnight's seed).
    delay[0] = open_book.latency_ns
    delay[-1] = close_book.latency_ns
    received = received_ns(origin, delay)

    deltas = pa.table(
        {
            "origin_time": origin[row_msg],
            "received_time": received[row_msg],
            "sequence_number": sequence[row_msg],
            "side_is_bid": row_bid,
            "price": inst.prices(row_tick),
            "size": inst.sizes(row_lots),
        },
        schema=schema.SCHEMAS[schema.BOOK_DELTAS],
    )
    book = book_table(inst, origin, received, sequence, snapshots)
    trade_origin = day_ns + tr_time * 1_000_000
    trades = pa.table(
        {
            "origin_time": trade_origin,
            "received_time": received_ns(trade_origin, delays_ns(exchange, trade_origin, rng)),
            "trade_id": first_trade + np.arange(tr_time.shape[0], dtype=np.int64),
            "price": inst.prices(tr_tick),
            "quantity": inst.sizes(tr_lots),
            "side": pa.DictionaryArray.from_arrays(
                pa.array(tr_buy.astype(np.int8)), pa.array(["sell", "buy"])
            ).cast(pa.string()),
        },
        schema=schema.SCHEMAS[schema.TRADES],
    )
    return {schema.TRADES: trades, schema.BOOK: book, schema.BOOK_DELTAS: deltas}


SIMULATING = threading.RLock()


@lru_cache(maxsize=4)
def _origin_day(exchange: str, symbol: str, day: dt.date, scale: float) -> dict[str, pa.Table]:
    # A raw partition reads the dt folders D-1, D and D+1 of each of three tables, which need the
    # origin days D-2 .. D+1: four days cached simulate each once (~2.2 GB a day at scale 1.0).
    return _simulate(exchange, symbol, day, scale)


def generate_origin_day(
    exchange: str, symbol: str, day: dt.date, scale: float
) -> dict[str, pa.Table]:
    """All rows whose origin_time lies in `day` (UTC), before filing by dt, per table.

    Rows are in receive order (received_time, then sequence_number / trade_id). Deterministic:
    the same arguments give identical tables in any process.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"synthetic://: scale must be a positive number, got {scale!r}")
    with SIMULATING:  # steps on threads (rlx_threads) wait for one simulation of a day
        return dict(_origin_day(exchange, symbol, as_date(day), float(scale)))
