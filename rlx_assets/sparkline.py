"""One-line pictures of a figure over the day, in Unicode block characters.

The Dagster UI shows short text metadata inline on the asset page, while an image (a data-URI
PNG in markdown) sits behind a click, so a sparkline answers "is this day good?" at a glance.
Ten lines of numpy; a package for it would add more than it saves.
"""

from __future__ import annotations

import numpy as np

BLOCKS = "▁▂▃▄▅▆▇█"
NO_DATA = "·"  # a bucket without a value
NS_PER_DAY = 86_400 * 10**9


def day_buckets(
    times_ns: np.ndarray, values: np.ndarray, day_start_ns: int, buckets: int, how: str = "max"
) -> np.ndarray:
    """`values` reduced (max or mean) into `buckets` equal slices of the UTC day; NaN where a
    slice has no finite value. Times outside the day are left out."""
    times = np.asarray(times_ns, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & (times >= day_start_ns) & (times < day_start_ns + NS_PER_DAY)
    slot = ((times[keep] - day_start_ns) * buckets // NS_PER_DAY).astype(np.int64)
    kept = values[keep]
    counts = np.bincount(slot, minlength=buckets)
    if how == "mean":
        reduced = np.bincount(slot, weights=kept, minlength=buckets) / np.maximum(counts, 1)
    elif how == "max":
        reduced = np.full(buckets, -np.inf)
        np.maximum.at(reduced, slot, kept)
    else:
        raise ValueError(f"how must be 'max' or 'mean', not {how!r}")
    return np.where(counts > 0, reduced, np.nan)


def sparkline(values: np.ndarray, top: float | None = None) -> str:
    """One block character per value, scaled from 0 to `top` (default: the largest value);
    `·` for NaN. All zeros draw the lowest block."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    scale = top if top is not None else (float(finite.max()) if finite.size else 0.0)
    out = []
    for value in values:
        if not np.isfinite(value):
            out.append(NO_DATA)
        elif scale <= 0:
            out.append(BLOCKS[0])
        else:
            level = int(np.clip(value / scale, 0.0, 1.0) * (len(BLOCKS) - 1) + 0.5)
            out.append(BLOCKS[level])
    return "".join(out)


def day_sparkline(
    times_ns: np.ndarray,
    values: np.ndarray,
    day_start_ns: int,
    unit: str,
    buckets: int = 24,
    how: str = "max",
) -> str:
    """`00h ▁▁▂█▁… 24h  max 0.42 bps`: the day in `buckets` slices, with the scale's top."""
    reduced = day_buckets(times_ns, values, day_start_ns, buckets, how)
    finite = reduced[np.isfinite(reduced)]
    top = f"{how} {finite.max():.4g} {unit}" if finite.size else "no data"
    return f"00h {sparkline(reduced)} 24h  ({top})"
