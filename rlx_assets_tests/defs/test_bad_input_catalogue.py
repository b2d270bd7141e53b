"""The bad-input catalogue: damaged copies of the committed real-data day, materialized through
Dagster as a user does.

Every entry ends in one of three ways, asserted precisely: a short error naming the file, the
column and the reason; rows quarantined with their reason (counted in metadata, kept in the
quarantine file); or a failed check carrying its figure. For every entry the raw input is
byte-identical afterwards, a failed asset leaves no output file (nor staged or spilled files),
and once the input is corrected the same assets materialize cleanly, to the same bytes as a clean
run. Catalogue and outcomes are listed in README.md ("Bad input").

One file, over 450 lines: the catalogue is one table of entries and the one harness that runs
them; a reader checks an entry against its neighbours.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from rlx_assets.engine.days import day_bounds_ns
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE, make_settings, materialize_day

DAY = FIXTURE_DAYS[0]
MIDNIGHT = day_bounds_ns(DAY)[1]
SYMBOL = "BTC-USDT"
PARTITION = f"exchange=BINANCE/symbol={SYMBOL}"
RAW = {"trades": "raw_trades", "book": "raw_book_snapshots", "book_delta_v2": "raw_book_deltas"}
BOOK_ASSETS = ("reconstructed_book", "book_state")
ALL_RAW = tuple(RAW.values())
MAX_MESSAGE_CHARS = 300


def day_file(lake: Path, table: str, name: str = "1.parquet") -> Path:
    return lake / table / PARTITION / f"dt={DAY}" / name


def uri(path: Path) -> str:
    return f"file://{path}"


# -- damage ------------------------------------------------------------------------------------


def rewrite(table: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[Path], None]:
    """Apply `change` to the table's file filed under DAY."""

    def damage(lake: Path) -> None:
        path = day_file(lake, table)
        change(pl.read_parquet(path)).write_parquet(path)

    return damage


def in_day_every(n: int) -> pl.Expr:
    """Every n-th row among those stamped inside DAY (the file's last rows carry the next
    day's stamps: they belong to, and are judged in, that partition)."""
    return ((pl.int_range(pl.len()) % n) == 0) & (pl.col("origin_time") < MIDNIGHT)


