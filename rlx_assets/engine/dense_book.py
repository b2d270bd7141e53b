"""The same replay as `book.py` on a dense price grid: one cell per price step, both sides.

An update is O(1) array indexing instead of a sorted insert that shifts every deeper level;
finding the next best level after the best is removed, and the top 20, walk only the cells
between levels near the top. The grid covers a window of prices (what a chunk touches, and the
book near the touch), not the whole book: a real opening snapshot reaches millions of ticks from
the mid. `book.replay` picks this kernel when the window fits in memory.
Semantics (stale-level repair, vendor resync, cold-start seed) are exactly those of `book.py`.
"""

from __future__ import annotations

import numba
import numpy as np

from rlx_assets.engine.book_types import (
    LEVELS,
    BookSide,
    empty_output,
    message_arrays,
    output_buffers,
    snapshot_matrices,
)
from rlx_assets.engine.dense_window import candidate_windows, price_grid
from rlx_assets.engine.sorted_book import replay_sorted

DONE = 0
NEEDS_FAR_LEVELS = 1  # a side's window ran short of 20 levels while levels lay beyond it


@numba.njit(cache=True, nogil=True)
def _next_bid(sizes, start):
    """Highest cell at or below `start` with a level, or -1."""
    cell = start
    while cell >= 0 and sizes[cell] == 0:
        cell -= 1
    return cell


@numba.njit(cache=True, nogil=True)
def _next_ask(sizes, start):
    cell = start
    cells = sizes.shape[0]
    while cell < cells and sizes[cell] == 0:
        cell += 1
    return cell


