"""What cleaning a partition did with every row read (`RawAccount`): kept, on other days,
duplicates, quarantined by reason; and the grids and digits of its decimals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

DIGITS_KEYS = {"price": b"rlx.price_digits", "size": b"rlx.size_digits"}


@dataclass
class RawAccount:
    """What happened to every row read for one partition of a raw table."""

    rows_read: int = 0
    rows_kept: int = 0
    rows_other_days: int = 0
    duplicates_dropped: int = 0
    quarantined: Counter = field(default_factory=Counter)
    rows_from_neighbour_dt: int = 0
    origin_time_invalid: int = 0
    price_step_exponent: int = 0
    size_step_exponent: int = 0
    # The grids the day's own values point to (the ones used when none is given).
    inferred_price_step_exponent: int = 0
    inferred_size_step_exponent: int = 0
    precision_loss_warnings: int = 0
    values_on_grid_checked: int = 0
    digits: dict[str, int] = field(default_factory=dict)  # "price"/"size" -> fractional digits
    sorted_runs: int = 0  # runs the day's rows were sorted in (1 when they came in order)
    # Converted and written as they were placed, the day's grids proving the first rows' right
    # (deltas in order); otherwise in a pass of their own after the placing.
    written_while_placing: bool = False

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def accounted(self) -> bool:
        gone = self.rows_other_days + self.duplicates_dropped + self.rows_quarantined
        return self.rows_read == self.rows_kept + gone

    def digits_metadata(self) -> dict[bytes, bytes]:
        """Recorded with the table: every value is exact at these digits, so readers scale to
        int64 without trial casts."""
        return {DIGITS_KEYS[key]: str(value).encode() for key, value in self.digits.items()}
