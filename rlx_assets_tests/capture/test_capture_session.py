"""What a capture does when its connection comes and goes: the REST snapshot a (re)connect asks
for (against a real HTTP server on loopback that can hold a request unanswered), and a
connection lost to a socket error (against the Binance replay)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from rlx_assets.capture.binance import MARKETS
from rlx_assets.capture.session import Capture, CaptureConfig
from rlx_assets_tests.capture.binance_replay import (
    BinanceReplay,
    frame_of,
    gzip_lines,
    outside_gap,
)
from rlx_assets_tests.capture.test_capture_replay import ORIGINAL, SPEED

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
    records = [json.loads(line) for line in gzip_lines(path)]
    snapshots = [r["data"] for r in records if r["stream"] == "rest@depthSnapshot"]
    assert [s["lastUpdateId"] for s in snapshots] == [2]  # the fresh one, not the held one


def test_a_connection_lost_to_a_socket_error_is_a_disconnect_with_its_gap(
    tmp_path: Path, monkeypatch
) -> None:
    """A connection that was up and ends with an OSError (a reset the library did not turn into
    ConnectionClosed) is a disconnect, not a failed attempt: its gap is recorded and bounded
    from both sides."""
    # The whole three minutes at 15x: the reconnect comes with seconds of the replay still to
    # go, however late a loaded machine runs the capture.
    lines = [line for path in ORIGINAL for line in gzip_lines(path)]
    # Reset a quarter of the way through: the replay goes on after the reconnect.
    first, last = (json.loads(lines[i])["capture_ns"] for i in (0, -1))
    reset_at_ns = first + (last - first) // 4
    read = Capture.read
    calls = 0

    async def read_then_reset(self, websocket) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            return await read(self, websocket)
        while self.config.clock() < reset_at_ns:
            self.on_frame(await websocket.recv(decode=False))
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(Capture, "read", read_then_reset)
    with BinanceReplay(lines, SPEED) as replay:
        capture = Capture(replay.capture_config(tmp_path))

        async def run() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(capture.run(stop))
            deadline = time.monotonic() + 60
            # Frames sent on the first connection but never read there count as sent: wait for
            # the replay's end, then until the capture reads nothing more.
            frames = -1
            while not (replay.finished.is_set() and capture.summary.frames == frames):
                assert not task.done(), task.result()
                assert time.monotonic() < deadline, "the replay did not finish in 60 s"
                frames = capture.summary.frames
                await asyncio.sleep(0.5)
            stop.set()
            await task

        asyncio.run(run())
    summary = capture.summary
    assert (summary.connections, summary.disconnects, summary.failed_connection_attempts) == (
        2,
        1,
        0,
    )
    (gap,) = summary.gaps
    assert gap["reason"] == "disconnect"
    assert gap["reconnected_ns"] > gap["disconnected_ns"]
    written = {
        frame_of(line)
        for path in sorted(tmp_path.glob("BTC-USDT-*.jsonl.gz"))
        for line in gzip_lines(path)
    }
    missing = [json.loads(frame_of(line)) for line in lines if frame_of(line) not in written]
    assert missing, "the reset lost nothing: the test does not test the gap"
    assert outside_gap(missing, gap) == []
