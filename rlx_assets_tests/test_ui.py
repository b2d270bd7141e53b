"""An engineer's day in the Dagster UI, in a real browser.

Two days of the real fixture slice are materialized into a fresh instance while `dagster dev`
starts on 127.0.0.1; pytest-playwright drives Debian's Chromium (`executable_path`: no browser
download) through the asset graph, a partitioned asset's partitions, its checks (names, result,
observed value and threshold) and the metadata of the quality report (inline sparkline, plots
across partitions). Each view is saved as a PNG: under the test's temporary folder, or to docs/ui/
for the README with RLX_UPDATE_SCREENSHOTS=1 (so a test run leaves the tree as it was). At the end
`dagster dev` gets
SIGTERM, as a process manager stops it, and its whole process group must be gone within
STOP_WITHIN seconds.

What makes it stop: `dagster dev` handles SIGTERM with SIGINT's handler, so a SIGINT ignored by
the process that started it (any background job of a non-interactive shell inherits SIG_IGN)
makes it ignore both, for good; it is started here with SIGINT back to its default. Then, on this
machine, SIGTERM to `dagster dev` alone emptied the group in 4.5-6 s (it stops its webserver,
daemon and code server itself), SIGINT to the whole group in 13 s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from rlx_assets.pipeline import run_partition
from rlx_assets_tests.conftest import FIXTURE_DAYS, REPO, make_settings

# Debian's chromium (.ci/run installs it); GitHub's Ubuntu runners come with Google Chrome.
CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium or google-chrome (Debian: apt-get install -y chromium)"
)

README_SCREENSHOTS = REPO / "docs" / "ui"
VIEWPORT = {"width": 1440, "height": 900}
BOOK_CHECKS = (
    "book_never_crossed",
    "book_replayed_from_deltas",
    "gaps_filled",
    "mid_deviation_within_limit",
    "top20_matches_vendor",
)
STOP_WITHIN = 30.0  # seconds from SIGINT until no process of the group is left
UI_TIMEOUT_MS = 60_000  # the first page of a cold webserver on a busy 2-core machine
# localhost only: no proxy from the environment, for urllib as for the browser.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--no-proxy-server", "--disable-gpu"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": VIEWPORT}


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `dagster dev` over an instance holding both fixture days."""
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    # The repo's instance settings that keep the UI quiet (no telemetry, no welcome modal);
    # its storage is relative to the working folder, so the rest stays the default (sqlite here).
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    settings = make_settings(tmp / "assets")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_LAKE_URL=settings.lake_url,
        RLX_GOLDEN_DIR=settings.golden_dir,
        RLX_STORAGE_URL=settings.storage_url,
        RLX_METRICS_DIR=settings.metrics_dir,
        RLX_START_DATE=settings.start_date.isoformat(),
    )
    with DagsterInstance.from_config(str(home)) as instance:
        # The databases exist before `dagster dev` starts: two processes must not create them.
        port = _free_port()
        log = tmp / "dagster-dev.log"
        server = _start_dagster_dev(port, environment, log)
        try:
            # The UI takes about as long to start as the two days to run: both at once.
            for day in FIXTURE_DAYS:
                result = run_partition(settings, instance, day, "BTC-USDT")
                assert result.success, f"{day} failed"
            _wait_for_server(port, server, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            seconds = _stop(server)
        assert seconds <= STOP_WITHIN, f"dagster dev took {seconds:.1f} s to stop"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("RLX_UPDATE_SCREENSHOTS") == "1":
        return README_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


def _shoot(page, name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000  # a rendered page, not a blank one


def _shows(page, text: str, exact: bool = False, within=None) -> None:
    """Wait until `text` is visible; if it never is, say what the page shows instead."""
    try:
        (within or page).get_by_text(text, exact=exact).first.wait_for()
    except PlaywrightTimeoutError:
        shown = " | ".join(line.strip() for line in page.inner_text("body").splitlines())
        raise AssertionError(f"{page.url} does not show {text!r}; it shows: {shown}") from None


def _open(page, url: str) -> None:
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url)


def test_the_asset_graph_shows_every_layer(dagster_ui: str, page, screenshots: Path) -> None:
    _open(page, f"{dagster_ui}/assets/validation_report?view=lineage&lineageScope=upstream")
    for name in (
        "raw_trades",
        "raw_book_snapshots",
        "raw_book_deltas",
        "reconstructed_book",
        "validation_report",
    ):
        _shows(page, name, exact=True)
    assert "Join the Dagster community" not in page.inner_text("body")
    _shoot(page, "asset-graph", screenshots)


def test_an_asset_shows_its_owner_kinds_and_materialized_partitions(
    dagster_ui: str, page, screenshots: Path
) -> None:
    _open(page, f"{dagster_ui}/assets/reconstructed_book")
    _shows(page, "quant-data")  # the owner, a team
    _shows(page, "numba", exact=True)  # a kind
    _open(page, f"{dagster_ui}/assets/reconstructed_book?view=partitions")
    _shows(page, "Materialized (2)")
    _shows(page, "Failed (0)")
    _shoot(page, "partitions", screenshots)


def test_the_checks_page_gives_each_result_its_value_and_threshold(
    dagster_ui: str, page, screenshots: Path
) -> None:
    _open(page, f"{dagster_ui}/assets/reconstructed_book?view=checks")
    for name in BOOK_CHECKS:
        row = page.locator("[class*='checkRow']").filter(has_text=name)
        row.get_by_text("Succeeded").wait_for()
    page.locator("[class*='checkRow']").filter(has_text="mid_deviation_within_limit").click()
    _shows(page, "Rebuilt mid vs vendor snapshot mid")
    result = page.get_by_text("Evaluation result").locator("..")
    assert "Passed" in result.inner_text()
    metadata = page.locator("table").filter(has_text="threshold_bps")
    metadata.wait_for()
    cells = [cell.strip() for cell in metadata.inner_text().split("\n") if cell.strip()]
    # The observed value and the threshold (RLX_MAX_MID_DEVIATION_BPS, 1.0 by default).
    assert cells[cells.index("threshold_bps") + 1] == "1"
    assert "mid_deviation_max_bps" in cells
    _shoot(page, "checks", screenshots)


def test_the_quality_report_draws_its_figures(dagster_ui: str, page, screenshots: Path) -> None:
    _open(page, f"{dagster_ui}/assets/validation_report")
    # The sparkline is plain text metadata: shown inline, no click needed.
    sparkline = page.get_by_text("00h ", exact=False).first
    sparkline.wait_for()
    assert "24h" in sparkline.inner_text() and "bps" in sparkline.inner_text()
    page.get_by_role("button", name="Table").scroll_into_view_if_needed()
    _shoot(page, "quality-report-metadata", screenshots)
    # Numeric metadata is plotted across the materializations of both days.
    page.get_by_role("button", name="Plots").click()
    # By event time: the partition axis is not drawn for a two-dimensional (date x symbol) key.
    page.get_by_role("button", name="Events").click()
    _shows(page, "mid_deviation_max_bps", exact=True)
    chart = page.locator("canvas").first
    chart.wait_for()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50
    assert page.locator("canvas").count() >= len(("mid_deviation_max_bps", "top20_match_share"))
    _shoot(page, "quality-report", screenshots)


# --- dagster dev ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_dagster_dev(port: int, environment: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        dagster = str(Path(sys.executable).with_name("dagster"))
        return subprocess.Popen(
            [dagster, "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,  # workspace.yaml
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
            # dagster dev maps SIGTERM to SIGINT's handler: a SIGINT ignored by the caller (a
            # background job of a shell) would make it ignore both.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _wait_for_server(port: int, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            HTTP.open(f"http://127.0.0.1:{port}/server_info", timeout=5).read()
            return
        time.sleep(0.5)
    raise AssertionError(f"dagster dev did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(server: subprocess.Popen) -> float:
    """SIGTERM to `dagster dev`; the seconds until no process of its group is left. Past twice
    the bound the group is killed, so no test leaves it behind."""
    started = time.monotonic()
    server.terminate()
    while _group_alive(server.pid) and time.monotonic() - started < 2 * STOP_WITHIN:
        server.poll()  # reap the leader as soon as it exits
        time.sleep(0.1)
    seconds = time.monotonic() - started
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    return seconds