def set_every(column: str, value: float, n: int) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda frame: frame.with_columns(
        pl.when(in_day_every(n)).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def damaged_rows(table: str, n: int) -> int:
    """How many rows `set_every(..., n)` damages in the committed file."""
    return pl.read_parquet(day_file(SLICE, table)).select(in_day_every(n).sum()).item()


def cut_in_half(table: str) -> Callable[[Path], None]:
    def damage(lake: Path) -> None:
        path = day_file(lake, table)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return damage


def replace_bytes(table: str, data: bytes) -> Callable[[Path], None]:
    def damage(lake: Path) -> None:
        day_file(lake, table).write_bytes(data)

    return damage


def remove_day(*tables: str) -> Callable[[Path], None]:
    def damage(lake: Path) -> None:
        for table in tables:
            shutil.rmtree(day_file(lake, table).parent)

    return damage


def book_split_with_fewer_levels(lake: Path) -> None:
    """The day's snapshots in two files; the second written with 10 levels instead of 20."""
    path = day_file(lake, "book")
    table = pq.read_table(path)
    half = table.num_rows // 2
    deep = tuple(f"{side}_{level}_" for side in ("bid", "ask") for level in range(10, 20))
    shallow = [name for name in table.column_names if not name.startswith(deep)]
    pq.write_table(table.slice(0, half), path)
    pq.write_table(table.slice(half).select(shallow), day_file(lake, "book", "2.parquet"))


# -- outcome -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    result: object
    lake: Path
    storage: Path

    def materialized(self) -> dict[str, dict]:
        return {
            event.materialization.asset_key.to_user_string(): {
                key: value.value for key, value in event.materialization.metadata.items()
            }
            for event in self.result.get_asset_materialization_events()
        }

    def check(self, asset: str, name: str):
        for evaluation in self.result.get_asset_check_evaluations():
            if evaluation.asset_key.to_user_string() == asset and evaluation.check_name == name:
                return evaluation
        raise AssertionError(f"{asset}.{name} was not evaluated")

    def failures(self) -> dict[str, tuple[str, str]]:
        """Failed step -> (class, message) of the error the user sees under Dagster's own
        "Error occurred while executing op" wrapper."""
        found = {}
        for event in self.result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error
                shown = error.cause if error.cause is not None else error
                # Dagster prefixes the message with the exception's qualified name.
                named, _, message = shown.message.strip().partition(": ")
                assert named.endswith(shown.cls_name), shown.message
                found[event.step_key] = (shown.cls_name, message)
        return found

    def output_files(self, asset: str) -> list[Path]:
        return sorted(path for path in (self.storage / asset).rglob("*") if path.is_file())


def fails(asset: str, error: str, *fragments: str) -> Callable[[Outcome], None]:
    """The asset's step fails with `error`, a one-line message holding every fragment."""

    def expect(outcome: Outcome) -> None:
        assert not outcome.result.success
        failures = outcome.failures()
        assert asset in failures, f"{asset} did not fail: {failures}"
        cls_name, message = failures[asset]
        assert cls_name == error, message
        # Short and on one line, whatever the length of the (temporary) lake's path.
        shown = message.replace(str(outcome.lake), "<lake>")
        assert "\n" not in message and len(shown) <= MAX_MESSAGE_CHARS, message
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        assert asset not in outcome.materialized()

    return expect


def fails_on_file(asset: str, table: str, *fragments: str, name: str = "1.parquet"):
    """`fails` with a message that starts with the damaged file's URI."""

    def expect(outcome: Outcome) -> None:
        path = uri(day_file(outcome.lake, table, name))
        fails(asset, "SourceSchemaError", f"{path}: ", *fragments)(outcome)
        assert outcome.failures()[asset][1].startswith(path)

    return expect


def quarantines(asset: str, reason: str, count: int, limit_passes: bool = False):
    """`count` rows quarantined for `reason`, in metadata, in the quarantine file (as read, with
    the reason), and in `rows_quarantined_within_limit` with the share it judged."""

    def expect(outcome: Outcome) -> None:
        assert outcome.result.success
        raw = outcome.materialized()[asset]
        assert raw["rows_quarantined"] == count
        assert raw["quarantine_reasons"] == {reason: count}
        quarantined = pl.read_parquet(raw["quarantine_path"])
        assert quarantined.height == count
        assert set(quarantined["reason"]) == {reason}
        check = outcome.check(asset, "rows_quarantined_within_limit")
        assert check.passed is limit_passes
        share = count / (raw["dagster/row_count"] + count)
        assert check.metadata["quarantined_share"].value == pytest.approx(share)
        assert check.metadata["threshold"].value == 0.001
        assert check.metadata["rows_quarantined"].value == count

    return expect


def check_fails(asset: str, name: str, severity: str, **figures: object):
    def expect(outcome: Outcome) -> None:
        check = outcome.check(asset, name)
        assert not check.passed
        assert check.severity.value == severity
        for key, value in figures.items():
            assert check.metadata[key].value == value, key

    return expect


def every(*expectations: Callable[[Outcome], None]) -> Callable[[Outcome], None]:
    def expect(outcome: Outcome) -> None:
        for expectation in expectations:
            expectation(outcome)

    return expect


def same_as_clean(asset: str, **figures: object):
    """Nothing lost, nothing invented: the asset's bytes are a clean run's."""

    def expect(outcome: Outcome) -> None:
        assert outcome.result.success
        raw = outcome.materialized()[asset]
        assert raw["content_sha256"] == clean_hashes()[asset]
        for key, value in figures.items():
            assert raw[key] == value, key
        failed = [
            e.check_name for e in outcome.result.get_asset_check_evaluations() if not e.passed
        ]
        assert failed == []

    return expect


# -- the catalogue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: str
    damage: Callable[[Path], None]
    expect: Callable[[Outcome], None]
    assets: tuple[str, ...] | None  # None: the whole graph
    settings: dict = field(default_factory=dict)
    symbol: str = SYMBOL


def _ms(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("origin_time") // 10**6, pl.col("received_time") // 10**6)


def _us(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("origin_time") // 10**3, pl.col("received_time") // 10**3)


YEAR_2020 = 1_580_000_000 * 10**9
DEGRADED = check_fails("reconstructed_book", "book_replayed_from_deltas", "WARN", delta_messages=0)


def no_day_rows(asset: str, severity: str, files: int) -> Callable[[Outcome], None]:
    return check_fails(asset, "day_has_rows", severity, files_under_dt=files, rows_kept=0)


CATALOGUE = [
    Entry(
        "truncated_file",
        cut_in_half("trades"),
        fails_on_file("raw_trades", "trades", "not a readable Parquet file"),
        ("raw_trades",),
    ),
    Entry(
        "not_parquet",
        replace_bytes("book", b"origin_time,price\n1723161600000000000,61000.5\n"),
        fails_on_file("raw_book_snapshots", "book", "not a readable Parquet file"),
        ("raw_book_snapshots",),
    ),
    Entry(
        "zero_byte_file",
        replace_bytes("book_delta_v2", b""),
        fails_on_file("raw_book_deltas", "book_delta_v2", "not a readable Parquet file", "0 bytes"),
        ("raw_book_deltas",),
    ),
    Entry(
        "missing_column",
        rewrite("book", lambda f: f.drop("sequence_number")),
        fails_on_file("raw_book_snapshots", "book", "missing column(s) ['sequence_number']"),
        ("raw_book_snapshots",),
    ),
    Entry(
        "renamed_column",
        rewrite("trades", lambda f: f.rename({"quantity": "qty"})),
        fails_on_file(
            "raw_trades",
            "trades",
            "missing column(s) ['quantity'] for table 'trades'",
            "columns not in the table: ['qty']",
        ),
        ("raw_trades",),
    ),
    Entry(
        "prices_as_strings",
        rewrite("trades", lambda f: f.with_columns(pl.col("price").cast(pl.String))),
        fails_on_file("raw_trades", "trades", "column 'price': expected double, found"),
        ("raw_trades",),
    ),
    Entry(
        "times_as_strings",
        rewrite("book_delta_v2", lambda f: f.with_columns(pl.col("origin_time").cast(pl.String))),
        fails_on_file(
            "raw_book_deltas",
            "book_delta_v2",
            "column 'origin_time': expected int64 nanoseconds or a timestamp, found",
        ),
        ("raw_book_deltas",),
    ),
    Entry(
        "times_in_milliseconds",
        rewrite("trades", _ms),
        every(
            quarantines("raw_trades", "time_far_from_filed_dt", 3364),
            check_fails("raw_trades", "day_has_rows", "ERROR", rows_kept=0),
        ),
        ("raw_trades",),
    ),
    Entry(
        "times_in_microseconds",
        rewrite("book_delta_v2", _us),
        quarantines("raw_book_deltas", "time_far_from_filed_dt", 43427),
        ("raw_book_deltas",),
    ),
    Entry(
        "rows_stamped_years_away",
        rewrite(
            "trades",
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()).is_in([10, 500, 1000, 1500, 2000]))
                .then(YEAR_2020)
                .otherwise(pl.col("origin_time"))
                .alias("origin_time")
            ),
        ),
        quarantines("raw_trades", "time_far_from_filed_dt", 5),
        ("raw_trades",),
    ),
    Entry(
        "nan_prices",
        rewrite("trades", set_every("price", float("nan"), 100)),
        quarantines("raw_trades", "null:price", damaged_rows("trades", 100)),
        ("raw_trades",),
    ),
    Entry(
        "infinite_sizes",
        rewrite("book_delta_v2", set_every("size", float("inf"), 100)),
        quarantines("raw_book_deltas", "not_finite:size", damaged_rows("book_delta_v2", 100)),
        ("raw_book_deltas",),
    ),
    Entry(
        "negative_prices",
        rewrite("book", set_every("bid_0_price", -61_000.0, 50)),
        quarantines("raw_book_snapshots", "not_positive:bid_0_price", damaged_rows("book", 50)),
        ("raw_book_snapshots",),
    ),
    Entry(
        "zero_prices",
        rewrite("trades", set_every("price", 0.0, 100)),
        quarantines("raw_trades", "not_positive:price", damaged_rows("trades", 100)),
        ("raw_trades",),
    ),
    Entry(
        "negative_sizes",
        rewrite("book_delta_v2", set_every("size", -1.0, 100)),
        quarantines("raw_book_deltas", "negative:size", damaged_rows("book_delta_v2", 100)),
        ("raw_book_deltas",),
    ),
    Entry(
        "zero_trade_quantities",
        rewrite("trades", set_every("quantity", 0.0, 100)),
        quarantines("raw_trades", "not_positive:quantity", damaged_rows("trades", 100)),
        ("raw_trades",),
    ),
    Entry(
        "a_few_bad_rows_within_the_limit",
        rewrite("book_delta_v2", set_every("price", -1.0, 20_000)),
        quarantines(
            "raw_book_deltas",
            "not_positive:price",
            damaged_rows("book_delta_v2", 20_000),
            limit_passes=True,
        ),
        ("raw_book_deltas",),
    ),
    Entry(
        "sides_not_buy_or_sell",
        rewrite("trades", lambda f: f.with_columns(pl.col("side").str.to_uppercase())),
        quarantines("raw_trades", "side_not_buy_or_sell", 3345),
        ("raw_trades",),
    ),
    Entry(
        "duplicated_rows",
        rewrite("book_delta_v2", lambda f: pl.concat([f, f.slice(20_000, 300)])),
        same_as_clean("raw_book_deltas", duplicates_dropped=300),
        ("raw_book_deltas",),
    ),
    Entry(
        "unsorted_rows",
        rewrite("trades", lambda f: f.sample(fraction=1.0, shuffle=True, seed=7)),
        same_as_clean("raw_trades", duplicates_dropped=0),
        ("raw_trades",),
    ),
    Entry(
        "empty_table",
        rewrite("trades", lambda f: f.head(0)),
        no_day_rows("raw_trades", "ERROR", files=1),
        ("raw_trades",),
    ),
    Entry(
        "missing_day",
        remove_day("trades", "book", "book_delta_v2"),
        every(
            no_day_rows("raw_trades", "ERROR", files=0),
            no_day_rows("raw_book_snapshots", "ERROR", files=0),
            no_day_rows("raw_book_deltas", "WARN", files=0),
            DEGRADED,
        ),
        None,
    ),
    Entry(
        "day_without_trades",
        remove_day("trades"),
        no_day_rows("raw_trades", "ERROR", files=0),
        ("raw_trades",),
    ),
    Entry(
        "day_with_only_trades",
        remove_day("book", "book_delta_v2"),
        every(
            no_day_rows("raw_book_snapshots", "ERROR", files=0),
            no_day_rows("raw_book_deltas", "WARN", files=0),
            DEGRADED,
        ),
        (*ALL_RAW, *BOOK_ASSETS),
    ),
    Entry(
        "day_without_deltas",
        rewrite("book_delta_v2", lambda f: f.head(0)),
        every(
            no_day_rows("raw_book_deltas", "WARN", files=1),
            check_fails(
                "reconstructed_book",
                "book_replayed_from_deltas",
                "WARN",
                strategy="snapshot_anchored",
            ),
        ),
        (*ALL_RAW, *BOOK_ASSETS),
    ),
    Entry(
        "schema_changes_between_the_days_files",
        book_split_with_fewer_levels,
        fails_on_file(
            "raw_book_snapshots",
            "book",
            "lacks column(s) ['bid_10_price', 'bid_10_size', 'ask_10_price', 'ask_10_size',"
            " ... 36 more]",
            "of 1.parquet beside it (the schema changes between the day's files)",
            name="2.parquet",
        ),
        ("raw_book_snapshots",),
    ),
    Entry(
        "another_symbols_prices",
        # ETH-USDT traded near 2,800 that day: a valid trades file, but not BTC-USDT's.
        rewrite("trades", lambda f: f.with_columns(pl.col("price") / 22)),
        fails_on_file(
            "raw_trades",
            "trades",
            "column 'price': prices near 2803.73, the day's book near 61693.5 and book_delta_v2"
            " near 61782.8 (another symbol's file filed under this one?)",
        ),
        ("raw_trades",),
    ),
    Entry(
        "another_symbol_in_its_symbol_column",
        rewrite("trades", lambda f: f.with_columns(symbol=pl.lit("ETH-USDT"))),
        fails_on_file(
            "raw_trades",
            "trades",
            "column 'symbol': holds ['ETH-USDT'], not 'BTC-USDT'",
        ),
        ("raw_trades",),
    ),
]


