"""Binance, replayed on 127.0.0.1: a WebSocket server for `/stream?streams=...` and an HTTP server
for the REST depth snapshot, serving golden-sample lines with their recorded timing, sped up.

Time runs as a replay clock: `clock()` is the recorded capture time now, `speed` times faster
than the wall. A connection gets the lines from the replay clock on (lines due while no client
is connected are lost, as on the real exchange). The server can drop the connection once (the
TCP connection aborted, no close frame), refuse new connections after it (HTTP 503 to the
handshake) for a while and at least a number of times, and send malformed frames at a chosen
moment. It records which lines it sent and which it could not, so a test can check the capture
against the truth. The REST snapshot is
the book replayed from the depth messages due so far (the full book as far as these messages
tell it), with their last `u` as `lastUpdateId`.
"""

from __future__ import annotations

import asyncio
import bisect
import gzip
import json
import threading
import time
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve

from rlx_assets.capture.binance import MARKETS
from rlx_assets.capture.session import CaptureConfig

PREFIX = b'{"capture_ns":'
MALFORMED_FRAMES = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":17231',  # cut short: not JSON
    '{"stream":"btcusdt@bookTicker","data":{"u":"not a number","b":"1","B":"1"}}',
)


def frame_of(line: bytes) -> bytes:
    """The combined-stream frame a golden line was captured from: the line without capture_ns."""
    if not line.startswith(PREFIX):
        raise ValueError(f"not a golden line: {line[:40]!r}")
    return b"{" + line[line.index(b",") + 1 :].rstrip(b"\n")


def gzip_lines(path: Path) -> list[bytes]:
    """The lines of a gzipped JSON-lines file (a golden sample, a captured day), ends kept."""
    return gzip.decompress(path.read_bytes()).splitlines(keepends=True)


def outside_gap(messages: list[dict], gap: dict) -> list[dict]:
    """The messages (parsed lines) whose exchange time (trades) or update ids (depth,
    bookTicker) fall outside a recorded `capture@gap`: none, for a gap that bounds a loss."""
    ids = range(gap["from_update_id"], gap["to_update_id"] + 1)
    times = range(gap["from_time_ns"], gap["to_time_ns"] + 1)

    def inside(message: dict) -> bool:
        data, stream = message["data"], message["stream"]
        if stream.endswith("@trade"):
            return data["T"] * 1_000_000 in times
        if stream.endswith("@bookTicker"):
            return data["u"] in ids
        return data["U"] in ids and data["u"] in ids

    return [message for message in messages if not inside(message)]