@numba.njit(cache=True, nogil=True)
def _far_apply(keys, sizes, stamps, count, key, size, stamp):
    """Set, insert or remove one level in ascending `keys[:count]`; returns the new count."""
    position = np.searchsorted(keys[:count], key)
    found = position < count and keys[position] == key
    if size == 0:
        if found:
            keys[position : count - 1] = keys[position + 1 : count]
            sizes[position : count - 1] = sizes[position + 1 : count]
            stamps[position : count - 1] = stamps[position + 1 : count]
            count -= 1
    elif found:
        sizes[position] = size
        stamps[position] = stamp
    else:
        keys[position + 1 : count + 1] = keys[position:count].copy()
        sizes[position + 1 : count + 1] = sizes[position:count].copy()
        stamps[position + 1 : count + 1] = stamps[position:count].copy()
        keys[position] = key
        sizes[position] = size
        stamps[position] = stamp
        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _replay_dense(messages, snapshots, force_resync_message, prices, far_bid, far_ask, grid, out):
    (
        message_starts,
        sequence_numbers,
        side_is_bid,
        cells_of_rows,
        sizes,
        snapshot_of_message,
    ) = messages
    snap_bid_cells, snap_bid_sizes, snap_ask_cells, snap_ask_sizes = snapshots
    far_bid_keys, far_bid_sizes, far_bid_stamps, far_bids = far_bid
    far_ask_keys, far_ask_sizes, far_ask_stamps, far_asks = far_ask
    bid_sizes, bid_stamps, ask_sizes, ask_stamps = grid
    (
        out_bid_cells,
        out_bid_sizes,
        out_ask_cells,
        out_ask_sizes,
        out_resynced,
        out_repaired,
        out_checked,
        out_match,
        out_mid_cells,
    ) = out
    cells = bid_sizes.shape[0]
    bid_count = 0
    ask_count = 0
    for cell in range(cells):
        if bid_sizes[cell] > 0:
            bid_count += 1
        if ask_sizes[cell] > 0:
            ask_count += 1
    best_bid = _next_bid(bid_sizes, cells - 1)
    best_ask = _next_ask(ask_sizes, 0)

    for message in range(sequence_numbers.shape[0]):
        stamp = sequence_numbers[message]
        for row in range(message_starts[message], message_starts[message + 1]):
            cell = cells_of_rows[row]
            size = sizes[row]
            if cell < 0 or cell >= cells:
                # Beyond the window: a deep level, kept in a small sorted side array (bids by
                # price, asks by -price). One on the touch's side of the window is not deep.
                if side_is_bid[row]:
                    if cell >= 0:
                        return NEEDS_FAR_LEVELS, far_bids, far_asks
                    far_bids = _far_apply(
                        far_bid_keys,
                        far_bid_sizes,
                        far_bid_stamps,
                        far_bids,
                        prices[row],
                        size,
                        stamp,
                    )
                else:
                    if cell < 0:
                        return NEEDS_FAR_LEVELS, far_bids, far_asks
                    far_asks = _far_apply(
                        far_ask_keys,
                        far_ask_sizes,
                        far_ask_stamps,
                        far_asks,
                        -prices[row],
                        size,
                        stamp,
                    )
                continue
            if side_is_bid[row]:
                if size == 0:
                    if bid_sizes[cell] > 0:
                        bid_sizes[cell] = 0
                        bid_count -= 1
                        if cell == best_bid:
                            best_bid = _next_bid(bid_sizes, cell) if bid_count else -1
                else:
                    if bid_sizes[cell] == 0:
                        bid_count += 1
                    bid_sizes[cell] = size
                    bid_stamps[cell] = stamp
                    if cell > best_bid:
                        best_bid = cell
            else:
                if size == 0:
                    if ask_sizes[cell] > 0:
                        ask_sizes[cell] = 0
                        ask_count -= 1
                        if cell == best_ask:
                            best_ask = _next_ask(ask_sizes, cell) if ask_count else cells
                else:
                    if ask_sizes[cell] == 0:
                        ask_count += 1
                    ask_sizes[cell] = size
                    ask_stamps[cell] = stamp
                    if cell < best_ask:
                        best_ask = cell

        repaired = 0
        while bid_count > 0 and ask_count > 0 and best_bid >= best_ask:
            if bid_stamps[best_bid] < ask_stamps[best_ask]:
                bid_sizes[best_bid] = 0
                bid_count -= 1
                best_bid = _next_bid(bid_sizes, best_bid) if bid_count else -1
            elif ask_stamps[best_ask] < bid_stamps[best_bid]:
                ask_sizes[best_ask] = 0
                ask_count -= 1
                best_ask = _next_ask(ask_sizes, best_ask) if ask_count else cells
            else:
                break
            repaired += 1

        snapshot = snapshot_of_message[message]
        out_resynced[message] = False
        out_mid_cells[message] = np.nan
        out_checked[message] = snapshot >= 0
        out_match[message] = False
        # Emit first; the vendor comparison reads the emitted row (no second walk), and the row
        # is emitted again only when a resync or a final uncrossing changed the book.
        if not _emit(
            message,
            (best_bid, best_ask),
            (bid_count, ask_count),
            (far_bids, far_asks),
            grid,
            out,
        ):
            return NEEDS_FAR_LEVELS, far_bids, far_asks
        changed = bid_count > 0 and ask_count > 0 and best_bid >= best_ask
        if snapshot >= 0:
            matched = True
            for level in range(LEVELS):
                if _level_differs(
                    out_bid_sizes[message, level],
                    snap_bid_sizes[snapshot, level],
                    out_bid_cells[message, level],
                    snap_bid_cells[snapshot, level],
                ) or _level_differs(
                    out_ask_sizes[message, level],
                    snap_ask_sizes[snapshot, level],
                    out_ask_cells[message, level],
                    snap_ask_cells[snapshot, level],
                ):
                    matched = False
                    break
            out_match[message] = matched
            if (
                bid_count > 0
                and ask_count > 0
                and snap_bid_sizes[snapshot, 0] > 0
                and snap_ask_sizes[snapshot, 0] > 0
            ):
                # In cells; the caller turns it into basis points of the vendor mid.
                out_mid_cells[message] = abs(
                    0.5 * (best_bid + best_ask)
                    - 0.5 * (snap_bid_cells[snapshot, 0] + snap_ask_cells[snapshot, 0])
                )
            if not matched or message == force_resync_message:
                changed = True
                # Bids: the vendor's range (or the whole side when it shows fewer levels).
                depth = 0
                while depth < LEVELS and snap_bid_sizes[snapshot, depth] > 0:
                    depth += 1
                if depth < LEVELS and far_bids:
                    return NEEDS_FAR_LEVELS, far_bids, far_asks  # the whole side, far levels too
                floor = snap_bid_cells[snapshot, LEVELS - 1] if depth == LEVELS else 0
                cell = best_bid
                while bid_count > 0 and cell >= floor:
                    if bid_sizes[cell] > 0:
                        bid_sizes[cell] = 0
                        bid_count -= 1
                    cell -= 1
                for level in range(depth):
                    cell = snap_bid_cells[snapshot, level]
                    bid_sizes[cell] = snap_bid_sizes[snapshot, level]
                    bid_stamps[cell] = stamp
                    bid_count += 1
                # Everything at or above the floor was cleared, so the vendor's best is the best.
                best_bid = snap_bid_cells[snapshot, 0] if depth else -1
                depth = 0
                while depth < LEVELS and snap_ask_sizes[snapshot, depth] > 0:
                    depth += 1
                if depth < LEVELS and far_asks:
                    return NEEDS_FAR_LEVELS, far_bids, far_asks
                ceiling = snap_ask_cells[snapshot, LEVELS - 1] if depth == LEVELS else cells - 1
                cell = best_ask
                while ask_count > 0 and cell <= ceiling:
                    if ask_sizes[cell] > 0:
                        ask_sizes[cell] = 0
                        ask_count -= 1
                    cell += 1
                for level in range(depth):
                    cell = snap_ask_cells[snapshot, level]
                    ask_sizes[cell] = snap_ask_sizes[snapshot, level]
                    ask_stamps[cell] = stamp
                    ask_count += 1
                best_ask = snap_ask_cells[snapshot, 0] if depth else cells
                out_resynced[message] = not matched

        while bid_count > 0 and ask_count > 0 and best_bid >= best_ask:
            bid_sizes[best_bid] = 0
            bid_count -= 1
            best_bid = _next_bid(bid_sizes, best_bid) if bid_count else -1
            ask_sizes[best_ask] = 0
            ask_count -= 1
            best_ask = _next_ask(ask_sizes, best_ask) if ask_count else cells
            repaired += 2
        out_repaired[message] = repaired
        if changed and not _emit(
            message,
            (best_bid, best_ask),
            (bid_count, ask_count),
            (far_bids, far_asks),
            grid,
            out,
        ):
            return NEEDS_FAR_LEVELS, far_bids, far_asks
    return DONE, far_bids, far_asks


