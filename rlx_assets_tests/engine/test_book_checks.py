"""The figures behind the book checks, from inputs that genuinely hold the fault: a crossed book
reaches `crossed_rows`, a lost message next to vendor snapshots reaches the id-gap accounting,
a vendor snapshot away from the rebuilt book reaches the mid deviation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rlx_assets.engine import day_replay, reconstruction, without_deltas
from rlx_assets.engine.book_tables import crossed_rows, day_digits
from rlx_assets.engine.book_types import LEVELS, BookSide, ReplayInput, ReplayOutput, empty_output
from rlx_assets.engine.day_replay import DayReplay, vendor_seed_exists
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets_tests import doctored_lake as doctored
from rlx_assets_tests.conftest import SLICE


def _levels(rows: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, ...]:
    """Matrices [rows, 20] from each row's (best bid, bid size, best ask, ask size); deeper
    levels one step further out, size 1."""
    matrices = [np.zeros((len(rows), LEVELS), dtype=np.int64) for _ in range(4)]
    for row, (bid, bid_size, ask, ask_size) in enumerate(rows):
        for level in range(LEVELS):
            for matrix, price, size, step in ((0, bid, bid_size, -1), (2, ask, ask_size, 1)):
                matrices[matrix][row, level] = price + step * level if size else 0
                matrices[matrix + 1][row, level] = (size if level == 0 else 1) if size else 0
    return tuple(matrices)


@pytest.mark.parametrize(
    ("rows", "crossed"),
    [
        ([(100, 5, 101, 2)], 0),
        ([(102, 5, 101, 2)], 1),  # crossed
        ([(101, 5, 101, 2)], 1),  # locked: bid == ask counts
        ([(100, 5, 101, 2), (103, 1, 101, 2), (100, 5, 101, 2), (101, 1, 100, 1)], 2),
        ([(0, 0, 101, 2), (102, 5, 0, 0)], 0),  # one side empty: nothing to cross
    ],
)
def test_crossed_rows_counts_rows_whose_best_bid_reaches_the_best_ask(rows, crossed) -> None:
    assert crossed_rows(*_levels(rows)) == crossed


def _crossed_in(book: pa.Table) -> int:
    """Rows of a published book with best bid >= best ask, counted on the table itself."""
    crossed = pc.greater_equal(book["bid_0_price"], book["ask_0_price"])
    return int(pc.sum(pc.fill_null(crossed, False)).as_py() or 0)


@pytest.fixture(scope="module")
def crossed_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return doctored.doctored_lake(tmp_path_factory.mktemp("crossed"), doctored.crossed_snapshots(5))


def test_crossed_vendor_snapshots_are_repaired_before_they_are_published(crossed_lake) -> None:
    deltas = doctored.raw_day(crossed_lake, doctored.DELTAS)
    snapshots = doctored.raw_day(crossed_lake, doctored.SNAPSHOTS)
    assert deltas.num_rows == 0
    assert _crossed_in(snapshots) == 5  # the input is crossed
    result = reconstruct_day(deltas, snapshots, None, doctored.DAY)
    assert result.strategy == reconstruction.SNAPSHOT_ANCHORED
    assert result.stats["stale_levels_repaired"] == 2 * 5  # both crossing levels of each
    assert result.stats["crossed_books_published"] == _crossed_in(result.book) == 0


def test_a_crossed_book_that_escapes_the_repair_is_counted(crossed_lake, monkeypatch) -> None:
    """The repair regresses (it leaves the crossing levels): the detector sees the crossed rows
    that are published."""
    monkeypatch.setattr(without_deltas, "_uncross_row", lambda *levels: 0)
    deltas = doctored.raw_day(crossed_lake, doctored.DELTAS)  # none: snapshot_anchored
    snapshots = doctored.raw_day(crossed_lake, doctored.SNAPSHOTS)
    result = reconstruct_day(deltas, snapshots, None, doctored.DAY)
    assert result.stats["crossed_books_published"] == _crossed_in(result.book) == 5


def _replay_without_repair(data: ReplayInput, bids: BookSide, asks: BookSide, **_) -> ReplayOutput:
    """The replay with its stale-level repair gone: a plain full-depth book, seeded from the
    vendor snapshot the cold start names, that publishes whatever it holds."""
    book = {
        True: {int(p): int(s) for p, s in zip(bids.prices, bids.sizes, strict=True)},
        False: {int(p): int(s) for p, s in zip(asks.prices, asks.sizes, strict=True)},
    }
    out = empty_output(data, bids, asks)
    for message in range(data.sequence_numbers.size):
        for row in range(data.message_starts[message], data.message_starts[message + 1]):
            side, price = book[bool(data.side_is_bid[row])], int(data.prices[row])
            if data.sizes[row]:
                side[price] = int(data.sizes[row])
            else:
                side.pop(price, None)
        if message == data.force_resync_message:
            snapshot = data.snapshot_of_message[message]
            for is_bid, prices, sizes in (
                (True, data.snapshot_bid_prices, data.snapshot_bid_sizes),
                (False, data.snapshot_ask_prices, data.snapshot_ask_sizes),
            ):
                book[is_bid] = {
                    int(p): int(s)
                    for p, s in zip(prices[snapshot], sizes[snapshot], strict=True)
                    if s > 0
                }
        for is_bid, prices, sizes in (
            (True, out.bid_prices, out.bid_sizes),
            (False, out.ask_prices, out.ask_sizes),
        ):
            top = sorted(book[is_bid], reverse=is_bid)[:LEVELS]
            prices[message, : len(top)] = top
            sizes[message, : len(top)] = [book[is_bid][price] for price in top]
    for is_bid, name in ((True, "bids"), (False, "asks")):
        prices = np.array(sorted(book[is_bid], reverse=not is_bid), dtype=np.int64)
        sizes = np.array([book[is_bid][p] for p in prices.tolist()], dtype=np.int64)
        setattr(out, name, BookSide(prices, sizes, np.zeros(prices.size, dtype=np.int64)))
    return out


ABOVE_THE_BOOK = 99_999.99  # BTC-USDT traded near 61,700; no level of the slice is there


def _bid_above_the_book(deltas, snapshots):
    """One bid row of a message in the day's middle set far above every ask (never removed)."""
    import polars as pl

    middle = deltas["sequence_number"].unique().sort()[400]
    first_bid = (pl.col("sequence_number") == middle) & pl.col("side_is_bid")
    first_bid = first_bid & (pl.int_range(pl.len()).over(first_bid) == 0)
    doctored_deltas = deltas.with_columns(
        price=pl.when(first_bid).then(ABOVE_THE_BOOK).otherwise(pl.col("price")),
        size=pl.when(first_bid).then(1.0).otherwise(pl.col("size")),
    )
    assert deltas.filter(pl.col("price") == ABOVE_THE_BOOK).height == 0
    assert doctored_deltas.filter(pl.col("price") == ABOVE_THE_BOOK).height == 1
    return doctored_deltas, snapshots


