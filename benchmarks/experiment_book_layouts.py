"""Experiment (not a benchmark users run): three layouts of a book side raced on the same rows:
sorted arrays, a dense tick grid, and a dense grid with an occupancy bitmap. It decided the dense
kernel of `rlx_assets.engine.dense_book`; `bench_reconstruct.py --profile` runs it again.

    .venv/bin/python benchmarks/bench_reconstruct.py --scale 0.2 --profile
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlx_assets.engine.book import replay
from rlx_assets.engine.book_types import LEVELS, BookSide, ReplayInput, message_starts
from rlx_assets.engine.decimals import infer_step_exponent, scale_floats

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "binance-spot-btcusdt"


@numba.njit(cache=False)
def _sorted_kernel(starts, side_is_bid, prices, sizes, record, moved, depth, kind, out):
    """The engine's layout (sorted keys, best last) minus its checks: apply, then emit top 20.

    With `record`, per row: elements shifted, levels between the row's price and the best, and
    kind (0 size change, 1 insert, 2 delete, 3 delete of an absent level).
    """
    capacity = 1 << 20  # levels per side; a real day's book holds a few thousand
    keys = np.empty((2, capacity), dtype=np.int64)
    level_sizes = np.empty((2, capacity), dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)
    messages = starts.size - 1
    for message in range(messages):
        for row in range(starts[message], starts[message + 1]):
            side = 0 if side_is_bid[row] else 1
            key = prices[row] if side == 0 else -prices[row]
            count = counts[side]
            low, high = 0, count
            while low < high:
                middle = (low + high) >> 1
                if keys[side, middle] < key:
                    low = middle + 1
                else:
                    high = middle
            index = low
            found = index < count and keys[side, index] == key
            shift = 0
            if found and sizes[row] == 0:
                shift = count - 1 - index
                for move in range(index, count - 1):
                    keys[side, move] = keys[side, move + 1]
                    level_sizes[side, move] = level_sizes[side, move + 1]
                counts[side] = count - 1
                row_kind = 2
            elif found:
                level_sizes[side, index] = sizes[row]
                row_kind = 0
            elif sizes[row] == 0:
                row_kind = 3
            else:
                shift = count - index
                for move in range(count, index, -1):
                    keys[side, move] = keys[side, move - 1]
                    level_sizes[side, move] = level_sizes[side, move - 1]
                keys[side, index] = key
                level_sizes[side, index] = sizes[row]
                counts[side] = count + 1
                row_kind = 1
            if record:
                moved[row] = shift
                depth[row] = count - index - (1 if found else 0)
                kind[row] = row_kind
        for side in range(2):
            for level in range(LEVELS):
                index = counts[side] - 1 - level
                out[message, side, level, 0] = keys[side, index] if index >= 0 else 0
                out[message, side, level, 1] = level_sizes[side, index] if index >= 0 else 0
    return counts


@numba.njit(cache=False)
def _dense_kernel(starts, side_is_bid, ticks, sizes, bid, ask, out, scanned):
    """Prototype: one size array per side indexed by tick (0 = lowest price of the day).

    Apply is O(1) at any depth; the best moves by a scan when its level empties; emitting the top
    20 scans ticks outward from the best until 20 non-empty levels (counted in `scanned`).
    """
    span = bid.size
    best_bid, best_ask = -1, span
    messages = starts.size - 1
    for message in range(messages):
        for row in range(starts[message], starts[message + 1]):
            tick, size = ticks[row], sizes[row]
            if side_is_bid[row]:
                bid[tick] = size
                if size > 0 and tick > best_bid:
                    best_bid = tick
                elif size == 0 and tick == best_bid:
                    while best_bid >= 0 and bid[best_bid] == 0:
                        best_bid -= 1
            else:
                ask[tick] = size
                if size > 0 and tick < best_ask:
                    best_ask = tick
                elif size == 0 and tick == best_ask:
                    while best_ask < span and ask[best_ask] == 0:
                        best_ask += 1
        level, tick = 0, best_bid
        while level < LEVELS and tick >= 0:
            if bid[tick] > 0:
                out[message, 0, level, 0] = tick
                out[message, 0, level, 1] = bid[tick]
                level += 1
            tick -= 1
        scanned[message] = best_bid - tick
        level, tick = 0, best_ask
        while level < LEVELS and tick < span:
            if ask[tick] > 0:
                out[message, 1, level, 0] = tick
                out[message, 1, level, 1] = ask[tick]
                level += 1
            tick += 1
        scanned[message] += tick - best_ask
    return best_bid, best_ask


@numba.njit(cache=False)
def _high_bit(word):
    """Index of the highest set bit of a non-zero uint64."""
    index = 0
    for shift in (32, 16, 8, 4, 2, 1):
        if word >> np.uint64(shift):
            word >>= np.uint64(shift)
            index += shift
    return index


@numba.njit(cache=False)
def _low_bit(word):
    """Index of the lowest set bit of a non-zero uint64."""
    return _high_bit(word & (~word + np.uint64(1)))


@numba.njit(cache=False)
def _below(occupied, tick):
    """Highest occupied tick < tick, or -1 (one bit per tick, 64 per word)."""
    if tick <= 0:
        return -1
    tick -= 1
    word = tick >> 6
    bits = occupied[word] & (np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(63 - (tick & 63)))
    while bits == 0:
        word -= 1
        if word < 0:
            return -1
        bits = occupied[word]
    return (word << 6) + _high_bit(bits)


@numba.njit(cache=False)
def _above(occupied, tick, span):
    """Lowest occupied tick > tick, or span."""
    tick += 1
    if tick >= span:
        return span
    word = tick >> 6
    bits = occupied[word] & (np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(tick & 63))
    while bits == 0:
        word += 1
        if word >= occupied.size:
            return span
        bits = occupied[word]
    return (word << 6) + _low_bit(bits)


@numba.njit(cache=False)
def _bitmap_kernel(starts, side_is_bid, ticks, sizes, bid, ask, bid_bits, ask_bits, out):
    """Prototype: the dense tick array plus one occupancy bit per tick, so the next level is a
    few word reads away however sparse the book; apply O(1), emit O(20 + empty words)."""
    span = bid.size
    best_bid, best_ask = -1, span
    for message in range(starts.size - 1):
        for row in range(starts[message], starts[message + 1]):
            tick, size = ticks[row], sizes[row]
            bit = np.uint64(1) << np.uint64(tick & 63)
            if side_is_bid[row]:
                bid[tick] = size
                if size > 0:
                    bid_bits[tick >> 6] |= bit
                    best_bid = max(best_bid, tick)
                else:
                    bid_bits[tick >> 6] &= ~bit
                    if tick == best_bid:
                        best_bid = _below(bid_bits, tick)
            else:
                ask[tick] = size
                if size > 0:
                    ask_bits[tick >> 6] |= bit
                    best_ask = min(best_ask, tick)
                else:
                    ask_bits[tick >> 6] &= ~bit
                    if tick == best_ask:
                        best_ask = _above(ask_bits, tick, span)
        level, tick = 0, best_bid
        while level < LEVELS and tick >= 0:
            out[message, 0, level, 0] = tick
            out[message, 0, level, 1] = bid[tick]
            level += 1
            tick = _below(bid_bits, tick)
        level, tick = 0, best_ask
        while level < LEVELS and tick < span:
            out[message, 1, level, 0] = tick
            out[message, 1, level, 1] = ask[tick]
            level += 1
            tick = _above(ask_bits, tick, span)
    return best_bid, best_ask


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def timed(kernel, *arguments) -> float:
    started = time.perf_counter()
    kernel(*arguments)
    return time.perf_counter() - started


def _same_books(sorted_out: np.ndarray, dense_out: np.ndarray, low: int, tick: int) -> bool:
    """The sorted copy's top 20 (keys: bid price, -ask price) against a dense one's (ticks)."""
    for side, sign in ((0, 1), (1, -1)):
        present = sorted_out[:, side, :, 1] > 0
        as_ticks = np.where(present, (sorted_out[:, side, :, 0] * sign - low) // tick, 0)
        if not np.array_equal(as_ticks, np.where(present, dense_out[:, side, :, 0], 0)):
            return False
        if not np.array_equal(sorted_out[:, side, :, 1], dense_out[:, side, :, 1]):
            return False
    return True


def profile_layouts(starts, side_is_bid, prices, sizes, skip_rows: int = 0) -> dict[str, Any]:
    """Where replay time goes in the sorted layout, and what dense layouts would take instead.

    Each layout applies the same rows and emits the top 20 after every message (no resyncs, no
    stale-level repair: the prototypes measure the book structure alone). Statistics skip the
    first `skip_rows` (an opening snapshot burst).
    """
    rows, messages = prices.size, starts.size - 1
    out = np.zeros((messages, 2, LEVELS, 2), dtype=np.int64)
    moved = np.zeros(rows, dtype=np.int64)
    depth = np.zeros(rows, dtype=np.int64)
    kind = np.zeros(rows, dtype=np.int8)
    head = min(1000, messages)  # JIT warm-up on the first messages
    warm = slice(0, int(starts[head]))
    warm_rows = (side_is_bid[warm], prices[warm], sizes[warm])
    _sorted_kernel(starts[: head + 1], *warm_rows, False, moved, depth, kind, out)
    sorted_seconds = timed(
        _sorted_kernel, starts, side_is_bid, prices, sizes, False, moved, depth, kind, out
    )
    _sorted_kernel(starts, side_is_bid, prices, sizes, True, moved, depth, kind, out)
    moved, depth, kind = moved[skip_rows:], depth[skip_rows:], kind[skip_rows:]
    kinds = ("size_change", "insert", "delete", "delete_absent")
    result: dict[str, Any] = {
        "rows": int(rows),
        "messages": int(messages),
        "sorted_seconds": sorted_seconds,
        "kinds": {name: _share(kind == code) for code, name in enumerate(kinds)},
        "depth_percentiles": {str(q): float(np.percentile(depth, q)) for q in (50, 90, 99, 99.9)},
        "rows_deeper_than": {str(d): _share(depth >= d) for d in (20, 100, 1000)},
        "moved_per_row": float(moved.mean()),
        "moved_share_from_rows_deeper_than_100": float(
            moved[depth >= 100].sum() / max(1, moved.sum())
        ),
    }
    tick = int(np.gcd.reduce(np.diff(np.unique(prices)))) if rows > 1 else 1
    low = int(prices.min())
    span = int((int(prices.max()) - low) // tick + 1)
    result.update(tick=tick, price_span_ticks=span)
    if span > 50_000_000:  # 16 bytes per tick and side
        return result
    ticks = (prices - low) // tick
    scanned = np.zeros(messages, dtype=np.int64)
    books = {}
    for name in ("dense", "bitmap"):
        started = time.perf_counter()
        bid, ask = np.zeros(span, dtype=np.int64), np.zeros(span, dtype=np.int64)
        bits = [np.zeros((span + 63) >> 6, dtype=np.uint64) for _ in range(2)]
        bid[:], ask[:] = 0, 0  # touch every page: allocation is a one-off, timed apart
        allocate = time.perf_counter() - started
        books[name] = np.zeros_like(out)
        if name == "dense":
            arguments = (starts, side_is_bid, ticks, sizes, bid, ask, books[name], scanned)
            kernel = _dense_kernel
        else:
            arguments = (starts, side_is_bid, ticks, sizes, bid, ask, *bits, books[name])
            kernel = _bitmap_kernel
        kernel(*arguments)  # JIT warm-up (the run itself: arrays are rebuilt below)
        bid[:], ask[:] = 0, 0
        for array in bits:
            array[:] = 0
        result[f"{name}_seconds"] = timed(kernel, *arguments)
        result[f"{name}_allocate_seconds"] = allocate
    result["dense_ticks_scanned_per_message"] = float(scanned[1:].mean()) if messages > 1 else 0.0
    result["dense_matches_sorted"] = _same_books(out, books["dense"], low, tick)
    result["bitmap_matches_sorted"] = _same_books(out, books["bitmap"], low, tick)
    return result


def fixture_arrays(folder: Path = FIXTURE):
    """The real fixture's delta rows (both dt files, in sequence order) as engine arrays."""
    files = sorted((folder / "book_delta_v2").glob("**/*.parquet"))
    if not files:
        return None
    table = pa.concat_tables([pq.read_table(f) for f in files])
    table = table.sort_by([("sequence_number", "ascending")])
    columns = {}
    for name in ("price", "size"):
        values = table[name].to_numpy()
        columns[name] = scale_floats(values, infer_step_exponent(values)).ints
    starts = message_starts(table["sequence_number"].to_numpy())
    side_is_bid = table["side_is_bid"].to_numpy(zero_copy_only=False)
    return starts, side_is_bid, columns["price"], columns["size"]


