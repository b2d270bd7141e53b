"""The sorted kernel of the book replay (`book.replay`): a small compiled loop over preallocated
buffers, for any price range.

Each side is one sorted array of keys with the best level at the end (bids keyed by price, asks by
-price), so the frequent updates near the top shift only a few elements and the best level is
popped in O(1). What the kernel does after every message is `book.py`'s to say.
"""

from __future__ import annotations

import numba
import numpy as np

from rlx_assets.engine.book_types import (
    LEVELS,
    BookSide,
    ReplayInput,
    ReplayOutput,
    empty_output,
    message_arrays,
    output_buffers,
    snapshot_matrices,
)

_MIN_CAPACITY = 64


@numba.njit(cache=True, nogil=True)
def _grow(array: np.ndarray, needed: int) -> np.ndarray:
    capacity = max(needed, 2 * array.shape[0], _MIN_CAPACITY)
    bigger = np.empty(capacity, dtype=array.dtype)
    bigger[: array.shape[0]] = array
    return bigger


@numba.njit(cache=True, nogil=True)
def _search(keys: np.ndarray, count: int, key: int) -> int:
    """First index in keys[:count] whose key is >= key."""
    low, high = 0, count
    while low < high:
        middle = (low + high) >> 1
        if keys[middle] < key:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True, nogil=True)
def _set_level(keys, sizes, stamps, count, key, size, stamp):
    """Absolute size at a price: 0 removes the level. Returns possibly regrown buffers."""
    index = _search(keys, count, key)
    if index < count and keys[index] == key:
        if size == 0:
            for move in range(index, count - 1):
                keys[move] = keys[move + 1]
                sizes[move] = sizes[move + 1]
                stamps[move] = stamps[move + 1]
            count -= 1
        else:
            sizes[index] = size
            stamps[index] = stamp
        return keys, sizes, stamps, count
    if size == 0:
        return keys, sizes, stamps, count
    if count == keys.shape[0]:
        keys = _grow(keys, count + 1)
        sizes = _grow(sizes, count + 1)
        stamps = _grow(stamps, count + 1)
    for move in range(count, index, -1):
        keys[move] = keys[move - 1]
        sizes[move] = sizes[move - 1]
        stamps[move] = stamps[move - 1]
    keys[index] = key
    sizes[index] = size
    stamps[index] = stamp
    return keys, sizes, stamps, count + 1


@numba.njit(cache=True, nogil=True)
def _matches_vendor(keys, sizes, count, sign, vendor_prices, vendor_sizes) -> bool:
    for level in range(LEVELS):
        index = count - 1 - level
        vendor_present = vendor_sizes[level] > 0
        if index < 0:
            if vendor_present:
                return False
            continue
        if not vendor_present:
            return False
        if keys[index] * sign != vendor_prices[level] or sizes[index] != vendor_sizes[level]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _resync_side(keys, sizes, stamps, count, sign, vendor_prices, vendor_sizes, stamp):
    """Replace the vendor snapshot's price range with its levels; deeper levels stay."""
    depth = 0
    while depth < LEVELS and vendor_sizes[depth] > 0:
        depth += 1
    if depth < LEVELS:
        count = 0  # the vendor shows the whole side
    else:
        count = _search(keys, count, vendor_prices[LEVELS - 1] * sign)
    needed = count + depth
    if needed > keys.shape[0]:
        keys = _grow(keys, needed)
        sizes = _grow(sizes, needed)
        stamps = _grow(stamps, needed)
    for level in range(depth - 1, -1, -1):
        keys[count] = vendor_prices[level] * sign
        sizes[count] = vendor_sizes[level]
        stamps[count] = stamp
        count += 1
    return keys, sizes, stamps, count


@numba.njit(cache=True, nogil=True)
def _emit(keys, sizes, count, sign, out_prices, out_sizes, row):
    for level in range(LEVELS):
        index = count - 1 - level
        if index >= 0:
            out_prices[row, level] = keys[index] * sign
            out_sizes[row, level] = sizes[index]
        else:
            out_prices[row, level] = 0
            out_sizes[row, level] = 0