@numba.njit(cache=True, nogil=True, inline="always")
def _level_differs(size, vendor_size, cell, vendor_cell):
    """Does an emitted level differ from the vendor's: present on one side only, or at another
    price or size?"""
    if (size > 0) != (vendor_size > 0):
        return True
    return size > 0 and (size != vendor_size or cell != vendor_cell)


@numba.njit(cache=True, nogil=True)
def _emit(message, best, counts, far_counts, grid, out):
    """The top 20 of each side into row `message` (cell 0 and size 0 past the last level);
    False, writing nothing, when a side's top 20 would reach levels beyond the window.
    `best`, `counts`, `far_counts`: (bid, ask) pairs; `grid` and `out` as the kernel takes them."""
    best_bid, best_ask = best
    bid_count, ask_count = counts
    far_bids, far_asks = far_counts
    bid_sizes, _, ask_sizes, _ = grid
    out_bid_cells, out_bid_sizes, out_ask_cells, out_ask_sizes = out[0], out[1], out[2], out[3]
    if (bid_count < LEVELS and far_bids) or (ask_count < LEVELS and far_asks):
        return False
    cells = bid_sizes.shape[0]
    cell = best_bid
    for level in range(LEVELS):
        if bid_count > 0 and level < bid_count and cell >= 0:
            out_bid_cells[message, level] = cell
            out_bid_sizes[message, level] = bid_sizes[cell]
            cell = _next_bid(bid_sizes, cell - 1)
        else:
            out_bid_cells[message, level] = 0
            out_bid_sizes[message, level] = 0
    cell = best_ask
    for level in range(LEVELS):
        if ask_count > 0 and level < ask_count and cell < cells:
            out_ask_cells[message, level] = cell
            out_ask_sizes[message, level] = ask_sizes[cell]
            cell = _next_ask(ask_sizes, cell + 1)
        else:
            out_ask_cells[message, level] = 0
            out_ask_sizes[message, level] = 0
    return True