def fixture_kernels(starts, side_is_bid, prices, sizes, repeat: int = 3) -> dict[str, Any]:
    """The engine's two kernels on the real fixture's rows after its opening REST snapshot,
    from the book that snapshot leaves, as one chunk (no vendor snapshots: replay only): the
    window kernel (`dense`) against the sorted one, best of `repeat`, and whether they agree."""

    def piece(first: int, last: int) -> ReplayInput:
        rows = slice(int(starts[first]), int(starts[last]))
        matrix = np.zeros((0, LEVELS), dtype=np.int64)
        return ReplayInput(
            message_starts=starts[first : last + 1] - starts[first],
            sequence_numbers=np.arange(first, last, dtype=np.int64),
            side_is_bid=side_is_bid[rows],
            prices=prices[rows],
            sizes=sizes[rows],
            snapshot_of_message=np.full(last - first, -1, dtype=np.int64),
            snapshot_bid_prices=matrix,
            snapshot_bid_sizes=matrix,
            snapshot_ask_prices=matrix,
            snapshot_ask_sizes=matrix,
        )

    empty = BookSide.empty()
    opening = replay(piece(0, 1), empty, empty, kernel="sorted")
    rest = piece(1, starts.size - 1)
    seconds, outputs = {}, {}
    for kernel in ("sorted", "dense"):
        replay(rest, opening.bids, opening.asks, kernel=kernel)  # JIT / cache load
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            outputs[kernel] = replay(rest, opening.bids, opening.asks, kernel=kernel)
            runs.append(time.perf_counter() - started)
        seconds[kernel] = min(runs)
    same = all(
        np.array_equal(getattr(outputs["sorted"], name), getattr(outputs["dense"], name))
        for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes", "repaired_levels")
    )
    rows = int(rest.prices.size)
    return {
        "rows": rows,
        "book_levels": [int(opening.bids.prices.size), int(opening.asks.prices.size)],
        "sorted_rows_per_s": rows / seconds["sorted"],
        "window_rows_per_s": rows / seconds["dense"],
        "same_output": same,
    }