@numba.njit(cache=True, nogil=True)
def _replay_kernel(messages, snapshots, force_resync_message, bid_side, ask_side, out):
    message_starts, sequence_numbers, side_is_bid, prices, sizes, snapshot_of_message = messages
    snap_bid_prices, snap_bid_sizes, snap_ask_prices, snap_ask_sizes = snapshots
    bid_keys, bid_sizes, bid_stamps, bid_count = bid_side
    ask_keys, ask_sizes, ask_stamps, ask_count = ask_side
    (
        out_bid_prices,
        out_bid_sizes,
        out_ask_prices,
        out_ask_sizes,
        out_resynced,
        out_repaired,
        out_checked,
        out_match,
        out_mid_deviation,
    ) = out
    messages = sequence_numbers.shape[0]
    for message in range(messages):
        stamp = sequence_numbers[message]
        for row in range(message_starts[message], message_starts[message + 1]):
            if side_is_bid[row]:
                bid_keys, bid_sizes, bid_stamps, bid_count = _set_level(
                    bid_keys, bid_sizes, bid_stamps, bid_count, prices[row], sizes[row], stamp
                )
            else:
                ask_keys, ask_sizes, ask_stamps, ask_count = _set_level(
                    ask_keys, ask_sizes, ask_stamps, ask_count, -prices[row], sizes[row], stamp
                )

        repaired = 0
        while (
            bid_count > 0 and ask_count > 0 and bid_keys[bid_count - 1] >= -ask_keys[ask_count - 1]
        ):
            bid_age = bid_stamps[bid_count - 1]
            ask_age = ask_stamps[ask_count - 1]
            if bid_age < ask_age:
                bid_count -= 1
            elif ask_age < bid_age:
                ask_count -= 1
            else:
                break  # both set by this message: the vendor snapshot, or the fallback, decides
            repaired += 1

        snapshot = snapshot_of_message[message]
        out_resynced[message] = False
        out_mid_deviation[message] = np.nan
        if snapshot >= 0:
            out_checked[message] = True
            bid_ok = _matches_vendor(
                bid_keys,
                bid_sizes,
                bid_count,
                1,
                snap_bid_prices[snapshot],
                snap_bid_sizes[snapshot],
            )
            ask_ok = _matches_vendor(
                ask_keys,
                ask_sizes,
                ask_count,
                -1,
                snap_ask_prices[snapshot],
                snap_ask_sizes[snapshot],
            )
            out_match[message] = bid_ok and ask_ok
            vendor_bid = snap_bid_prices[snapshot, 0]
            vendor_ask = snap_ask_prices[snapshot, 0]
            if (
                bid_count > 0
                and ask_count > 0
                and snap_bid_sizes[snapshot, 0] > 0
                and snap_ask_sizes[snapshot, 0] > 0
            ):
                rebuilt_mid = 0.5 * (bid_keys[bid_count - 1] - ask_keys[ask_count - 1])
                vendor_mid = 0.5 * (vendor_bid + vendor_ask)
                out_mid_deviation[message] = abs(rebuilt_mid - vendor_mid) / vendor_mid * 1e4
            if not (bid_ok and ask_ok) or message == force_resync_message:
                bid_keys, bid_sizes, bid_stamps, bid_count = _resync_side(
                    bid_keys,
                    bid_sizes,
                    bid_stamps,
                    bid_count,
                    1,
                    snap_bid_prices[snapshot],
                    snap_bid_sizes[snapshot],
                    stamp,
                )
                ask_keys, ask_sizes, ask_stamps, ask_count = _resync_side(
                    ask_keys,
                    ask_sizes,
                    ask_stamps,
                    ask_count,
                    -1,
                    snap_ask_prices[snapshot],
                    snap_ask_sizes[snapshot],
                    stamp,
                )
                out_resynced[message] = not (bid_ok and ask_ok)
        else:
            out_checked[message] = False
            out_match[message] = False

        # Crossed with no way to tell which side is stale: neither crossing level is published.
        while (
            bid_count > 0 and ask_count > 0 and bid_keys[bid_count - 1] >= -ask_keys[ask_count - 1]
        ):
            bid_count -= 1
            ask_count -= 1
            repaired += 2
        out_repaired[message] = repaired

        _emit(bid_keys, bid_sizes, bid_count, 1, out_bid_prices, out_bid_sizes, message)
        _emit(ask_keys, ask_sizes, ask_count, -1, out_ask_prices, out_ask_sizes, message)

    return (bid_keys, bid_sizes, bid_stamps, bid_count, ask_keys, ask_sizes, ask_stamps, ask_count)


def _side_buffers(side: BookSide, sign: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    count = side.prices.size
    capacity = max(_MIN_CAPACITY, 2 * count)
    keys = np.empty(capacity, dtype=np.int64)
    sizes = np.empty(capacity, dtype=np.int64)
    stamps = np.empty(capacity, dtype=np.int64)
    keys[:count] = side.prices * sign
    sizes[:count] = side.sizes
    stamps[:count] = side.stamps
    return keys, sizes, stamps, count


def replay_sorted(data: ReplayInput, bids: BookSide, asks: BookSide) -> ReplayOutput:
    """`book.replay` on sorted arrays: any price range."""
    out = empty_output(data, bids, asks)
    result = _replay_kernel(
        message_arrays(data),
        snapshot_matrices(data),
        data.force_resync_message,
        _side_buffers(bids, 1),
        _side_buffers(asks, -1),
        output_buffers(out),
    )
    bid_keys, bid_sizes, bid_stamps, bid_count, ask_keys, ask_sizes, ask_stamps, ask_count = result
    out.bids = BookSide(
        bid_keys[:bid_count].copy(), bid_sizes[:bid_count].copy(), bid_stamps[:bid_count].copy()
    )
    out.asks = BookSide(
        -ask_keys[:ask_count], ask_sizes[:ask_count].copy(), ask_stamps[:ask_count].copy()
    )
    return out
