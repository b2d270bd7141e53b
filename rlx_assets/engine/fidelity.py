"""Reconstructed data against the golden sample (the exchange's own streams), same window.

Window. Both sides are cut to the common span of exchange time (ns): the golden sample's depth
event times and trade times against the reconstructed rows' and raw trades' `origin_time`. Local
receive clocks are not used: a vendor's collector and the golden capture's run on different
machines, while the exchange stamps both.

Top of book, alignment by update id. A Binance diff message covers update ids U..u and the
reconstructed book has one row per message, stamped `sequence_number` = u: the book after update u.
A bookTicker update carries one update id and no event time, and is pushed whenever that update
changed the best bid or ask. So a bookTicker update is compared only with the reconstructed row of
the same update id (`sequence_number == u`): both then describe the book after the same update,
with nothing inferred. Updates inside a message (U <= id < u) describe states the message-level
book never shows and are not compared; the "latest row with sequence_number <= u" is the state
*before* the change the ticker reports and agrees only ~2% of the time on the real fixture.
A looser rule, carrying a ticker forward to the end of its message when no later ticker precedes
it (the top did not change in between, by the ticker stream's own account), compares ~5x more
rows; it is reported as a diagnostic (`top_of_book_agreement_carried`), not used in the verdict,
because it trusts the ticker and depth streams to number their updates identically, which the
real fixture shows they do not always do (2024-08-09, update 50093478171: a bid the depth stream
only shows from id 50093478175 on).

Distributions (float64, statistics only; equality is always on exact decimals):
- trade size and inter-arrival time (ms, exchange trade time): raw trades vs golden trades in the
  window, each side's full set (a missing or extra trade shifts the sample).
- spread (ask_0 - bid_0): at every reconstructed row in the window, the rebuilt spread vs the
  exchange's spread at the same update id (the last bookTicker with id <= the row's; rows before
  the first or after the last bookTicker are left out). Both samples are taken at the same
  instants; comparing message-sampled rows with event-sampled tickers would reject a perfect book
  (p ~ 1e-34 on the fixture) for the sampling design alone.
Two-sample Kolmogorov-Smirnov on all three, k-sample Anderson-Darling on trade size.

Gaps. A golden sample may record windows it knows are incomplete (`capture@gap`: a disconnect,
an update-id or trade-id discontinuity; see `rlx_assets.capture.gaps`), in exchange time and/or
in update ids. Those windows are left out on both sides, so that what the capture missed is not
counted against the reconstruction: book rows and bookTicker updates with ids inside an id window,
trades (golden and reconstructed) with times inside a time window. Nothing is paired across a
gap either: a spread or a carried ticker is compared only with a row on the same side of every id
window, an inter-arrival time only between trades on the same side of every time window. The
report lists the gaps and counts what they took out.
`anderson_ksamp`'s p-value is interpolated from a table and floored at 0.001 and capped at 0.25;
it is reported as scipy gives it and `ad_trade_size_p_clamped` says when it hit a bound.

Verdict: PASS when all hold, else FAIL with the reasons listed in `verdict_reasons`:
- at least `min_compared` bookTicker updates were compared and `top_of_book_agreement` is at
  least `min_agreement`;
- `trade_agreement` (trades identical in price, quantity and side over all trade ids seen on
  either side in the window) is at least `min_agreement`;
- every p-value that could be computed is at least `alpha`. A test needs `min_samples` values on
  each side (and Anderson-Darling two distinct values); a test left out is listed, not failed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.fidelity_report import FAIL, PASS, FidelityReport, FidelityThresholds
from rlx_assets.engine.golden import GoldenSample
from rlx_assets.engine.golden_gaps import Gaps, Windows, describe_gaps
from rlx_assets.schema import event_time_ns

RECONSTRUCTED, GOLDEN = "reconstructed", "golden"  # the order of each sample pair, for plot labels
TRADE_SIZE, INTER_ARRIVAL, SPREAD = "trade_size", "inter_arrival_ms", "spread"
AD_P_FLOOR, AD_P_CAP = 0.001, 0.25  # scipy's table bounds for anderson_ksamp without `method`
_NS_PER_MS = 1e6


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Decimals as float64 (nulls as NaN), for statistics only."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _same(a: pa.ChunkedArray | pa.Array, b: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Exact decimal equality; an empty level (null) never equals a value."""
    return pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)


def _span(times: list[np.ndarray]) -> tuple[object, object] | None:
    """(min, max) over arrays, as np.min/np.max over their concatenation; None if all empty."""
    times = [t for t in times if t.size]
    if not times:
        return None
    return np.min([t.min() for t in times]), np.max([t.max() for t in times])


