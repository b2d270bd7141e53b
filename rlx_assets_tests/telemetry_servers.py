"""Real servers on loopback for the telemetry tests: Prometheus's Pushgateway (the Debian
package's binary), a webhook receiver that can answer 5xx first, and a "black hole" that accepts
connections and never answers (a hung gateway).

Register the fixtures in a test module by name:

    from rlx_assets_tests import telemetry_servers as servers

    pushgateway, webhook, black_hole = servers.pushgateway, servers.webhook, servers.black_hole
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PUSHGATEWAY_BINARY = "prometheus-pushgateway"  # Debian: apt-get install prometheus-pushgateway


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pushgateway exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"pushgateway not ready at {url} after {seconds} s")


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus Pushgateway on 127.0.0.1 (a free port); yields its base URL."""
    folder = tmp_path_factory.mktemp("pushgateway")
    binary = shutil.which(PUSHGATEWAY_BINARY) or shutil.which(f"/usr/bin/{PUSHGATEWAY_BINARY}")
    if binary is None:
        pytest.skip(f"{PUSHGATEWAY_BINARY} not installed (apt-get install prometheus-pushgateway)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={folder / 'pushgateway.data'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{url}/-/ready", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


@dataclass
class Webhook:
    """What the receiver got: each request's path and JSON body, and the status it answered."""

    url: str
    statuses: list[int]  # answered in turn; the last one repeats
    requests: list[dict] = field(default_factory=list)

    def reset(self, *statuses: int) -> None:
        """Answer `statuses` in turn from now on (the last repeats), with no request seen."""
        self.statuses = list(statuses)
        self.requests.clear()

    def delivered(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["status"] < 300]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    """An HTTP receiver on 127.0.0.1 (for a module); `.reset(500, 200)` chooses its answers
    (default 200)."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                answered = len(receiver.requests)
                status = receiver.statuses[min(answered, len(receiver.statuses) - 1)]
                receiver.requests.append(
                    {"path": self.path, "status": status, "body": json.loads(body)}
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Webhook(url=f"http://127.0.0.1:{server.server_port}", statuses=[200])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A listening socket that never accepts: connections succeed (the kernel's backlog) and no
    answer ever comes, as from a hung server. Yields its http:// URL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
