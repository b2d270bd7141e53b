"""An engineer reviews a partition's asset checks in the Dagster UI, in a real browser.

`dagster dev` serves an instance holding one materialized partition of the real fixture slice;
headless Chromium (Debian's `chromium`) opens the asset's Checks tab and is driven over the Chrome
DevTools protocol through a websocket (`websockets` comes with dagster-webserver), so no Selenium
or Playwright. Without a `chromium` on PATH the test is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
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
import yaml
from dagster import DagsterInstance
from PIL import Image
from websockets.sync.client import ClientConnection, connect

from rlx_assets_tests.conftest import REPO, SLICE

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no `chromium` on PATH (Debian: apt-get install -y chromium)"
)

PARTITION = "2024-08-08|BTC-USDT"
CHECKS = ("book_never_crossed", "gaps_filled")
VIEWPORT = (1440, 900)
# localhost only: no proxy from the environment, for urllib as for the browser.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The asset page's check list: one row per check, its name in a title, its status below it.
CHECK_ROWS_JS = """
JSON.stringify([...document.querySelectorAll('[class*="checkRow"]')].map(row => ({
  name: row.querySelector('[title]')?.title,
  lines: row.innerText.split('\\n').map(line => line.trim()).filter(Boolean),
  icon: row.querySelector('[role="img"]')?.getAttribute('aria-label'),
})))"""

# The detail pane: which check the URL selects, whether its name is shown outside the list, and
# the "Evaluation result" of its latest execution.
CHECK_DETAIL_JS = """(name => {
  const inList = node => node.parentElement.closest('[class*="checkRow"]');
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let shown = false;
  while (texts.nextNode()) {
    if (texts.currentNode.data.trim() === name && !inList(texts.currentNode)) shown = true;
  }
  const label = [...document.querySelectorAll('span')]
    .find(span => span.textContent === 'Evaluation result');
  return JSON.stringify({
    selected: new URLSearchParams(location.search).get('checkDetail'),
    shown,
    result: label ? label.parentElement.innerText.split('\\n').map(s => s.trim()) : null,
  });
})"""

CHECK_ROW_CENTER_JS = """(name => {
  const row = [...document.querySelectorAll('[class*="checkRow"]')]
    .find(row => row.querySelector('[title]')?.title === name);
  const box = row.getBoundingClientRect();
  return JSON.stringify([box.x + box.width / 2, box.y + box.height / 2]);
})"""


def test_an_engineer_sees_the_book_checks_pass_in_the_dagster_ui(tmp_path: Path) -> None:
    environment = _environment(tmp_path)
    port = _free_port()
    log = tmp_path / "dagster-dev.log"
    server = _start_dagster_dev(port, environment, log)
    try:
        # The UI takes longer to start than one partition to run: both at once.
        _materialize_one_partition(environment)
        _wait_for_server(port, server, log)
        with _browser(tmp_path / "chromium-profile") as page:
            page.open(f"http://127.0.0.1:{port}/assets/reconstructed_book?view=checks")

            def checks_succeeded() -> dict[str, dict] | None:
                rows = {row["name"]: row for row in json.loads(page.evaluate(CHECK_ROWS_JS))}
                succeeded = [rows.get(name, {}).get("lines", [])[-1:] for name in CHECKS]
                return rows if succeeded == [["Succeeded"]] * len(CHECKS) else None

            rows = page.wait_for(checks_succeeded, f"{CHECKS} listed as succeeded")
            for name in CHECKS:
                assert rows[name]["icon"] == "check_circle", rows[name]

            for name in CHECKS:
                # A real click on the row, as an engineer would.
                page.click(*json.loads(page.evaluate(f"{CHECK_ROW_CENTER_JS}({name!r})")))
                detail = page.wait_for(
                    functools.partial(_check_detail, page, name),
                    f"the detail of {name} with its latest evaluation",
                )
                assert detail["result"] == ["Evaluation result", "Passed"], detail

            text = page.evaluate("document.body.innerText")
            # The instance settings of the repo's dagster.yaml keep the welcome modal away.
            assert "Join the Dagster community" not in text
            assert "blocking" in text  # gaps_filled is a blocking check

            screenshot = tmp_path / "reconstructed_book-checks.png"
            screenshot.write_bytes(page.screenshot())
    finally:
        _stop(server)

    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        assert image.size == VIEWPORT
        # A rendered page, not a blank one: the UI's text and icons give many shades.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) > 50
    assert screenshot.stat().st_size > 20_000


def _check_detail(page: _Page, name: str) -> dict | None:
    """The detail pane once it shows `name` and the result of its latest execution."""
    detail = json.loads(page.evaluate(f"{CHECK_DETAIL_JS}({name!r})"))
    loaded = detail["selected"] == name and detail["shown"] and len(detail["result"] or []) > 1
    return detail if loaded else None


# --- Dagster ------------------------------------------------------------------------------------


def _environment(tmp_path: Path) -> dict[str, str]:
    """A fresh instance in DAGSTER_HOME (sqlite in that folder), with the repo's other settings.

    The repo's dagster.yaml stores under `data/dagster` relative to the working folder, so only
    its storage-free settings (telemetry, nux) are copied.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    repo_instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    settings = {key: repo_instance[key] for key in ("telemetry", "nux") if key in repo_instance}
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    # Creates the sqlite databases now: the CLI run and `dagster dev` start at the same time and
    # would both create the tables.
    with DagsterInstance.from_config(str(home)):
        pass
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    environment.update(
        DAGSTER_HOME=str(home),
        RLX_LAKE_URL=str(SLICE),
        RLX_GOLDEN_DIR=str(SLICE / "golden"),
        RLX_STORAGE_URL=str(tmp_path / "assets"),
        RLX_START_DATE="2024-08-01",
    )
    return environment


