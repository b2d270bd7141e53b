"""The book replay's vocabulary, shared by its two kernels: a side of the book, a day's messages and
vendor snapshots in, the published top 20 out, and the arrays the compiled kernels take (grouped
in named tuples, one argument each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

LEVELS = 20


class Messages(NamedTuple):
    """The per-row and per-message inputs, contiguous and typed as the kernels take them."""

    starts: np.ndarray  # int64[m + 1]
    sequence_numbers: np.ndarray  # int64[m]
    side_is_bid: np.ndarray  # bool[rows]
    prices: np.ndarray  # int64[rows] (grid cells in the dense kernel)
    sizes: np.ndarray  # int64[rows]
    snapshot_of_message: np.ndarray  # int64[m]


class Snapshots(NamedTuple):
    """Vendor snapshots: contiguous int64 [snapshots, 20] (prices as grid cells in the dense
    kernel)."""

    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray


class Outputs(NamedTuple):
    """The buffers the kernels fill (`ReplayOutput`'s arrays)."""

    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    resynced: np.ndarray
    repaired_levels: np.ndarray
    vendor_checked: np.ndarray
    vendor_match: np.ndarray
    mid_deviation: np.ndarray


@dataclass
class BookSide:
    """One side, best level last: ascending prices for bids, descending prices for asks."""

    prices: np.ndarray  # int64
    sizes: np.ndarray  # int64, > 0
    stamps: np.ndarray  # int64: sequence_number of the message that last set the level

    @classmethod
    def empty(cls) -> BookSide:
        return cls(*(np.zeros(0, dtype=np.int64) for _ in range(3)))


@dataclass
class ReplayInput:
    """One day's delta messages, and the vendor snapshots aligned to them."""

    message_starts: np.ndarray  # int64[m + 1]: row ranges of each message
    sequence_numbers: np.ndarray  # int64[m]
    side_is_bid: np.ndarray  # bool[rows]
    prices: np.ndarray  # int64[rows]
    sizes: np.ndarray  # int64[rows]
    snapshot_of_message: np.ndarray  # int64[m]: row in the snapshot arrays, or -1
    snapshot_bid_prices: np.ndarray  # int64[s, 20]
    snapshot_bid_sizes: np.ndarray  # int64[s, 20]: 0 where the vendor level is empty
    snapshot_ask_prices: np.ndarray
    snapshot_ask_sizes: np.ndarray
    force_resync_message: int = -1  # cold start: take this message's snapshot as the truth


@dataclass
class ReplayOutput:
    bid_prices: np.ndarray  # int64[m, 20]
    bid_sizes: np.ndarray  # int64[m, 20]: 0 where the side is shallower
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    resynced: np.ndarray  # bool[m]
    repaired_levels: np.ndarray  # int32[m]: stale crossing levels removed after the message
    vendor_checked: np.ndarray  # bool[m]: a vendor snapshot had this sequence number
    vendor_match: np.ndarray  # bool[m]: rebuilt top 20 equalled it before any resync
    mid_deviation_bps: np.ndarray  # float64[m]: before any resync; NaN where unchecked
    bids: BookSide  # the full book after the last message
    asks: BookSide


def empty_output(data: ReplayInput, bids: BookSide, asks: BookSide) -> ReplayOutput:
    """Output buffers for every message of `data`, for a kernel to fill."""
    messages = data.sequence_numbers.size
    return ReplayOutput(
        bid_prices=np.zeros((messages, LEVELS), dtype=np.int64),
        bid_sizes=np.zeros((messages, LEVELS), dtype=np.int64),
        ask_prices=np.zeros((messages, LEVELS), dtype=np.int64),
        ask_sizes=np.zeros((messages, LEVELS), dtype=np.int64),
        resynced=np.zeros(messages, dtype=np.bool_),
        repaired_levels=np.zeros(messages, dtype=np.int32),
        vendor_checked=np.zeros(messages, dtype=np.bool_),
        vendor_match=np.zeros(messages, dtype=np.bool_),
        mid_deviation_bps=np.full(messages, np.nan),
        bids=bids,
        asks=asks,
    )


def snapshot_matrices(data: ReplayInput) -> Snapshots:
    return Snapshots(
        *(
            np.ascontiguousarray(array, dtype=np.int64).reshape(-1, LEVELS)
            for array in (
                data.snapshot_bid_prices,
                data.snapshot_bid_sizes,
                data.snapshot_ask_prices,
                data.snapshot_ask_sizes,
            )
        )
    )


def message_arrays(data: ReplayInput) -> Messages:
    return Messages(
        np.ascontiguousarray(data.message_starts, dtype=np.int64),
        np.ascontiguousarray(data.sequence_numbers, dtype=np.int64),
        np.ascontiguousarray(data.side_is_bid, dtype=np.bool_),
        np.ascontiguousarray(data.prices, dtype=np.int64),
        np.ascontiguousarray(data.sizes, dtype=np.int64),
        np.ascontiguousarray(data.snapshot_of_message, dtype=np.int64),
    )


def output_buffers(out: ReplayOutput) -> Outputs:
    return Outputs(
        out.bid_prices,
        out.bid_sizes,
        out.ask_prices,
        out.ask_sizes,
        out.resynced,
        out.repaired_levels,
        out.vendor_checked,
        out.vendor_match,
        out.mid_deviation_bps,
    )


def message_starts(sequence_numbers: np.ndarray) -> np.ndarray:
    """Row offsets of each run of equal sequence numbers, with the end appended."""
    if sequence_numbers.size == 0:
        return np.zeros(1, dtype=np.int64)
    boundaries = np.flatnonzero(sequence_numbers[1:] != sequence_numbers[:-1]) + 1
    return np.concatenate(([0], boundaries, [sequence_numbers.size])).astype(np.int64)
