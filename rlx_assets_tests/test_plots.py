import base64
import struct

import numpy as np
import pytest

from rlx_assets.plots import distribution_plot_png, png_markdown, qq_plot_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 30_000


def _size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, the first after the signature."""
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


RNG = np.random.default_rng(3)
HEAVY = RNG.lognormal(-5, 2, 20_000)  # trade sizes: heavy tail, log axis
SAMPLES = {
    "heavy tailed": (HEAVY, HEAVY * 1.1),
    "with zeros and nan": (
        np.r_[np.zeros(50), RNG.exponential(5, 500), np.nan],
        RNG.exponential(5, 400),
    ),
    "constant": (np.full(100, 0.01), np.full(80, 0.01)),
    "one side empty": (np.array([1.0, 2.0]), np.array([])),
    "both empty": (np.array([]), np.array([])),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_plots_are_small_valid_pngs(name: str) -> None:
    a, b = SAMPLES[name]
    for png in (
        distribution_plot_png(a, b, ("reconstructed", "golden"), f"trade size: {name}"),
        qq_plot_png(a, b, f"Q-Q {name}"),
    ):
        assert png.startswith(PNG_SIGNATURE)
        assert png.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
        assert len(png) < MAX_BYTES
        assert _size(png) == (288, 216)  # 4 x 3 in at 72 dpi


def test_lists_are_accepted_like_arrays() -> None:
    assert distribution_plot_png([1, 2, 3], [1, 2, 4], ("a", "b"), "t").startswith(PNG_SIGNATURE)


def test_markdown_embeds_the_png_as_a_data_uri() -> None:
    png = qq_plot_png([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], "q")
    markdown = png_markdown(png, "Q-Q [trade size]")
    prefix = "![Q-Q (trade size)](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == png


def test_timeseries_plot_of_a_long_series_stays_small() -> None:
    from rlx_assets.plots import timeseries_plot_png

    times = np.arange(100_000, dtype=np.int64) * 10**9 // 2
    values = np.zeros(100_000)
    values[54_321] = 7.5
    png = timeseries_plot_png(times, values, "deviation")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 30_000
    assert timeseries_plot_png([], [], "empty").startswith(b"\x89PNG")