# -- running -----------------------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _run(entry: Entry, lake: Path, storage: Path, settings: dict, symbol: str) -> Outcome:
    result = materialize_day(
        make_settings(storage, lake=lake, **settings),
        DAY,
        symbol=symbol,
        selection=list(entry.assets) if entry.assets is not None else None,
    )
    return Outcome(result, lake, storage)


_CLEAN: dict[str, str] = {}


def clean_hashes() -> dict[str, str]:
    return _CLEAN


@pytest.fixture(scope="module", autouse=True)
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The raw assets of the undamaged day, once: what a corrected input must give again."""
    storage = tmp_path_factory.mktemp("clean")
    result = materialize_day(make_settings(storage), DAY, selection=list(ALL_RAW))
    assert result.success
    outcome = Outcome(result, SLICE, storage)
    _CLEAN.update({asset: outcome.materialized()[asset]["content_sha256"] for asset in ALL_RAW})


def test_the_catalogue_has_at_least_twenty_kinds_of_bad_input() -> None:
    assert len({entry.id for entry in CATALOGUE}) == len(CATALOGUE) >= 20


@pytest.mark.parametrize("entry", CATALOGUE, ids=[entry.id for entry in CATALOGUE])
def test_bad_input(entry: Entry, tmp_path: Path) -> None:
    lake, storage = tmp_path / "lake", tmp_path / "assets"
    shutil.copytree(SLICE, lake)
    entry.damage(lake)
    damaged = _digests(lake)

    outcome = _run(entry, lake, storage, entry.settings, entry.symbol)

    entry.expect(outcome)
    assert _digests(lake) == damaged  # raw input never modified
    for asset in outcome.failures():
        assert outcome.output_files(asset) == []  # no partial output
    for scratch in (".staging", ".spill"):
        assert not any(path.is_file() for path in (storage / scratch).rglob("*"))

    # Corrected: the same assets materialize cleanly, to a clean run's bytes; no quarantine is
    # left from the damaged run.
    shutil.rmtree(lake)
    shutil.copytree(SLICE, lake)
    fixed = _run(entry, lake, storage, {}, SYMBOL)
    assert fixed.result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name)
        for e in fixed.result.get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == []
    materialized = fixed.materialized()
    for asset in ALL_RAW:
        if asset in materialized:
            assert materialized[asset]["content_sha256"] == clean_hashes()[asset]
            assert materialized[asset]["rows_quarantined"] == 0
    assert not any(path.is_file() for path in (storage / "quarantine").rglob("*"))


@pytest.mark.parametrize("symbol", ["../BTC-USDT", "BTC/USDT", "BTC\\USDT"])
def test_absurd_symbols_are_refused_when_the_settings_load(symbol: str, tmp_path: Path) -> None:
    """A symbol becomes a folder name: one that would leave its folder is refused before
    anything runs (see also test_path_safety)."""
    with pytest.raises(ValueError, match=r"RLX_SYMBOLS .* cannot be a folder name"):
        make_settings(tmp_path / "assets", symbols=[symbol])
    assert not (tmp_path / "assets").exists()
