"""What one asset step hands to telemetry: its partition, wall time, peak memory, and the
metadata of each output and check it produced (plain values, as the assets computed them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OutputRecord:
    asset: str
    metadata: Mapping[str, object]
    value: object = None  # the output's value when the step returns one (e.g. a table)


@dataclass(frozen=True)
class CheckRecord:
    asset: str
    check: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    metadata: Mapping[str, object]


@dataclass
class StepRecord:
    step: str  # the Dagster op: one asset, or several (reconstructed_book and book_state)
    partition: str  # "2024-08-08|BTC-USDT"
    exchange: str
    symbol: str
    date: str
    run_id: str
    start_time_ns: int
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    outputs: list[OutputRecord] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)

    def attributes(self, asset: str, **extra: str | int) -> dict[str, str | int]:
        """The attributes of every point: exchange, symbol, date, asset, then `extra`."""
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "date": self.date,
            "asset": asset,
            **extra,
        }