def _dagster() -> str:
    return str(Path(sys.executable).with_name("dagster"))


def _materialize_one_partition(environment: dict[str, str]) -> None:
    command = [_dagster(), "asset", "materialize", "-m", "rlx_assets", "--select", "*"]
    completed = subprocess.run(
        [*command, "--partition", PARTITION],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_dagster_dev(port: int, environment: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen(
            [_dagster(), "dev", "-p", str(port), "-h", "127.0.0.1"],
            cwd=REPO,  # workspace.yaml
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # dagster dev maps SIGTERM to SIGINT's handler: a SIGINT ignored by the caller (a
            # background job of a shell) would make it ignore SIGTERM too.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def _wait_for_server(port: int, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            HTTP.open(f"http://127.0.0.1:{port}/server_info", timeout=5).read()
            return
        time.sleep(0.25)
    raise AssertionError(f"dagster dev did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (dagster dev then stops its children), then whatever is left of the group."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


# --- Chromium over the DevTools protocol --------------------------------------------------------


class _Page:
    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        self._websocket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; they are not needed here
            message = json.loads(self._websocket.recv(timeout=60))
            if message.get("id") == message_id:
                assert "error" not in message, (method, message["error"])
                return message["result"]

    def evaluate(self, expression: str):
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, (expression, answer["exceptionDetails"])
        return answer["result"].get("value")

    def open(self, url: str) -> None:
        width, height = VIEWPORT
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)

    def wait_for(self, probe, what: str, timeout: float = 60):
        """Polls `probe` until it returns something truthy (the page renders asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # the page may still be loading
                found = probe()
                if found:
                    return found
            time.sleep(0.2)
        text = self.evaluate("document.body ? document.body.innerText : ''")
        shown = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        raise AssertionError(f"the page did not show {what} in {timeout} s; it shows: {shown}")

    def click(self, x: float, y: float) -> None:
        for event in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=event, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, settle: float = 1.0, timeout: float = 20) -> bytes:
        """The viewport once two captures `settle` s apart are the same (icons, plots loaded)."""
        deadline = time.monotonic() + timeout
        shot = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        while time.monotonic() < deadline:
            time.sleep(settle)
            previous, shot = (
                shot,
                base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]),
            )
            if shot == previous:
                break
        return shot


@contextlib.contextmanager
def _browser(profile: Path) -> Iterator[_Page]:
    profile.mkdir()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
        f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",  # the port chosen is written to DevToolsActivePort
        "about:blank",
    ]
    browser = subprocess.Popen(
        [CHROMIUM, *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while len(port_file.read_text().splitlines() if port_file.exists() else []) < 2:
            assert browser.poll() is None, f"chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "chromium opened no DevTools port in 30 s"
            time.sleep(0.05)
        port = port_file.read_text().splitlines()[0]
        targets = json.load(HTTP.open(f"http://127.0.0.1:{port}/json/list", timeout=10))
        target = next(target for target in targets if target["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, proxy=None) as websocket:
            yield _Page(websocket)
    finally:
        browser.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            browser.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait(timeout=10)
