"""`DayReplay`: a day of delta messages replayed chunk by chunk, each chunk's published rows and
figures, and the state a checkpoint records between chunks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.book import replay
from rlx_assets.engine.book_tables import (
    book_table,
    crossed_rows,
    day_digits,
    level_names,
    matrix,
    state_sides,
    state_table,
)
from rlx_assets.engine.book_types import BookSide, ReplayInput, message_starts
from rlx_assets.engine.decimals import decimal_to_scaled
from rlx_assets.engine.quality import filled_after, per_hour, sequence_id_gaps
from rlx_assets.engine.reconstruction import (
    SEED_EMPTY,
    SEED_PREVIOUS_STATE,
    SEED_SNAPSHOT_BURST,
    SEED_VENDOR_SNAPSHOT,
    Reconstruction,
    opening_burst,
)

_ROW_ARRAYS = (
    "sequence",
    "resynced",
    "repaired",
    "vendor_match",
    "checked",
    "deviation",
    "message_time",
)


@dataclass
class ChunkInput:
    """A chunk of whole messages as `DayReplay.replay_chunk` takes it."""

    data: ReplayInput
    origin_time: pa.ChunkedArray  # of each message's first row
    received_time: pa.ChunkedArray
    message_time: np.ndarray  # origin_time, else received_time, else 0: for gaps per hour


def message_figures(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-message figures from published rows' arrays (`PublishedRows` fields, or the arrays
    of `PublishedRows.to_arrays` as a checkpoint holds them)."""
    checked = rows["checked"]
    return {
        "checked": checked,
        "match": rows["vendor_match"] & checked,
        "resynced": rows["resynced"],
        "repaired": rows["repaired"],
        "deviation": rows["deviation"],
        "sequence": rows["sequence"],
        "time": rows["message_time"],
    }


@dataclass
class PublishedRows:
    """The book rows a chunk published, as the engine's arrays."""

    origin_time: pa.ChunkedArray
    received_time: pa.ChunkedArray
    sequence: np.ndarray
    levels: dict[str, tuple[np.ndarray, np.ndarray]]  # side -> (prices, sizes) [rows, 20]
    price_digits: int
    size_digits: int
    resynced: np.ndarray
    repaired: np.ndarray
    vendor_match: np.ndarray
    checked: np.ndarray
    deviation: np.ndarray
    message_time: np.ndarray  # for gaps per hour

    def figures(self) -> dict[str, np.ndarray]:
        """The per-message figures `DayReplay.finish` turns into the day's stats."""
        return message_figures(vars(self))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for a checkpoint); `from_arrays` gives the same rows back."""
        arrays = {name: getattr(self, name) for name in _ROW_ARRAYS}
        for name in ("origin_time", "received_time"):
            times = getattr(self, name)
            arrays[name] = pc.fill_null(times, 0).to_numpy()
            arrays[f"{name}_valid"] = times.is_valid().to_numpy()
        for side, (prices, sizes) in self.levels.items():
            arrays[f"{side}_prices"], arrays[f"{side}_sizes"] = prices, sizes
        arrays["digits"] = np.array([self.price_digits, self.size_digits])
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PublishedRows:
        times = {
            name: pa.chunked_array(
                [pa.array(arrays[name], pa.int64(), mask=~arrays[f"{name}_valid"])]
            )
            for name in ("origin_time", "received_time")
        }
        price_digits, size_digits = (int(value) for value in arrays["digits"])
        return cls(
            **times,
            levels={
                side: (arrays[f"{side}_prices"], arrays[f"{side}_sizes"]) for side in ("bid", "ask")
            },
            price_digits=price_digits,
            size_digits=size_digits,
            **{name: arrays[name] for name in _ROW_ARRAYS},
        )

    def table(self) -> pa.Table:
        """The rows in `reconstructed_book`'s layout (exact decimals, vendor-style columns)."""
        return book_table(
            self.origin_time,
            self.received_time,
            self.sequence,
            self.levels,
            self.price_digits,
            self.size_digits,
            resynced=self.resynced,
            repaired=self.repaired,
            vendor_match=pa.array(self.vendor_match, mask=~self.checked),
            deviation=pa.array(self.deviation, mask=np.isnan(self.deviation)),
        )


def vendor_seed_exists(delta_sequences: np.ndarray, snapshot_sequences: np.ndarray) -> bool:
    """Does any vendor snapshot carry the sequence number of a delta message?"""
    return bool(np.isin(snapshot_sequences, delta_sequences).any())