def _window(golden: GoldenSample, ours: tuple[object, object] | None) -> tuple[int, int] | None:
    """The common span of the golden sample's exchange times and ours (`ours`: the span of the
    book's and trades' event times)."""
    theirs = _span(
        [
            golden.depth_updates["event_time_ns"].to_numpy(),
            golden.trades["trade_time_ns"].to_numpy(),
        ]
    )
    if theirs is None or ours is None:
        return None
    start, end = max(theirs[0], ours[0]), min(theirs[1], ours[1])
    return (int(start), int(end)) if start <= end else None


def _unique_sorted(table: pa.Table, key: str) -> pa.Table:
    """Rows sorted by `key`, the first occurrence kept where a capture repeated one (reconnects)."""
    table = table.take(pc.sort_indices(table, sort_keys=[(key, "ascending")]))
    keys = table[key].to_numpy()
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return table.filter(pa.array(first))


def _p_value(test, a: np.ndarray, b: np.ndarray, min_samples: int) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]  # a null quantity is no observation
    if a.size < min_samples or b.size < min_samples:
        return None
    with warnings.catch_warnings():
        # ks_2samp warns when it falls back to the asymptotic p-value, anderson_ksamp when its
        # p-value hits the table bounds; both are expected here and reported through the fields.
        warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
        try:
            return float(test(a, b))
        except ValueError:  # e.g. Anderson-Darling with a single distinct value overall
            return None


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    # scipy.stats is imported on first use: it costs seconds at every Dagster load otherwise.
    from scipy import stats

    return stats.ks_2samp(a, b).pvalue