@pytest.mark.parametrize("chunk_messages", [100_000, 300])
def test_a_replayed_day_counts_the_crossed_rows_it_publishes(
    tmp_path, monkeypatch, chunk_messages
) -> None:
    """A bid above the book enters through the deltas; the real replay removes it (resynced
    from the vendor snapshot), a replay without the repair publishes crossed rows, and the
    day's figure counts them (over every chunk)."""
    lake = doctored.doctored_lake(tmp_path, _bid_above_the_book)
    deltas = doctored.raw_day(lake, doctored.DELTAS)
    snapshots = doctored.raw_day(lake, doctored.SNAPSHOTS)

    def replay_day(deltas: pa.Table, snapshots: pa.Table):
        price_digits, size_digits = day_digits(deltas, snapshots, None)
        seeded = vendor_seed_exists(
            deltas["sequence_number"].to_numpy(), snapshots["sequence_number"].to_numpy()
        )
        replay = DayReplay(None, price_digits, size_digits, doctored.DAY, seeded)
        sequence = deltas["sequence_number"].to_numpy()
        bounds = np.flatnonzero(np.diff(sequence)) + 1
        cuts = [0, *bounds[chunk_messages::chunk_messages].tolist(), sequence.size]
        books = [
            replay.feed(deltas.slice(start, end - start), snapshots)
            for start, end in itertools.pairwise(cuts)
        ]
        return pa.concat_tables(books), replay.finish()

    book, result = replay_day(deltas, snapshots)
    assert result.stats["crossed_books_published"] == _crossed_in(book) == 0
    # The vendor snapshot of that message disagreed and the resync removed the bid.
    assert result.stats["gaps_filled"] >= 1

    monkeypatch.setattr(day_replay, "replay", _replay_without_repair)
    book, result = replay_day(deltas, snapshots)
    assert result.stats["chunks"] == (3 if chunk_messages == 300 else 1)
    crossed = _crossed_in(book)
    assert crossed > 300  # from the doctored message to the day's end
    assert result.stats["crossed_books_published"] == crossed


def test_a_lost_message_that_a_later_snapshot_checked_is_filled(tmp_path) -> None:
    lake = doctored.doctored_lake(tmp_path, doctored.lose_a_message(snapshots_after_the_gap=True))
    deltas = doctored.raw_day(lake, doctored.DELTAS)
    snapshots = doctored.raw_day(lake, doctored.SNAPSHOTS)
    stats = reconstruct_day(deltas, snapshots, None, doctored.DAY).stats
    assert stats["sequence_id_gaps"] == 1
    assert stats["gaps_detected"] == stats["gaps_filled"] >= 1
    assert sum(stats["gaps_filled_per_hour"]) == stats["gaps_filled"]
    assert stats["gaps_filled_per_hour"][23] == stats["gaps_filled"]  # the slice's last hour


def test_a_lost_message_no_later_snapshot_checked_stays_unfilled(tmp_path) -> None:
    lake = doctored.doctored_lake(tmp_path, doctored.lose_a_message(snapshots_after_the_gap=False))
    deltas = doctored.raw_day(lake, doctored.DELTAS)
    snapshots = doctored.raw_day(lake, doctored.SNAPSHOTS)
    stats = reconstruct_day(deltas, snapshots, None, doctored.DAY).stats
    assert stats["vendor_snapshots_compared"] > 100
    assert stats["sequence_id_gaps"] == 1
    assert stats["gaps_detected"] - stats["gaps_filled"] == 1


def test_a_vendor_snapshot_away_from_the_book_sets_the_mid_deviation(tmp_path) -> None:
    lake = doctored.doctored_lake(tmp_path, doctored.shifted_last_snapshot)
    clean = reconstruct_day(
        doctored.raw_day(SLICE, doctored.DELTAS),
        doctored.raw_day(SLICE, doctored.SNAPSHOTS),
        None,
        doctored.DAY,
    ).stats
    snapshots = doctored.raw_day(lake, doctored.SNAPSHOTS)
    stats = reconstruct_day(doctored.raw_day(lake, doctored.DELTAS), snapshots, None, doctored.DAY)
    stats = stats.stats
    assert clean["mid_deviation_max_bps"] == 0.0
    assert stats["vendor_snapshots_compared"] == clean["vendor_snapshots_compared"]
    last = doctored.last_snapshot_mid(snapshots)
    expected = doctored.SHIFT / last * 1e4
    assert stats["mid_deviation_max_bps"] == pytest.approx(expected, rel=1e-9)
    assert stats["mid_deviation_max_bps"] > 9.0