class DayReplay:
    """One day's `full_replay`, fed in chunks of whole messages (or all at once).

    The book, the cold-start seed and the per-message figures carry over from chunk to chunk, so
    any split of a day into chunks publishes the same rows as one feed of the whole day.
    """

    def __init__(
        self,
        previous_state: pa.Table | None,
        price_digits: int,
        size_digits: int,
        day: dt.date | None,
        seed_from_vendor: bool,
    ) -> None:
        state = previous_state if previous_state is not None and previous_state.num_rows else None
        self.price_digits, self.size_digits, self.day = price_digits, size_digits, day
        self.seed_from_vendor = seed_from_vendor
        if state is not None:
            self.bids, self.asks = state_sides(state, price_digits, size_digits)
            self.seed: str | None = SEED_PREVIOUS_STATE
        else:
            self.bids, self.asks = BookSide.empty(), BookSide.empty()
            self.seed = None
        self.messages = 0
        self.messages_before_seed = 0
        self.chunks = 0
        self.crossed = 0
        self._figures: dict[str, list[np.ndarray]] = {
            name: []
            for name in (
                "checked",
                "match",
                "resynced",
                "repaired",
                "deviation",
                "sequence",
                "time",
            )
        }

    def feed(self, deltas: pa.Table, snapshots: pa.Table) -> pa.Table:
        """Replay whole messages (raw_book_deltas rows, sorted); `snapshots` are the vendor rows
        of these messages (others are ignored). Returns the book rows published."""
        return self.replay_chunk(self.prepare(deltas, snapshots)).table()

    def prepare(self, deltas: pa.Table, snapshots: pa.Table) -> ChunkInput:
        """The engine's input for a chunk: independent of the replay's state, so a reader
        thread can prepare the next chunk while this one replays."""
        sequence = deltas["sequence_number"].to_numpy()
        starts = message_starts(sequence)
        message_sequence = sequence[starts[:-1]]
        snapshots, snapshot_of_message = _align_snapshots(snapshots, message_sequence)
        prices, sizes = self.price_digits, self.size_digits
        data = ReplayInput(
            message_starts=starts,
            sequence_numbers=message_sequence,
            side_is_bid=deltas["side_is_bid"].to_numpy(zero_copy_only=False),
            prices=decimal_to_scaled(deltas["price"], prices),
            sizes=decimal_to_scaled(deltas["size"], sizes),
            snapshot_of_message=snapshot_of_message,
            snapshot_bid_prices=matrix(snapshots, level_names("bid", "price"), prices),
            snapshot_bid_sizes=matrix(snapshots, level_names("bid", "size"), sizes),
            snapshot_ask_prices=matrix(snapshots, level_names("ask", "price"), prices),
            snapshot_ask_sizes=matrix(snapshots, level_names("ask", "size"), sizes),
        )
        first_rows = starts[:-1]
        # Hours of gaps: by origin_time, received_time where the vendor left it empty.
        times = pc.coalesce(deltas["origin_time"], deltas["received_time"], 0).to_numpy()
        return ChunkInput(
            data=data,
            origin_time=deltas["origin_time"].take(first_rows),
            received_time=deltas["received_time"].take(first_rows),
            message_time=times[first_rows],
        )

    def replay_chunk(self, chunk: ChunkInput) -> PublishedRows:
        """Replay a prepared chunk from the current book; returns the rows published, as arrays
        (their table can be built on another thread)."""
        data = chunk.data
        starts, message_sequence = data.message_starts, data.sequence_numbers
        first_published = 0
        if self.seed is None:
            matched = data.snapshot_of_message >= 0
            if self.chunks == 0 and opening_burst(starts, data.side_is_bid):
                self.seed = SEED_SNAPSHOT_BURST
            elif not self.seed_from_vendor:
                self.seed = SEED_EMPTY
            elif matched.any():
                first_published = int(np.argmax(matched))
                data.force_resync_message = first_published
                self.seed = SEED_VENDOR_SNAPSHOT
            else:
                first_published = message_sequence.size  # still waiting for the seed
            self.messages_before_seed += first_published
        self.chunks += 1
        self.messages += int(message_sequence.size)

        out = replay(data, self.bids, self.asks)
        self.bids, self.asks = out.bids, out.asks

        published = slice(first_published, None)
        levels = {
            "bid": (out.bid_prices[published], out.bid_sizes[published]),
            "ask": (out.ask_prices[published], out.ask_sizes[published]),
        }
        self.crossed += crossed_rows(*levels["bid"], *levels["ask"])
        rows = PublishedRows(
            origin_time=chunk.origin_time.slice(first_published),
            received_time=chunk.received_time.slice(first_published),
            sequence=message_sequence[published],
            levels=levels,
            price_digits=self.price_digits,
            size_digits=self.size_digits,
            resynced=out.resynced[published],
            repaired=out.repaired_levels[published],
            vendor_match=out.vendor_match[published],
            checked=out.vendor_checked[published],
            deviation=out.mid_deviation_bps[published],
            message_time=chunk.message_time[published],
        )
        for name, values in rows.figures().items():
            self._figures[name].append(values)
        return rows

    def checkpoint(self) -> dict[str, np.ndarray]:
        """What `replay_chunk` carries to the next chunk besides the per-message figures (those
        of each chunk are its rows' `figures`), as plain arrays for `restore`."""
        arrays = {
            f"{side}_{part}": getattr(book, part)
            for side, book in (("bids", self.bids), ("asks", self.asks))
            for part in ("prices", "sizes", "stamps")
        }
        arrays["counters"] = np.array(
            [self.messages, self.messages_before_seed, self.chunks, self.crossed], dtype=np.int64
        )
        arrays["seed"] = np.array([self.seed or ""])
        return arrays

    def restore(self, arrays: dict[str, np.ndarray], figures: list[dict[str, np.ndarray]]) -> None:
        """Continue from a `checkpoint` of the same day and settings, with the figures of every
        chunk it covers, in order."""
        self.bids, self.asks = (
            BookSide(*(arrays[f"{side}_{part}"] for part in ("prices", "sizes", "stamps")))
            for side in ("bids", "asks")
        )
        counters = [int(value) for value in arrays["counters"]]
        self.messages, self.messages_before_seed, self.chunks, self.crossed = counters
        self.seed = str(arrays["seed"][0]) or None
        self._figures = {name: [chunk[name] for chunk in figures] for name in self._figures}

    def finish(self) -> Reconstruction:
        """The end-of-day state and the day's figures (the book rows were returned by `feed`)."""
        result = Reconstruction(
            book=pa.table({}),
            state=state_table(self.bids, self.asks, self.price_digits, self.size_digits),
            seed=self.seed or SEED_EMPTY,
            messages=self.messages,
            messages_before_seed=self.messages_before_seed,
        )
        figures = {
            name: np.concatenate(parts) if parts else np.zeros(0)
            for name, parts in self._figures.items()
        }
        result.stats = _replay_stats(figures, self.crossed, self.bids, self.asks, self.day)
        result.stats["chunks"] = self.chunks
        return result


