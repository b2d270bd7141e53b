"""What the fidelity comparison reports: its thresholds, the report (one row), its Arrow schema."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

PASS = "PASS"
FAIL = "FAIL"
_INT, _FLOAT, _STR, _BOOL = pa.int64(), pa.float64(), pa.string(), pa.bool_()

# The `fidelity_report` columns of DESIGN section 4, in order.
REPORT_COLUMNS = (
    "golden_window_start",
    "golden_window_end",
    "top_of_book_agreement",
    "best_bid_rmse",
    "best_ask_rmse",
    "ks_trade_size_p",
    "ks_inter_arrival_p",
    "ks_spread_p",
    "ad_trade_size_p",
    "verdict",
)


REPORT_SCHEMA = pa.schema(
    [
        ("golden_window_start", _INT),
        ("golden_window_end", _INT),
        ("top_of_book_agreement", _FLOAT),
        ("best_bid_rmse", _FLOAT),
        ("best_ask_rmse", _FLOAT),
        ("ks_trade_size_p", _FLOAT),
        ("ks_inter_arrival_p", _FLOAT),
        ("ks_spread_p", _FLOAT),
        ("ad_trade_size_p", _FLOAT),
        ("verdict", _STR),
        ("verdict_reasons", _STR),
        ("ad_trade_size_p_clamped", _BOOL),
        ("tests_skipped", _STR),
        ("book_rows_in_window", _INT),
        ("book_ticker_in_window", _INT),
        ("book_ticker_compared", _INT),
        ("book_ticker_agreeing", _INT),
        ("book_ticker_carried_compared", _INT),
        ("top_of_book_agreement_carried", _FLOAT),
        ("spread_rows_compared", _INT),
        ("trades_golden", _INT),
        ("trades_reconstructed", _INT),
        ("trades_matched", _INT),
        ("trades_identical", _INT),
        ("trade_agreement", _FLOAT),
        ("golden_malformed_lines", _INT),
        ("golden_gaps", _INT),
        ("golden_gap_windows", _STR),
        ("golden_gap_excluded_ms", _FLOAT),
        ("book_rows_excluded", _INT),
        ("book_ticker_excluded", _INT),
        ("trades_excluded_reconstructed", _INT),
        ("trades_excluded_golden", _INT),
    ]
)


@dataclass(frozen=True)
class FidelityThresholds:
    min_agreement: float = 0.999
    alpha: float = 0.01
    min_compared: int = 10  # bookTicker updates compared, below which nothing is proven
    min_samples: int = 20  # per side, for a distribution test to run


@dataclass
class FidelityReport:
    """The `fidelity_report` row (REPORT_COLUMNS first), counts, and the samples for plots."""

    golden_window_start: int | None = None  # ns, exchange time, inclusive
    golden_window_end: int | None = None
    top_of_book_agreement: float | None = None
    best_bid_rmse: float | None = None  # price units, over compared updates
    best_ask_rmse: float | None = None
    ks_trade_size_p: float | None = None
    ks_inter_arrival_p: float | None = None
    ks_spread_p: float | None = None
    ad_trade_size_p: float | None = None
    verdict: str = FAIL
    verdict_reasons: list[str] = field(default_factory=list)
    ad_trade_size_p_clamped: bool = False
    tests_skipped: list[str] = field(default_factory=list)
    book_rows_in_window: int = 0
    book_ticker_in_window: int = 0  # golden updates with ids inside the rows' id span
    book_ticker_compared: int = 0
    book_ticker_agreeing: int = 0
    book_ticker_carried_compared: int = 0
    top_of_book_agreement_carried: float | None = None
    spread_rows_compared: int = 0
    trades_golden: int = 0
    trades_reconstructed: int = 0
    trades_matched: int = 0  # same trade id on both sides
    trades_identical: int = 0  # ... and the same price, quantity and side
    trade_agreement: float | None = None
    golden_malformed_lines: int = 0
    golden_gaps: int = 0  # gap records in the golden sample
    golden_gap_windows: str = ""  # the recorded gaps, as text
    golden_gap_excluded_ms: float = 0.0  # exchange time left out inside the window
    book_rows_excluded: int = 0  # rows in the window with ids inside a gap
    book_ticker_excluded: int = 0  # golden updates in the rows' id span inside a gap
    trades_excluded_reconstructed: int = 0
    trades_excluded_golden: int = 0
    # name -> (reconstructed, golden) float64 samples, for plots; not part of the row.
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        """One `fidelity_report` row: the DESIGN columns, then the counts behind them."""
        values = {name: getattr(self, name) for name in REPORT_COLUMNS}
        for name in self.__dataclass_fields__:
            if name not in values and name != "samples":
                value = getattr(self, name)
                values[name] = "; ".join(value) if isinstance(value, list) else value
        return values

    def table(self) -> pa.Table:
        return pa.Table.from_pylist([self.row()], schema=REPORT_SCHEMA)