def _ad(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    try:
        result = stats.anderson_ksamp([a, b], variant="midrank")
    except TypeError:  # scipy < 1.17 has no `variant`; midrank is its default there
        result = stats.anderson_ksamp([a, b])
    return result.pvalue


def _compare_top(report: FidelityReport, rows: pa.Table, tickers: pa.Table, gaps: Windows) -> None:
    """bookTicker updates against rows of the same update id (see module docstring)."""
    sequence = rows["sequence_number"].to_numpy()
    ids = tickers["update_id"].to_numpy()
    position = np.searchsorted(sequence, ids)
    clipped = np.minimum(position, sequence.size - 1)
    exact = (position < sequence.size) & (sequence[clipped] == ids)
    report.book_ticker_compared = int(exact.sum())
    if exact.any():
        mine = rows.take(pa.array(clipped[exact]))
        theirs = tickers.filter(pa.array(exact))
        agree = _top_agrees(mine, theirs)
        report.book_ticker_agreeing = int(agree.sum())
        report.top_of_book_agreement = report.book_ticker_agreeing / report.book_ticker_compared
        report.best_bid_rmse = _rmse(mine["bid_0_price"], theirs["bid_price"])
        report.best_ask_rmse = _rmse(mine["ask_0_price"], theirs["ask_price"])

    # Diagnostic: a ticker carried to the end of its message when no later ticker precedes it.
    next_id = np.append(ids[1:], np.iinfo(np.int64).max)
    carried = (
        (position < sequence.size)
        & (next_id > sequence[clipped])
        & (gaps.side(ids) == gaps.side(sequence[clipped]))
    )
    report.book_ticker_carried_compared = int(carried.sum())
    if carried.any():
        agree = _top_agrees(
            rows.take(pa.array(clipped[carried])), tickers.filter(pa.array(carried))
        )
        report.top_of_book_agreement_carried = float(agree.mean())


def _top_agrees(mine: pa.Table, theirs: pa.Table) -> np.ndarray:
    return (
        _same(mine["bid_0_price"], theirs["bid_price"])
        & _same(mine["bid_0_size"], theirs["bid_size"])
        & _same(mine["ask_0_price"], theirs["ask_price"])
        & _same(mine["ask_0_size"], theirs["ask_size"])
    )


def _rmse(mine: pa.ChunkedArray, theirs: pa.ChunkedArray) -> float | None:
    difference = _floats(mine) - _floats(theirs)
    difference = difference[~np.isnan(difference)]  # an empty side has no price to be off by
    return float(np.sqrt(np.mean(difference**2))) if difference.size else None


def _spreads(rows: pa.Table, tickers: pa.Table, gaps: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Rebuilt spread at each row vs the exchange's spread at the same update id (the last
    ticker at or before it, not across a gap)."""
    sequence = rows["sequence_number"].to_numpy()
    ids = tickers["update_id"].to_numpy()
    mine = _floats(rows["ask_0_price"]) - _floats(rows["bid_0_price"])
    theirs_all = _floats(tickers["ask_price"]) - _floats(tickers["bid_price"])
    position = np.searchsorted(ids, sequence, side="right") - 1
    # Only rows the ticker stream covers: after its first update and not past its last.
    covered = (position >= 0) & (sequence <= (ids[-1] if ids.size else -1))
    covered &= gaps.side(ids[np.maximum(position, 0)] if ids.size else sequence) == gaps.side(
        sequence
    )
    theirs = np.full(sequence.size, np.nan)
    theirs[covered] = theirs_all[position[covered]]
    both = covered & ~np.isnan(mine) & ~np.isnan(theirs)
    return mine[both], theirs[both]


def _inter_arrival_ms(times: np.ndarray, trade_ids: np.ndarray, gaps: Windows) -> np.ndarray:
    order = np.lexsort((trade_ids, times))
    ordered = times[order]
    side = gaps.side(ordered)
    same_side = side[1:] == side[:-1]
    return np.diff(ordered)[same_side].astype(np.float64) / _NS_PER_MS


def _compare_trades(
    report: FidelityReport,
    trades: pa.Table,
    golden: pa.Table,
    start: int,
    end: int,
    gaps: Windows,
) -> None:
    mine_time = event_time_ns(trades)
    inside = (mine_time >= start) & (mine_time <= end)
    kept = inside & ~gaps.inside(mine_time)
    report.trades_excluded_reconstructed = int(inside.sum() - kept.sum())
    mine = trades.filter(pa.array(kept))
    mine_time = mine_time[kept]
    theirs_time = golden["trade_time_ns"].to_numpy()
    theirs = golden.filter(pa.array((theirs_time >= start) & (theirs_time <= end)))
    theirs = _unique_sorted(theirs, "trade_id")
    excluded = gaps.inside(theirs["trade_time_ns"].to_numpy())
    report.trades_excluded_golden = int(excluded.sum())
    theirs = theirs.filter(pa.array(~excluded))
    report.trades_reconstructed = mine.num_rows
    report.trades_golden = theirs.num_rows

    mine_ids = mine["trade_id"].to_numpy()
    theirs_ids = theirs["trade_id"].to_numpy()
    position = np.searchsorted(theirs_ids, mine_ids)
    clipped = np.minimum(position, max(theirs_ids.size - 1, 0))
    matched = (position < theirs_ids.size) & (
        theirs_ids[clipped] == mine_ids if theirs_ids.size else False
    )
    report.trades_matched = int(matched.sum())
    if matched.any():
        a = mine.filter(pa.array(matched))
        b = theirs.take(pa.array(clipped[matched]))
        identical = (
            _same(a["price"], b["price"])
            & _same(a["quantity"], b["quantity"])
            & _same(pc.utf8_lower(a["side"]), b["side"])
        )
        report.trades_identical = int(identical.sum())
    seen = np.union1d(mine_ids, theirs_ids).size
    report.trade_agreement = report.trades_identical / seen if seen else None

    report.samples[TRADE_SIZE] = (_floats(mine["quantity"]), _floats(theirs["quantity"]))
    report.samples[INTER_ARRIVAL] = (
        _inter_arrival_ms(mine_time, mine_ids, gaps),
        _inter_arrival_ms(theirs["trade_time_ns"].to_numpy(), theirs_ids, gaps),
    )


def _verdict(report: FidelityReport, thresholds: FidelityThresholds) -> None:
    reasons = []
    if report.golden_window_start is None:
        reasons.append("no common window between the reconstructed data and the golden sample")
    if report.book_ticker_compared < thresholds.min_compared:
        reasons.append(
            f"only {report.book_ticker_compared} bookTicker updates compared"
            f" (< {thresholds.min_compared})"
        )
    elif (report.top_of_book_agreement or 0.0) < thresholds.min_agreement:
        reasons.append(
            f"top_of_book_agreement {report.top_of_book_agreement:.6f} < {thresholds.min_agreement}"
        )
    if report.trade_agreement is not None and report.trade_agreement < thresholds.min_agreement:
        reasons.append(f"trade_agreement {report.trade_agreement:.6f} < {thresholds.min_agreement}")
    for name in ("ks_trade_size_p", "ks_inter_arrival_p", "ks_spread_p", "ad_trade_size_p"):
        value = getattr(report, name)
        if value is None:
            report.tests_skipped.append(name)
        elif value < thresholds.alpha:
            reasons.append(f"{name} {value:.3g} < alpha {thresholds.alpha}")
    report.verdict_reasons = reasons
    report.verdict = FAIL if reasons else PASS


# Columns `compare_day` reads of each input.
BOOK_COLUMNS = [
    "origin_time",
    "received_time",
    "sequence_number",
    "bid_0_price",
    "bid_0_size",
    "ask_0_price",
    "ask_0_size",
]
TRADE_COLUMNS = ["origin_time", "received_time", "trade_id", "price", "quantity", "side"]
_TIME_COLUMNS = ["origin_time", "received_time"]

# A source reads the named columns of an input as record batches in its stored order; it is
# called once per pass.
BatchSource = Callable[[list[str]], Iterable[pa.RecordBatch]]


def compare_day_batches(
    book: BatchSource,
    trades: BatchSource,
    golden: GoldenSample,
    thresholds: FidelityThresholds | None = None,
) -> FidelityReport:
    """`compare_day` reading the day's book and trades in batches: a first pass over their time
    columns finds the common window, a second keeps only their rows inside it (a golden sample
    covers minutes, so these are few)."""
    ours = _span(
        [
            np.array([t.min(), t.max()])
            for source in (book, trades)
            for batch in source(_TIME_COLUMNS)
            if (t := event_time_ns(batch)).size
        ]
    )
    window = _window(golden, ours)
    inside = {}
    for name, source, columns in (("book", book, BOOK_COLUMNS), ("trades", trades, TRADE_COLUMNS)):
        kept = []
        for batch in source(columns) if window is not None else ():
            time = event_time_ns(batch)
            kept.append(batch.filter(pa.array((time >= window[0]) & (time <= window[1]))))
        schema = kept[0].schema if kept else None
        inside[name] = (
            pa.Table.from_batches(kept, schema) if kept else pa.table({c: [] for c in columns})
        )
    return _compare(inside["book"], inside["trades"], golden, window, thresholds)


def compare_day(
    book: pa.Table,
    trades: pa.Table,
    golden: GoldenSample,
    thresholds: FidelityThresholds | None = None,
) -> FidelityReport:
    """Judge a day's `reconstructed_book` and `raw_trades` against a parsed golden sample."""
    ours = _span([event_time_ns(book), event_time_ns(trades)])
    return _compare(book, trades, golden, _window(golden, ours), thresholds)


def _compare(
    book: pa.Table,
    trades: pa.Table,
    golden: GoldenSample,
    window: tuple[int, int] | None,
    thresholds: FidelityThresholds | None,
) -> FidelityReport:
    """The report of the rows of `book` and `trades` inside `window` (other rows are ignored)."""
    thresholds = thresholds or FidelityThresholds()
    report = FidelityReport(
        golden_malformed_lines=golden.malformed_lines,
        golden_gaps=golden.gaps.num_rows,
        golden_gap_windows=describe_gaps(golden.gaps),
    )
    gaps = Gaps.of(golden)
    if window is not None:
        start, end = window
        report.golden_window_start, report.golden_window_end = start, end
        report.golden_gap_excluded_ms = gaps.times.covered_ns(start, end) / _NS_PER_MS
        time = event_time_ns(book)
        rows = _unique_sorted(
            book.filter(pa.array((time >= start) & (time <= end))), "sequence_number"
        )
        in_gap = gaps.ids.inside(rows["sequence_number"].to_numpy())
        report.book_rows_excluded = int(in_gap.sum())
        rows = rows.filter(pa.array(~in_gap))
        report.book_rows_in_window = rows.num_rows
        tickers = _unique_sorted(golden.book_ticker, "update_id")
        if rows.num_rows:
            sequence = rows["sequence_number"].to_numpy()
            ids = tickers["update_id"].to_numpy()
            in_gap = gaps.ids.inside(ids)
            span = (ids >= sequence[0]) & (ids <= sequence[-1])
            report.book_ticker_excluded = int((span & in_gap).sum())
            tickers = tickers.filter(pa.array(~in_gap))
            ids = tickers["update_id"].to_numpy()
            inside = (ids >= sequence[0]) & (ids <= sequence[-1])
            report.book_ticker_in_window = int(inside.sum())
            _compare_top(report, rows, tickers.filter(pa.array(inside)), gaps.ids)
            report.samples[SPREAD] = _spreads(rows, tickers, gaps.ids)
            report.spread_rows_compared = int(report.samples[SPREAD][0].size)
        _compare_trades(report, trades, golden.trades, start, end, gaps.times)

    minimum = thresholds.min_samples
    empty = (np.zeros(0), np.zeros(0))
    report.ks_trade_size_p = _p_value(_ks, *report.samples.get(TRADE_SIZE, empty), minimum)
    report.ks_inter_arrival_p = _p_value(_ks, *report.samples.get(INTER_ARRIVAL, empty), minimum)
    report.ks_spread_p = _p_value(_ks, *report.samples.get(SPREAD, empty), minimum)
    report.ad_trade_size_p = _p_value(_ad, *report.samples.get(TRADE_SIZE, empty), minimum)
    if report.ad_trade_size_p is not None:
        report.ad_trade_size_p_clamped = report.ad_trade_size_p in (AD_P_FLOOR, AD_P_CAP)
    _verdict(report, thresholds)
    return report