def _align_snapshots(snapshots: pa.Table, message_sequence: np.ndarray):
    """Vendor snapshots by sequence number (the last wins if repeated) and, per message, the row
    of its snapshot or -1."""
    snapshot_sequence = snapshots["sequence_number"].to_numpy()
    keep_last = np.ones(snapshot_sequence.size, dtype=bool)
    keep_last[:-1] = snapshot_sequence[1:] != snapshot_sequence[:-1]
    snapshots = snapshots.filter(pa.array(keep_last))
    snapshot_sequence = snapshot_sequence[keep_last]
    position = np.searchsorted(snapshot_sequence, message_sequence)
    clipped = np.minimum(position, max(snapshot_sequence.size - 1, 0))
    matched = (position < snapshot_sequence.size) & (
        snapshot_sequence[clipped] == message_sequence if snapshot_sequence.size else False
    )
    return snapshots, np.where(matched, position, -1).astype(np.int64)


def full_replay(
    deltas: pa.Table, snapshots: pa.Table, previous_state: pa.Table | None, day: dt.date | None
) -> Reconstruction:
    price_digits, size_digits = day_digits(deltas, snapshots, previous_state)
    seed_from_vendor = vendor_seed_exists(
        deltas["sequence_number"].to_numpy(), snapshots["sequence_number"].to_numpy()
    )
    day_replay = DayReplay(previous_state, price_digits, size_digits, day, seed_from_vendor)
    book = day_replay.feed(deltas, snapshots)
    result = day_replay.finish()
    result.book = book
    return result


def _replay_stats(
    figures: dict[str, np.ndarray], crossed: int, bids: BookSide, asks: BookSide, day
) -> dict[str, object]:
    checked = figures["checked"].astype(bool)
    matches = figures["match"].astype(bool)
    mismatched = checked & ~matches
    resynced = figures["resynced"].astype(bool)
    times = figures["time"].astype(np.int64)
    id_gaps = sequence_id_gaps(figures["sequence"].astype(np.int64))
    id_gaps_filled = filled_after(id_gaps, np.flatnonzero(checked))
    deviation = figures["deviation"].astype(np.float64)
    deviation = deviation[~np.isnan(deviation)]
    return {
        "vendor_snapshots_compared": int(checked.sum()),
        "top20_matches": int(matches.sum()),
        "top20_match_share": float(matches.sum() / checked.sum()) if checked.any() else 1.0,
        "gaps_detected": int(mismatched.sum() + id_gaps.size),
        "gaps_filled": int(resynced.sum() + id_gaps_filled.sum()),
        "sequence_id_gaps": int(id_gaps.size),
        "gaps_detected_per_hour": per_hour(np.concatenate([times[mismatched], times[id_gaps]]), day)
        if day
        else [],
        "gaps_filled_per_hour": per_hour(
            np.concatenate([times[resynced], times[id_gaps[id_gaps_filled]]]), day
        )
        if day
        else [],
        "stale_levels_repaired": int(figures["repaired"].sum()),
        "mid_deviation_max_bps": float(deviation.max()) if deviation.size else 0.0,
        "mid_deviation_p99_bps": float(np.quantile(deviation, 0.99)) if deviation.size else 0.0,
        "crossed_books_published": crossed,
        "end_depth_bids": int(bids.prices.size),
        "end_depth_asks": int(asks.prices.size),
    }