class BinanceReplay:
    def __init__(
        self,
        lines: list[bytes],
        speed: float,
        streams: str = "btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker",
        depth_path: str = "/api/v3/depth",
        drop_at_ns: int | None = None,
        down_s: float = 0.0,
        refusals: int = 0,
        malformed_at_ns: int | None = None,
    ) -> None:
        self.lines = lines
        self.frames = [frame_of(line).decode() for line in lines]
        self.times = [int(line[len(PREFIX) : line.index(b",")]) for line in lines]
        self.speed = speed
        self.streams = streams
        self.depth_path = depth_path
        self.drop_at_ns = drop_at_ns
        self.down_s = down_s
        self.refusals = refusals
        self.malformed_at_ns = malformed_at_ns
        self.sent: list[int] = []  # indices of lines sent, in order
        self.lost: list[int] = []  # indices of lines due while no client was connected
        self.connections = 0
        self.refused = 0
        self.snapshot_requests: list[str] = []
        self.finished = threading.Event()  # every line was sent or lost
        self._cursor = 0
        self._down_until = 0.0
        self._refuse = 0  # handshakes still to refuse
        self._lock = threading.Lock()
        self._depth = [
            (time_ns, json.loads(frame)["data"])
            for time_ns, frame in zip(self.times, self.frames, strict=True)
            if '"stream":"btcusdt@depth' in frame[:40]
        ]
        self._depth_times = [t for t, _ in self._depth]
        self._book: dict[str, dict[str, str]] = {"b": {}, "a": {}}
        self._book_cursor = 0
        self._book_update_id = 0
        self._start = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def capture_config(self, directory: Path, **options: Any) -> CaptureConfig:
        """A spot BTC-USDT capture of this replay into `directory`, on its clock, with retries
        and flushes quick enough for a test."""
        settings: dict[str, Any] = {
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
            "flush_interval_s": 0.2,
            **options,
        }
        return CaptureConfig(
            market=MARKETS["spot"],
            symbols=["BTC-USDT"],
            directory=directory,
            ws_url=self.ws_url,
            rest_url=self.rest_url,
            clock=self.clock,
            **settings,
        )

    # --- the replay clock ------------------------------------------------------------------

    def clock(self) -> int:
        """The recorded capture time now (ns); it starts running at the first connection."""
        if not self._start:
            return self.times[0]
        return self.times[0] + int((time.monotonic() - self._start) * 1e9 * self.speed)

    def _due(self, index: int) -> float:
        return self._start + (self.times[index] - self.times[0]) / 1e9 / self.speed

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> BinanceReplay:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._rest_handler())
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        self._ws_thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._ws_thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the replay WebSocket server did not start")
        self.rest_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        return self

    def __exit__(self, *exc_info) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._ws_thread.join(10)
        self._http.shutdown()
        self._http.server_close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._connection, "127.0.0.1", 0, process_request=self._handshake
        ) as server:
            port = server.sockets[0].getsockname()[1]
            self.ws_url = f"ws://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()

    # --- WebSocket ---------------------------------------------------------------------------

    def _handshake(self, connection, request):
        if self._refuse > 0 or time.monotonic() < self._down_until:
            self._refuse = max(self._refuse - 1, 0)
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down for maintenance\n")
        expected = f"/stream?streams={self.streams}"
        if request.path != expected:
            return connection.respond(HTTPStatus.NOT_FOUND, f"expected {expected}\n")
        return None

    async def _connection(self, websocket) -> None:
        self.connections += 1
        now_ns = self.clock()  # the first connection gets the replay from its first line
        if not self._start:
            self._start = time.monotonic()
        start = max(self._cursor, bisect.bisect_left(self.times, now_ns))
        self.lost.extend(range(self._cursor, start))
        self._cursor = start
        for index in range(start, len(self.lines)):
            delay = self._due(index) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            moment = self.times[index]
            if self.malformed_at_ns is not None and moment >= self.malformed_at_ns:
                self.malformed_at_ns = None
                for frame in MALFORMED_FRAMES:
                    await websocket.send(frame)
            if self.drop_at_ns is not None and moment >= self.drop_at_ns:
                self.drop_at_ns = None
                self._down_until = time.monotonic() + self.down_s
                self._refuse = self.refusals
                websocket.transport.abort()
                return
            try:
                await websocket.send(self.frames[index])
            except Exception:  # the client went away: this line is not delivered
                return
            self.sent.append(index)
            self._cursor = index + 1
        self.finished.set()
        await websocket.wait_closed()

    # --- REST --------------------------------------------------------------------------------

    def _snapshot(self, limit: int) -> bytes:
        with self._lock:
            due = bisect.bisect_right(self._depth_times, self.clock())
            for _, data in self._depth[self._book_cursor : due]:
                for side in ("b", "a"):
                    levels = self._book[side]
                    for price, size in data[side]:
                        if Decimal(size) == 0:
                            levels.pop(price, None)
                        else:
                            levels[price] = size
                self._book_update_id = data["u"]
            self._book_cursor = max(self._book_cursor, due)
            bids = sorted(self._book["b"].items(), key=lambda level: -Decimal(level[0]))
            asks = sorted(self._book["a"].items(), key=lambda level: Decimal(level[0]))
            body = {
                "lastUpdateId": self._book_update_id,
                "bids": [list(level) for level in bids[:limit]],
                "asks": [list(level) for level in asks[:limit]],
            }
        return json.dumps(body, separators=(",", ":")).encode()

    def _rest_handler(self):
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path != replay.depth_path or query.get("symbol") != ["BTCUSDT"]:
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                replay.snapshot_requests.append(self.path)
                body = replay._snapshot(int(query.get("limit", ["100"])[0]))
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # quiet: pytest shows failures, not requests
                pass

        return Handler
