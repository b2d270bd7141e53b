import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx_assets.engine.days import day_bounds_ns
from rlx_assets.engine.decimals import infer_step_exponent, on_grid
from rlx_assets.engine.grid_tally import GridTally
from rlx_assets.engine.raw import Source, clean_day, clean_partition
from rlx_assets.engine.runs import MemoryRuns
from rlx_assets.schema import BOOK, BOOK_DELTAS, SCHEMAS, TRADES, book_level_columns

DAY = dt.date(2024, 8, 8)
MIDNIGHT = day_bounds_ns(DAY)[1]
SECOND = 10**9


def _trades(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return pa.table(dict(zip(SCHEMAS[TRADES].names, columns, strict=True)), schema=SCHEMAS[TRADES])


def _deltas(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    return pa.table(
        dict(zip(SCHEMAS[BOOK_DELTAS].names, columns, strict=True)), schema=SCHEMAS[BOOK_DELTAS]
    )


def test_rows_belong_to_the_day_of_their_origin_time_whatever_dt_filed_them() -> None:
    late = MIDNIGHT - SECOND  # stamped 23:59:59 on DAY, received after midnight
    early = MIDNIGHT + SECOND
    filed_today = _trades([(late - 5 * SECOND, late - 4 * SECOND, 1, 10.5, 1.0, "buy")])
    filed_tomorrow = _trades(
        [(late, MIDNIGHT + SECOND // 2, 2, 10.6, 0.5, "sell"), (early, early, 3, 10.7, 2.0, "buy")]
    )
    sources = [(DAY, filed_today), (DAY + dt.timedelta(days=1), filed_tomorrow)]
    today = clean_day(TRADES, DAY, sources)
    tomorrow = clean_day(TRADES, DAY + dt.timedelta(days=1), sources)
    assert today.table["trade_id"].to_pylist() == [1, 2]
    assert tomorrow.table["trade_id"].to_pylist() == [3]
    assert today.rows_from_neighbour_dt == 1 and today.rows_other_days == 1
    assert today.accounted() and tomorrow.accounted()
    assert today.table["price"].to_pylist() == [Decimal("10.5"), Decimal("10.6")]


def test_a_delta_message_goes_whole_to_the_day_of_its_first_row() -> None:
    deltas = _deltas(
        [
            (MIDNIGHT - 1, MIDNIGHT, 7, True, 100.0, 1.0),
            (MIDNIGHT + 1, MIDNIGHT, 7, False, 101.0, 1.0),  # same message, odd stamp
            (MIDNIGHT + 5, MIDNIGHT + 6, 8, True, 100.0, 0.0),
        ]
    )
    today = clean_day(BOOK_DELTAS, DAY, [(DAY, deltas)])
    assert today.table["sequence_number"].to_pylist() == [7, 7]
    assert today.rows_other_days == 1


def test_exact_duplicates_are_dropped_and_counted() -> None:
    row = (MIDNIGHT - 10 * SECOND, MIDNIGHT - 9 * SECOND, 5, 10.0, 1.0, "buy")
    table = _trades([row, row, (*row[:2], 6, 10.0, 1.0, "buy")])
    # The same row filed twice (once in each dt folder) is one trade.
    cleaned = clean_day(TRADES, DAY, [(DAY, table), (DAY + dt.timedelta(days=1), _trades([row]))])
    assert cleaned.table["trade_id"].to_pylist() == [5, 6]
    assert cleaned.duplicates_dropped == 2
    assert cleaned.accounted()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ((None, None, 9, 10.0, 1.0, "buy"), "no_valid_time"),
        ((MIDNIGHT - 5, MIDNIGHT - 4, 9, float("nan"), 1.0, "buy"), "null:price"),
        ((MIDNIGHT - 5, MIDNIGHT - 4, 9, float("inf"), 1.0, "buy"), "not_finite:price"),
        ((MIDNIGHT - 5, MIDNIGHT - 4, 9, 10.0, -1.0, "buy"), "not_positive:quantity"),
        ((MIDNIGHT - 5, MIDNIGHT - 4, 9, 10.0, 1.0, "hold"), "side_not_buy_or_sell"),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason(bad: tuple, reason: str) -> None:
    good = (MIDNIGHT - 6, MIDNIGHT - 5, 8, 10.0, 1.0, "sell")
    cleaned = clean_day(TRADES, DAY, [(DAY, _trades([good, bad]))])
    assert cleaned.table["trade_id"].to_pylist() == [8]
    assert dict(cleaned.quarantined) == {reason: 1}
    assert cleaned.quarantine.column("reason").to_pylist() == [reason]
    assert cleaned.accounted()


def test_missing_origin_time_falls_back_to_received_time_and_is_counted() -> None:
    row = (None, MIDNIGHT - 3 * SECOND, 4, 10.0, 1.0, "buy")
    cleaned = clean_day(TRADES, DAY, [(DAY, _trades([row]))])
    assert cleaned.table.num_rows == 1 and cleaned.origin_time_invalid == 1


def test_precision_loss_is_flagged_per_row_and_grid_from_settings_wins() -> None:
    rows = [(MIDNIGHT - 9 + i, MIDNIGHT - 8 + i, i, 10.01, 1.0, "buy") for i in range(3)]
    rows.append((MIDNIGHT - 1, MIDNIGHT, 3, 10.015, 1.0, "buy"))
    cleaned = clean_day(TRADES, DAY, [(DAY, _trades(rows))], price_exponent=-2, size_exponent=-5)
    assert cleaned.precision_loss_warnings == 1
    assert cleaned.table["off_grid"].to_pylist() == [False, False, False, True]
    assert cleaned.table["price"].to_pylist()[-1] == Decimal("10.015")
    assert (cleaned.price_step_exponent, cleaned.size_step_exponent) == (-2, -5)


def test_book_snapshots_keep_empty_levels_empty() -> None:
    row = {name: None for name in book_level_columns()}
    row.update(bid_0_price=99.5, bid_0_size=1.0, ask_0_price=100.5, ask_0_size=2.0)
    row.update(origin_time=MIDNIGHT - 2, received_time=MIDNIGHT - 1, sequence_number=1)
    half = dict(row, sequence_number=2, bid_1_price=99.0)  # a price without a size
    table = pa.Table.from_pylist([row, half], schema=SCHEMAS[BOOK])
    cleaned = clean_day(BOOK, DAY, [(DAY, table)])
    assert cleaned.table.num_rows == 1
    assert cleaned.table["bid_1_price"].to_pylist() == [None]
    assert dict(cleaned.quarantined) == {"half_empty_level:bid_1_price": 1}


def test_a_null_origin_time_in_deltas_passes_through_the_replay() -> None:
    from rlx_assets.engine.reconstruct import reconstruct_day

    rows = [
        (MIDNIGHT - 9 * SECOND, MIDNIGHT - 9 * SECOND, 1, True, 100.0, 1.0),
        (MIDNIGHT - 9 * SECOND, MIDNIGHT - 9 * SECOND, 1, False, 101.0, 1.0),
        (None, MIDNIGHT - 8 * SECOND, 2, True, 100.5, 2.0),
    ]
    deltas = clean_day(BOOK_DELTAS, DAY, [(DAY, _deltas(rows))]).table
    snapshots = clean_day(BOOK, DAY, [(DAY, SCHEMAS[BOOK].empty_table())]).table
    book = reconstruct_day(deltas, snapshots, None, day=DAY).book
    assert book["origin_time"].to_pylist() == [MIDNIGHT - 9 * SECOND, None]
    assert book["bid_0_price"].to_pylist() == [Decimal("100"), Decimal("100.5")]


def _random_sources(seed: int) -> list[tuple[dt.date, pa.Table]]:
    """Three dt folders of delta rows around DAY: messages across both midnights, exact
    duplicates (also filed under two folders), rows with no valid time, unsorted rows."""
    rng = np.random.default_rng(seed)
    start, end = day_bounds_ns(DAY)
    messages = 400
    sequence = np.sort(rng.choice(10_000, messages, replace=False)) + 1_000
    times = np.sort(rng.integers(start - 20 * SECOND, end + 20 * SECOND, messages))
    times[: messages // 3] = np.sort(
        rng.integers(start - 2 * SECOND, start + 2 * SECOND, messages // 3)
    )
    times[-(messages // 3) :] = np.sort(
        rng.integers(end - 2 * SECOND, end + 2 * SECOND, messages // 3)
    )
    times = np.sort(times)
    rows = []
    for seq, time in zip(sequence, times, strict=True):
        for _ in range(int(rng.integers(1, 6))):
            received = int(time + rng.integers(-SECOND, SECOND))
            price = float(rng.integers(10_000, 10_050)) / 100
            rows.append(
                (
                    int(time),
                    received,
                    int(seq),
                    bool(rng.integers(2)),
                    price,
                    float(rng.integers(0, 5)),
                )
            )
    duplicated = [rows[i] for i in rng.choice(len(rows), 60)]
    rows += duplicated
    rows += [(0, 0, 99_999, True, 1.0, 1.0)] * 3  # no valid time: quarantined where filed
    order = rng.permutation(len(rows))  # files are not sorted by sequence
    by_dt: dict[dt.date, list[tuple]] = {}
    for index in order:
        row = rows[index]
        filed = dt.datetime.fromtimestamp(max(row[1], row[0], start) / 1e9, dt.timezone.utc).date()
        by_dt.setdefault(
            min(max(filed, DAY - dt.timedelta(days=1)), DAY + dt.timedelta(days=1)), []
        ).append(row)
    return [(day, _deltas(found)) for day, found in sorted(by_dt.items())]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_chunk_size_gives_the_same_day_and_no_row_is_lost_or_doubled(seed: int) -> None:
    sources = _random_sources(seed)
    reference = clean_day(BOOK_DELTAS, DAY, sources, chunk_rows=1_000_000)
    assert reference.duplicates_dropped > 0 and reference.rows_from_neighbour_dt > 0
    for chunk_rows in (1, 2, 7, 50, 333):
        chunked = clean_day(BOOK_DELTAS, DAY, sources, chunk_rows=chunk_rows)
        assert chunked.table.equals(reference.table, check_metadata=True), chunk_rows
        for figure in ("rows_read", "rows_other_days", "duplicates_dropped", "quarantined"):
            assert getattr(chunked, figure) == getattr(reference, figure), (chunk_rows, figure)
        assert chunked.sorted_runs > 1  # the rows really were sorted out of order
    # Across the three days every row read is in exactly one day, or a duplicate, or quarantined.
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    total = sum(table.num_rows for _, table in sources)
    cleaned = [clean_day(BOOK_DELTAS, day, sources, chunk_rows=13) for day in days]
    placed = sum(c.rows_kept + c.duplicates_dropped + c.rows_quarantined for c in cleaned)
    assert all(c.accounted() for c in cleaned)
    assert placed == total


@settings(max_examples=100, deadline=None)
@given(
    exponent=st.integers(-8, 2),
    magnitude=st.integers(0, 6),
    dirty=st.lists(st.floats(1e-9, 1e6, allow_nan=False), max_size=5),
    chunk=st.integers(50, 400),
    seed=st.integers(0, 2**16),
)
def test_grids_tallied_chunk_by_chunk_are_the_whole_days_grid(
    exponent: int, magnitude: int, dirty: list[float], chunk: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 10 ** (magnitude + 1), 2_000)
    values = np.concatenate([steps * 10.0**exponent, dirty, [0.0, np.nan, np.inf]])
    rng.shuffle(values)
    tally = GridTally()
    for start in range(0, values.size, chunk):
        tally.add(values[start : start + chunk])
    assert tally.exponent() == infer_step_exponent(values)
    # Not only the answer: the count on every grid is what `on_grid` counts over the day.
    finite = values[np.isfinite(values)]
    expected = [int(on_grid(finite, int(e)).sum()) for e in GridTally.EXPONENTS]
    assert tally.on_grid.tolist() == expected


def _three_days() -> list[dt.date]:
    return [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]


def test_rows_stamped_far_from_their_dt_are_quarantined_once_in_the_dt_that_filed_them() -> None:
    year_2020 = day_bounds_ns(dt.date(2020, 1, 1))[0]
    filed_today = _trades(
        [
            (MIDNIGHT - 9 * SECOND, MIDNIGHT - 8 * SECOND, 1, 10.0, 1.0, "buy"),
            (year_2020, year_2020, 2, 10.0, 1.0, "buy"),  # another year
            (MIDNIGHT + 3 * 86_400 * SECOND, MIDNIGHT, 3, 10.0, 1.0, "sell"),  # days ahead
        ]
    )
    sources = [(DAY, filed_today)]
    days = [clean_day(TRADES, day, sources) for day in _three_days()]
    yesterday, today, tomorrow = days
    assert today.table["trade_id"].to_pylist() == [1]
    assert today.quarantined == {"time_far_from_filed_dt": 2}
    assert today.quarantine["trade_id"].to_pylist() == [2, 3]
    # Read as a neighbour's file, they are another day's rows there: counted, not kept twice.
    assert yesterday.rows_quarantined == tomorrow.rows_quarantined == 0
    assert yesterday.rows_kept == tomorrow.rows_kept == 0
    assert all(day.accounted() for day in days)


@pytest.mark.parametrize("unit", [10**3, 10**6], ids=["us", "ms"])
def test_trade_times_in_another_unit_are_quarantined_not_sent_to_another_day(unit: int) -> None:
    rows = [
        ((MIDNIGHT - (100 - i) * SECOND) // unit, (MIDNIGHT - (99 - i) * SECOND) // unit, i)
        for i in range(50)
    ]
    trades = _trades([(*row, 10.0, 1.0, "buy") for row in rows])
    today = clean_day(TRADES, DAY, [(DAY, trades)])
    assert today.rows_kept == 0 and today.rows_other_days == 0
    assert today.quarantined == {"time_far_from_filed_dt": 50}


def test_a_feed_that_numbers_from_one_again_each_day_keeps_every_days_deltas() -> None:
    # The same sequence numbers on three consecutive days (a re-based feed); each day also
    # files the first rows of the next day's first message after its midnight.
    sources = []
    for day in _three_days():
        start = day_bounds_ns(day)[0]
        rows = [
            (start + i * SECOND, start + i * SECOND + 5, 1 + i // 2, i % 2 == 0, 100.0 + i, 1.0)
            for i in range(20)
        ]
        sources.append((day, _deltas(rows)))
    cleaned = [clean_day(BOOK_DELTAS, day, sources) for day in _three_days()]
    for day, result in zip(_three_days(), cleaned, strict=True):
        assert result.rows_kept == 20, day
        assert result.duplicates_dropped == 0 and result.rows_quarantined == 0
        start = day_bounds_ns(day)[0]
        assert min(result.table["origin_time"].to_pylist()) == start


@pytest.mark.parametrize("first", [1, 10**12], ids=["back", "ahead"])
def test_sequence_numbers_that_go_back_or_jump_for_a_few_messages_mid_day_are_quarantined(
    first: int,
) -> None:
    start = day_bounds_ns(DAY)[0]
    step = 40 * SECOND  # 2,160 messages over the day, two rows each
    rows = []
    for message in range(2_160):
        time = start + message * step
        rows += [
            (time, time + 5, 1_000_000 + message, True, 100.0 + message % 7, 1.0),
            (time, time + 5, 1_000_000 + message, False, 110.0 + message % 5, 2.0),
        ]
    noon = start + 43_200 * SECOND
    regression = [(noon, noon + 5, first + i, i % 2 == 0, 100.0, 1.0) for i in range(5)]
    deltas = _deltas(rows[:2_160] + regression + rows[2_160:])  # arriving at noon
    today = clean_day(BOOK_DELTAS, DAY, [(DAY, deltas)])
    assert today.quarantined == {"sequence_out_of_place": 5}
    assert sorted(today.quarantine["sequence_number"].to_pylist()) == [first + i for i in range(5)]
    assert today.rows_kept == len(rows) and today.accounted()
    origin = today.table["origin_time"].to_numpy()
    assert (np.diff(origin) >= 0).all()  # the day's table is in time order again


def test_rows_out_of_place_are_counted_once_while_the_figures_read_beside_the_writing() -> None:
    """`inspect_kept` reads the kept rows on a thread while they are converted and written:
    whichever read comes first quarantines the messages out of place, the other leaves them
    out, and nothing is counted twice."""
    start = day_bounds_ns(DAY)[0]
    rows = []
    for message in range(2_160):
        time = start + message * 40 * SECOND
        rows += [(time, time + 5, 1_000_000 + message, True, 100.0 + message % 7, 1.0)]
    noon = start + 43_200 * SECOND
    regression = [(noon, noon + 5, 1 + i, True, 100.0, 1.0) for i in range(5)]
    deltas = _deltas(rows[:1_080] + regression + rows[1_080:])
    written, quarantined, inspected = [], [], []

    def inspect(run) -> None:
        inspected.extend(batch.num_rows for batch in run.batches())

    account = clean_partition(
        BOOK_DELTAS,
        DAY,
        lambda: [Source(DAY, [deltas])],
        MemoryRuns(),
        written.append,
        quarantined.append,
        chunk_rows=100,
        inspect_kept=inspect,
    )
    assert account.quarantined == {"sequence_out_of_place": 5}
    assert sum(table.num_rows for table in quarantined) == 5
    assert account.rows_kept == len(rows) == sum(inspected)
    assert sum(table.num_rows for table in written) == len(rows) and account.accounted()


def test_a_feed_numbered_again_for_a_long_stretch_is_kept() -> None:
    """More messages than the neighbourhood looked at: a regime, not a few stray rows."""
    start = day_bounds_ns(DAY)[0]
    rows = [
        (
            start + i * SECOND,
            start + i * SECOND,
            (10**6 + i) if i < 500 else (i - 499),
            True,
            1.0,
            1.0,
        )
        for i in range(1_000)
    ]
    today = clean_day(BOOK_DELTAS, DAY, [(DAY, _deltas(rows))])
    assert today.rows_kept == 1_000 and not today.quarantined


def _in_order_sources(seed: int, late_message: bool) -> list[tuple[dt.date, pa.Table]]:
    """`_random_sources`' rows filed as a collector files a sound feed: sorted by sequence (a
    message's rows in arrival order), the earliest under the day before, the latest under the
    day after. With `late_message`, one message of the middle of the day arrives again at the
    end of the next day's file: the input goes back in the order at its very end."""
    rows = pa.concat_tables(table for _, table in _random_sources(seed))
    order = np.argsort(rows["sequence_number"].to_numpy(), kind="stable")
    rows = rows.take(pa.array(order))
    third = rows.num_rows // 3
    prices = rows["price"].to_numpy().copy()
    prices[third + 5 : third + 9] = np.nan  # bad rows of the day: quarantined
    rows = rows.set_column(rows.schema.get_field_index("price"), "price", pa.array(prices))
    after = rows.slice(2 * third)
    if late_message:
        middle = rows["sequence_number"].to_numpy()[third + third // 2]
        again = rows.filter(pa.compute.equal(rows["sequence_number"], middle))
        after = pa.concat_tables([after, again])
    return [
        (DAY - dt.timedelta(days=1), rows.slice(0, third)),
        (DAY, rows.slice(third, third)),
        (DAY + dt.timedelta(days=1), after),
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_deltas_in_order_are_placed_as_read_and_equal_the_sorted_way(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rlx_assets.engine.raw as raw

    sources = _in_order_sources(seed, late_message=False)
    for chunk_rows in (7, 1_000_000):
        streamed = clean_day(BOOK_DELTAS, DAY, sources, chunk_rows=chunk_rows)
        assert streamed.sorted_runs == 1
        with monkeypatch.context() as patched:

            def out_of_order(*args, **kwargs):
                raise raw._OutOfOrder

            patched.setattr(raw, "_place_in_order", out_of_order)
            sorted_way = clean_day(BOOK_DELTAS, DAY, sources, chunk_rows=chunk_rows)
        assert streamed.table.equals(sorted_way.table, check_metadata=True)
        assert streamed.quarantine.num_rows == 4
        # (NaN prices: equal rows, but NaN != NaN)
        assert streamed.quarantine.drop_columns(["price"]).equals(
            sorted_way.quarantine.drop_columns(["price"])
        )
        for figure in ("rows_read", "rows_kept", "rows_other_days", "duplicates_dropped"):
            assert getattr(streamed, figure) == getattr(sorted_way, figure), figure
        assert streamed.quarantined == sorted_way.quarantined


@pytest.mark.parametrize("chunk_rows", [5, 1_000_000])
def test_deltas_found_out_of_order_late_are_sorted_and_nothing_counts_twice(
    chunk_rows: int,
) -> None:
    """The first reading places most of the day and holds quarantined rows before the late
    message shows the disorder: the second reading starts again from nothing."""
    sources = _in_order_sources(3, late_message=True)
    day = clean_day(BOOK_DELTAS, DAY, sources, chunk_rows=chunk_rows)
    assert day.sorted_runs > 1
    assert day.accounted() and day.rows_read == sum(t.num_rows for _, t in sources)
    assert day.quarantine.num_rows == day.rows_quarantined
    shuffled = [
        (filed, table.take(pa.array(np.random.default_rng(0).permutation(table.num_rows))))
        for filed, table in sources
    ]
    reference = clean_day(BOOK_DELTAS, DAY, shuffled, chunk_rows=chunk_rows)
    assert day.rows_kept == reference.rows_kept
    assert day.duplicates_dropped + day.rows_quarantined == (
        reference.duplicates_dropped + reference.rows_quarantined
    )


def _cleaned_both_ways(
    sources: list[tuple[dt.date, pa.Table]],
    chunk_rows: int,
    table_name: str = BOOK_DELTAS,
    **exponents: int,
) -> tuple[tuple, tuple, int]:
    """`clean_partition` of the rows written as they are placed (`rewrite` given) and in a pass
    of their own once the day's grids are known: (table, quarantine, account) each, and how
    often the first way discarded what it had written."""
    rewrites = 0

    def cleaned(speculate: bool) -> tuple:
        nonlocal rewrites
        written: list[pa.Table] = []
        quarantined: list[pa.Table] = []

        def rewrite() -> None:
            nonlocal rewrites
            assert written, "nothing was written that needs discarding"
            rewrites += 1
            written.clear()

        account = clean_partition(
            table_name,
            DAY,
            lambda: [Source(filed_under, [table]) for filed_under, table in sources],
            MemoryRuns(),
            written.append,
            quarantined.append,
            chunk_rows=chunk_rows,
            rewrite=rewrite if speculate else None,
            **exponents,
        )
        table = pa.concat_tables(written).combine_chunks()
        held = pa.concat_tables(quarantined).combine_chunks() if quarantined else None
        return table, held, vars(account)

    return cleaned(True), cleaned(False), rewrites


def _assert_same_day(first: tuple, second: tuple) -> None:
    assert first[0].equals(second[0], check_metadata=True)
    assert not second[2]["written_while_placing"]
    # Every figure of the account, the digits included, but the way it was written.
    assert {**first[2], "written_while_placing": False} == second[2]
    if first[1] is None or second[1] is None:
        assert first[1] is second[1] is None
    else:  # NaN prices: equal rows, but NaN != NaN
        assert first[1].drop_columns(["price"]).equals(second[1].drop_columns(["price"]))


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("chunk_rows", [3, 40, 1_000_000])
def test_deltas_written_as_placed_equal_the_days_own_pass(seed: int, chunk_rows: int) -> None:
    as_placed, own_pass, rewrites = _cleaned_both_ways(
        _in_order_sources(seed, late_message=False), chunk_rows
    )
    _assert_same_day(as_placed, own_pass)
    assert as_placed[0].num_rows > 0 and as_placed[1].num_rows == 4
    assert as_placed[2]["written_while_placing"] == (rewrites == 0)
    if chunk_rows == 1_000_000:  # one chunk: its grids are the day's, nothing is written twice
        assert rewrites == 0


def _deltas_every_minute(prices: list[float], sizes: list[float], first: int = 0) -> pa.Table:
    start = day_bounds_ns(DAY)[0] + first * 60 * SECOND
    times = [start + i * 60 * SECOND for i in range(len(prices))]
    return _deltas(
        [
            (time, time + 5, 1_000 + first + i, i % 2 == 0, price, size)
            for i, (time, price, size) in enumerate(zip(times, prices, sizes, strict=True))
        ]
    )


def test_a_grid_the_first_rows_do_not_show_is_written_again_on_the_days_grid() -> None:
    """The morning's prices are whole dollars (a grid of 1); the day's are cents."""
    morning = _deltas_every_minute([float(100 + i % 9) for i in range(300)], [1.0] * 300)
    day = _deltas_every_minute([100.0 + (i % 97) / 100 for i in range(900)], [0.5] * 900, first=300)
    as_placed, own_pass, rewrites = _cleaned_both_ways([(DAY, morning), (DAY, day)], 100)
    _assert_same_day(as_placed, own_pass)
    assert rewrites == 1 and as_placed[2]["price_step_exponent"] == -2
    assert not as_placed[2]["written_while_placing"]
    assert as_placed[0]["price"].to_pylist()[300 + 5] == Decimal("100.05")


def test_a_larger_value_later_in_the_day_rewrites_the_digits_it_changes() -> None:
    """A size off its grid needs 15 digits while the largest size seen is 1.25; a size of
    10,000 later in the day leaves room for 14 (int64 at 10**-15 ends near 9,223)."""
    sizes = [0.5, 1.25, 0.123456789012345] + [0.25] * 297
    morning = _deltas_every_minute([100.0] * 300, sizes)
    day = _deltas_every_minute([100.0] * 300, [0.25] * 299 + [10_000.0], first=300)
    as_placed, own_pass, rewrites = _cleaned_both_ways([(DAY, morning), (DAY, day)], 300)
    _assert_same_day(as_placed, own_pass)
    assert rewrites == 1
    assert as_placed[2]["size_step_exponent"] == -2 and as_placed[2]["digits"]["size"] == 14
    assert as_placed[2]["precision_loss_warnings"] == 1
    assert as_placed[0]["off_grid"].to_pylist()[2] is True


def test_a_message_out_of_place_found_at_the_end_rewrites_without_it() -> None:
    """Five messages numbered far ahead, stamped at noon: in sequence order they come last,
    so the deltas are placed as read, and only the day's times show them out of place."""
    start = day_bounds_ns(DAY)[0]
    rows = [
        (start + m * 40 * SECOND, start + m * 40 * SECOND + 5, 10**6 + m, True, 100.0, 1.0)
        for m in range(2_160)
    ]
    noon = start + 43_200 * SECOND
    stray = [(noon, noon + 5, 10**12 + i, True, 100.0, 1.0) for i in range(5)]
    as_placed, own_pass, rewrites = _cleaned_both_ways([(DAY, _deltas(rows + stray))], 100)
    _assert_same_day(as_placed, own_pass)
    assert rewrites == 1 and as_placed[2]["quarantined"] == {"sequence_out_of_place": 5}
    assert as_placed[2]["sorted_runs"] == 1  # placed as read
    assert as_placed[0].num_rows == len(rows)


@pytest.mark.parametrize("chunk_rows", [5, 60])
def test_deltas_found_out_of_order_after_writing_began_are_written_once_sorted(
    chunk_rows: int,
) -> None:
    as_placed, own_pass, rewrites = _cleaned_both_ways(
        _in_order_sources(3, late_message=True), chunk_rows
    )
    _assert_same_day(as_placed, own_pass)
    # The first reading's rows written are discarded; the sorted reading's may hold or not.
    assert rewrites >= 1 and as_placed[2]["sorted_runs"] > 1


def test_given_grids_are_written_as_placed_and_hold() -> None:
    as_placed, own_pass, rewrites = _cleaned_both_ways(
        _in_order_sources(1, late_message=False), 3, price_exponent=-3, size_exponent=-1
    )
    _assert_same_day(as_placed, own_pass)
    assert rewrites == 0 and as_placed[2]["price_step_exponent"] == -3
    assert as_placed[2]["written_while_placing"]


@pytest.mark.parametrize("chunk_rows", [2, 1_000_000])
def test_trades_and_book_rows_written_as_placed_equal_the_days_own_pass(chunk_rows: int) -> None:
    start = day_bounds_ns(DAY)[0]
    trades = _trades(
        [
            (start + i * SECOND, start + i * SECOND + 3, 50 - i, 10 + i / 100, 0.25 + i, "buy")
            for i in range(40)
        ]
        + [(MIDNIGHT + SECOND, MIDNIGHT + SECOND, 99, 11.0, 1.0, "sell")]  # the next day's
    )
    shuffled = trades.take(pa.array(np.random.default_rng(4).permutation(trades.num_rows)))
    as_placed, own_pass, _ = _cleaned_both_ways([(DAY, shuffled)], chunk_rows, TRADES)
    _assert_same_day(as_placed, own_pass)
    assert as_placed[0].num_rows == 40 and as_placed[2]["rows_other_days"] == 1
    assert as_placed[2]["written_while_placing"]  # the first rows show the day's grids

    levels = {name: None for name in book_level_columns()}
    book = pa.Table.from_pylist(
        [
            dict(
                levels,
                origin_time=start + i * SECOND,
                received_time=start + i * SECOND + 1,
                sequence_number=100 - i,  # filed out of order: sorted into runs
                bid_0_price=99.5 + i / 100,
                bid_0_size=1.0 + i,
                ask_0_price=100.5,
                ask_0_size=2.5,
            )
            for i in range(30)
        ],
        schema=SCHEMAS[BOOK],
    )
    as_placed, own_pass, _ = _cleaned_both_ways([(DAY, book)], chunk_rows, BOOK)
    _assert_same_day(as_placed, own_pass)
    assert as_placed[0].num_rows == 30 and as_placed[2]["sorted_runs"] >= 1


def test_one_absurd_size_does_not_make_the_days_sizes_zero() -> None:
    """A cold day (no grid given, none the day before) of sizes below 5 with one size of 1e10:
    the size grid stays the sizes' own, and every size is written as the vendor sent it."""
    rng = np.random.default_rng(5)
    sizes = [float(v) for v in np.round(rng.uniform(0.001, 5, 1_400), 5)] + [1e10]
    deltas = _deltas_every_minute([100.0 + i % 50 / 100 for i in range(len(sizes))], sizes)
    day = clean_day(BOOK_DELTAS, DAY, [(DAY, deltas)])
    assert day.size_step_exponent == -5
    assert day.table["size"].to_pylist() == [Decimal(repr(v)) for v in sizes]
    assert day.precision_loss_warnings == 0
