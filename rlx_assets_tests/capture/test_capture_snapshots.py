"""The REST snapshot a (re)connect asks for, against a real HTTP server on loopback that can hold
a request unanswered (a snapshot still on its way when the connection drops)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from rlx_assets.capture.binance import MARKETS
from rlx_assets.capture.session import Capture, CaptureConfig

DAY_NS = 1_723_161_600 * 10**9  # 2024-08-09 00:00:00 UTC


class _DepthServer:
    """Answers /api/v3/depth with update id = the request's number; holds the first request
    until `release` is set."""

    def __init__(self) -> None:
        self.requests = 0
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                number = server.requests
                if number == 1:
                    server.release.wait(10)
                body = json.dumps(
                    {"lastUpdateId": number, "bids": [["1.0", "2.0"]], "asks": [["1.5", "3.0"]]}
                ).encode()
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up on this request
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> _DepthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


def test_a_reconnect_replaces_a_snapshot_still_on_its_way(tmp_path: Path) -> None:
    with _DepthServer() as server:
        capture = Capture(
            CaptureConfig(
                market=MARKETS["spot"],
                symbols=["BTC-USDT"],
                directory=tmp_path,
                ws_url="ws://127.0.0.1:9",  # never dialled here
                rest_url=server.url,
                clock=lambda: DAY_NS + 10**9,
            )
        )

        async def run() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                capture.http = http
                capture.connected()
                held = capture.snapshot_pending["BTC-USDT"]
                while server.requests < 1:  # the first snapshot reached the server
                    await asyncio.sleep(0.01)
                capture.disconnected("test")
                capture.connected()
                fresh = capture.snapshot_pending["BTC-USDT"]
                assert fresh is not held
                await asyncio.gather(held, fresh, return_exceptions=True)
                assert held.cancelled() and fresh.done() and not fresh.cancelled()
                # The cancelled snapshot's callback did not clear the fresh one's mark early,
                # and the fresh one's cleared its own.
                assert capture.snapshot_pending == {}

        asyncio.run(run())
        capture.close("test")

    assert capture.summary.snapshots == 1 and capture.summary.snapshot_failures == 0
    (path,) = sorted(tmp_path.glob("*.jsonl.gz"))
    records = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    snapshots = [r["data"] for r in records if r["stream"] == "rest@depthSnapshot"]
    assert [s["lastUpdateId"] for s in snapshots] == [2]  # the fresh one, not the held one
