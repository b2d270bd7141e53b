"""Small PNG plots for asset metadata: two-sample distributions and Q-Q plots.

Figures are drawn on matplotlib's Agg canvas directly (`Figure` + `FigureCanvasAgg`), never through
pyplot: no display is needed, no global backend is switched for the rest of the process, and no
figure is left registered in pyplot's global manager when assets run in parallel threads.
Images are about 4x3 inches at 72 dpi, a few kilobytes to tens of kilobytes, so they fit in
Dagster metadata as markdown data URIs.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE = (4.0, 3.0)  # inches
DPI = 72
MAX_POINTS = 400  # points drawn per curve; more adds bytes, not information, at this size
COLORS = ("#1f77b4", "#d62728")


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _figure(title: str) -> tuple[Figure, object]:
    # Imported on first use: matplotlib costs seconds at start-up, paid by every Dagster load.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=7)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _no_data(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axes.transAxes)


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF at up to MAX_POINTS evenly spaced ranks (exact endpoints kept)."""
    ordered = np.sort(values)
    ranks = np.unique(np.linspace(0, ordered.size - 1, min(ordered.size, MAX_POINTS)).astype(int))
    return ordered[ranks], (ranks + 1) / ordered.size


def _log_scale(*samples: np.ndarray) -> bool:
    """Heavy-tailed positive data (trade sizes) reads better on a log axis."""
    pooled = np.concatenate(samples)
    positive = pooled[pooled > 0]
    return (
        positive.size == pooled.size and pooled.size > 0 and positive.max() / positive.min() > 100
    )


def distribution_plot_png(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    labels: tuple[str, str] = ("reconstructed", "golden"),
    title: str = "",
) -> bytes:
    """Both samples' empirical CDFs on one axis (what Kolmogorov-Smirnov compares), as PNG."""
    first, second = _finite(a), _finite(b)
    figure, axes = _figure(title)
    if not first.size and not second.size:
        _no_data(axes, "data")
        return _png(figure)
    for values, label, color, style in zip(
        (first, second), labels, COLORS, ("-", "--"), strict=True
    ):
        if values.size:
            x, y = _ecdf(values)
            axes.step(x, y, where="post", label=f"{label} (n={values.size})", color=color, ls=style)
    if _log_scale(first, second):
        axes.set_xscale("log")
    axes.set_ylabel("cumulative share", fontsize=8)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=7, loc="lower right")
    return _png(figure)


def qq_plot_png(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    title: str = "",
    labels: tuple[str, str] = ("reconstructed", "golden"),
) -> bytes:
    """Quantiles of `a` against the same quantiles of `b`, with the identity line, as PNG."""
    first, second = _finite(a), _finite(b)
    figure, axes = _figure(title)
    if not first.size or not second.size:
        _no_data(axes, "data on both sides")
        return _png(figure)
    levels = np.linspace(0.0, 1.0, min(MAX_POINTS, first.size, second.size))
    x, y = np.quantile(second, levels), np.quantile(first, levels)
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    axes.plot([low, high], [low, high], color="0.6", lw=1)
    axes.plot(x, y, ".", ms=3, color=COLORS[0])
    if _log_scale(first, second):
        axes.set_xscale("log")
        axes.set_yscale("log")
    axes.set_xlabel(f"{labels[1]} quantiles", fontsize=8)
    axes.set_ylabel(f"{labels[0]} quantiles", fontsize=8)
    return _png(figure)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown that shows the image inline: `![alt](data:image/png;base64,...)`."""
    safe_alt = alt.replace("[", "(").replace("]", ")")  # brackets would end the alt text
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def timeseries_plot_png(
    times_ns: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray, title: str
) -> bytes:
    """Values over the hours of the day (UTC), e.g. the mid-price deviation per vendor snapshot.

    Long series are thinned to MAX_POINTS buckets keeping each bucket's maximum, so a spike is
    never drawn away.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    times, values = times[keep], values[keep]
    figure, axes = _figure(title)
    if values.size == 0:
        _no_data(axes, "values")
        return _png(figure)
    hours = (times % (86_400 * 10**9)) / 3.6e12
    if values.size > MAX_POINTS:
        buckets = np.array_split(np.arange(values.size), MAX_POINTS)
        peaks = [bucket[np.argmax(values[bucket])] for bucket in buckets]
        hours, values = hours[peaks], values[peaks]
    axes.plot(hours, values, color=COLORS[0], linewidth=0.8)
    axes.set_xlabel("hour (UTC)", fontsize=8)
    return _png(figure)