def replay_dense(data, bids, asks):
    """`book.replay` on a dense grid over a window of prices; None when even the narrowest
    window spans too many grid steps.

    The window holds what a chunk mostly touches (see `candidate_windows`): rows and levels
    beyond it (a REST snapshot and Binance's diff stream reach millions of ticks from the mid)
    live in small sorted arrays inside the kernel and join the book again afterwards. Should a
    side run short of 20 levels inside the window while levels wait beyond it, or a row land
    beyond the window on the touch's side, the chunk is replayed by the sorted kernel instead.
    """
    messages = message_arrays(data)
    prices, side_is_bid = messages.prices, messages.side_is_bid
    snapshot_prices = [
        np.asarray(data.snapshot_bid_prices)[np.asarray(data.snapshot_bid_sizes) > 0],
        np.asarray(data.snapshot_ask_prices)[np.asarray(data.snapshot_ask_sizes) > 0],
    ]
    grid = None
    every_row = (int(prices.min()), int(prices.max())) if prices.size else (0, 0)
    for low, high, limit in candidate_windows(data, bids, asks, snapshot_prices, LEVELS):
        near_bids = bids.prices >= low  # a suffix: bids ascend
        near_asks = asks.prices <= high  # a suffix: asks descend
        all_inside = low <= every_row[0] and every_row[1] <= high
        inside = prices if all_inside else prices[(prices >= low) & (prices <= high)]
        grid = price_grid(
            [inside, *snapshot_prices, bids.prices[near_bids], asks.prices[near_asks]]
        )
        if grid is not None and grid[2] <= limit:
            break
        grid = None
    if grid is None:
        return None
    base, step, cells = grid
    if prices.size:
        # The window is what the grid holds (prices inside may all lie below `high`).
        low, high = base, base + (cells - 1) * step

    def to_cells(values: np.ndarray) -> np.ndarray:
        offsets = np.asarray(values, dtype=np.int64) - base
        return offsets if step == 1 else offsets // step

    side_arrays = []
    for side, near in ((bids, near_bids), (asks, near_asks)):
        grid_sizes = np.zeros(cells, dtype=np.int64)
        grid_stamps = np.zeros(cells, dtype=np.int64)
        grid_sizes[to_cells(side.prices[near])] = side.sizes[near]
        grid_stamps[to_cells(side.prices[near])] = side.stamps[near]
        side_arrays += [grid_sizes, grid_stamps]
    row_cells = to_cells(prices)
    if all_inside:
        below = above = np.zeros(prices.size, dtype=np.bool_)
    else:
        below, above = prices < low, prices > high
        row_cells[below], row_cells[above] = -1, cells
    far_arrays = []
    for keys, side, near, beyond in (
        (bids.prices, bids, near_bids, below & side_is_bid),
        (-asks.prices, asks, near_asks, above & ~side_is_bid),
    ):
        count = int((~near).sum())
        capacity = count + (0 if all_inside else int(beyond.sum()))
        arrays = [np.zeros(capacity, dtype=np.int64) for _ in range(3)]
        arrays[0][:count], arrays[1][:count] = keys[~near], side.sizes[~near]
        arrays[2][:count] = side.stamps[~near]
        far_arrays += [*arrays, count]
    out = empty_output(data, bids, asks)  # prices hold cells until converted below
    snapshots = snapshot_matrices(data)
    snapshots = snapshots._replace(
        bid_prices=np.where(snapshots.bid_sizes > 0, to_cells(snapshots.bid_prices), 0),
        ask_prices=np.where(snapshots.ask_sizes > 0, to_cells(snapshots.ask_prices), 0),
    )
    status, far_bids, far_asks = _replay_dense(
        messages._replace(prices=row_cells),
        snapshots,
        data.force_resync_message,
        prices,
        tuple(far_arrays[0:4]),
        tuple(far_arrays[4:8]),
        tuple(side_arrays),
        output_buffers(out),
    )
    if status == NEEDS_FAR_LEVELS:
        return replay_sorted(data, bids, asks)
    # Cells back to prices; empty levels stay 0 as in the sorted kernel.
    out.bid_prices = np.where(out.bid_sizes > 0, base + out.bid_prices * step, 0)
    out.ask_prices = np.where(out.ask_sizes > 0, base + out.ask_prices * step, 0)
    checked = ~np.isnan(out.mid_deviation_bps)
    if checked.any():
        rows = np.asarray(data.snapshot_of_message)[checked]
        vendor_mid = 0.5 * (
            np.asarray(data.snapshot_bid_prices)[rows, 0].astype(np.float64)
            + np.asarray(data.snapshot_ask_prices)[rows, 0].astype(np.float64)
        )
        out.mid_deviation_bps[checked] = out.mid_deviation_bps[checked] * step / vendor_mid * 1e4
    bid_sizes, bid_stamps, ask_sizes, ask_stamps = side_arrays
    bid_cells = np.flatnonzero(bid_sizes)  # ascending: best last, as BookSide wants
    ask_cells = np.flatnonzero(ask_sizes)[::-1]  # descending prices: best last
    far_bid_keys, far_bid_sizes, far_bid_stamps = far_arrays[0:3]
    far_ask_keys, far_ask_sizes, far_ask_stamps = far_arrays[4:7]
    # Deep bids lie below the window and deep asks above it: they come first in each side.
    out.bids = BookSide(
        np.concatenate([far_bid_keys[:far_bids], base + bid_cells * step]),
        np.concatenate([far_bid_sizes[:far_bids], bid_sizes[bid_cells]]),
        np.concatenate([far_bid_stamps[:far_bids], bid_stamps[bid_cells]]),
    )
    out.asks = BookSide(
        np.concatenate([-far_ask_keys[:far_asks], base + ask_cells * step]),
        np.concatenate([far_ask_sizes[:far_asks], ask_sizes[ask_cells]]),
        np.concatenate([far_ask_stamps[:far_asks], ask_stamps[ask_cells]]),
    )
    return out
