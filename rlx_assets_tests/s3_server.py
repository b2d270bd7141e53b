"""A real S3 server (moto) on loopback for tests, with dummy AWS credentials, and a proxy in
front of it that injects the faults of a real network and a real S3 (`s3_proxy`).

Register the fixtures in a test module by name:

    from rlx_assets_tests import s3_server as s3

    aws_env, s3_client, s3_server = s3.aws_env, s3.s3_client, s3.s3_server
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ACCESS_KEY_ID = "AKIARLXTESTKEY000000"
# Distinctive, so a test can prove it never appears in an error or in provenance.
SECRET_ACCESS_KEY = "rlx-test-secret-5f3a9c0e-never-printed"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 (a free port) and yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials in the environment; no profile, config file or instance metadata."""
    missing = tmp_path_factory.mktemp("aws") / "absent"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
    # Without this, botocore may probe 169.254.169.254 and stall for seconds.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_client(s3_server: str, aws_env: None) -> Any:
    """A boto3 S3 client talking to the loopback server."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def unique_bucket(prefix: str = "rlx-test") -> str:
    """A bucket name no other test uses (the server's state lives for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def bucket_with_slice(endpoint_url: str) -> str:
    """A new bucket holding the committed real-data slice under `lake/`, in its Crypto Lake
    layout (credentials from the environment, as `aws_env` sets them)."""
    import boto3

    from rlx_assets_tests.conftest import SLICE

    name = unique_bucket()
    client = boto3.client("s3", endpoint_url=endpoint_url)
    client.create_bucket(Bucket=name)
    for path in SLICE.rglob("*"):
        if path.is_file() and path.name != "README.md":
            client.upload_file(str(path), name, f"lake/{path.relative_to(SLICE).as_posix()}")
    return name


# A fault-injecting proxy in front of the S3 server. moto has no fault injection for S3 (its
# configuration covers state transitions, IAM and recording), so faults are made where real ones
# happen, on the wire: a real HTTP server on loopback that forwards every request to moto and,
# for the requests a test selects, answers as a throttled or failing S3 would, or cuts the body.

FAULT_KINDS = ("slowdown", "internal_error", "bad_gateway", "cut", "cut_unannounced", "corrupt")
_ERROR_ANSWERS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal_error": (500, "InternalError", "We encountered an internal error."),
}
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
}


@dataclass
class Fault:
    """`kind` for the next `times` requests (-1: all) whose method matches and whose path and
    query (`/bucket/key?query`) hold `key`. A cut body breaks off after `cut_at` of its bytes."""

    kind: str
    key: str = ""
    method: str = "GET"
    times: int = 1
    cut_at: float = 0.5
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        return (
            method == self.method
            and self.key in target
            and (self.times < 0 or self.hits < self.times)
        )


@dataclass
class ProxiedRequest:
    method: str
    path: str  # unquoted, without the query
    query: str
    status: int
    access_key_id: str | None  # from the SigV4 Authorization header; None: unsigned (anonymous)
    fault: str | None
    at: float  # time.monotonic() when it arrived


class FaultyS3Proxy:
    """Forwards to `upstream` (the moto server); `add` a `Fault` to inject one."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.requests: list[ProxiedRequest] = []
        # False: answers carry no x-amz-checksum-* headers, as for objects stored without one
        # (uploaded before S3 added checksums by default) or read by byte range, so that botocore
        # has nothing to validate a body against.
        self.checksums = True
        self._lock = threading.Lock()
        # A request is recorded once its answer is sent, so a client may hold the answer before
        # the record exists: `seen` waits for the requests in flight.
        self._settled = threading.Condition(self._lock)
        self._in_flight = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet tests; `requests` records what happened

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultyS3Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(
        self, kind: str, key: str = "", method: str = "GET", times: int = 1, cut_at: float = 0.5
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {FAULT_KINDS})")
        fault = Fault(kind, key, method, times, cut_at)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()

    def seen(self, method: str, key: str = "", settle_s: float = 10) -> list[ProxiedRequest]:
        """Requests with that method whose path and query hold `key`, in arrival order, once
        the requests in flight are recorded (for at most `settle_s`)."""
        with self._settled:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=settle_s)
            return [r for r in self.requests if r.method == method and key in f"{r.path}?{r.query}"]

    # -- serving -------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._serve(handler)
        finally:
            with self._settled:
                self._in_flight -= 1
                self._settled.notify_all()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            target = f"{path}?{parts.query}"
            fault = next((f for f in self.faults if f.matches(handler.command, target)), None)
            if fault is not None:
                fault.hits += 1
        kind = fault.kind if fault else None
        if kind in _ERROR_ANSWERS or kind == "bad_gateway":
            status = self._answer_error(handler, kind)
        else:
            status = self._forward(handler, body, fault)
        authorization = handler.headers.get("Authorization") or ""
        key_id = authorization.partition("Credential=")[2].partition("/")[0] or None
        with self._lock:
            self.requests.append(
                ProxiedRequest(handler.command, path, parts.query, status, key_id, kind, arrived)
            )

    @staticmethod
    def _answer_error(handler: BaseHTTPRequestHandler, kind: str) -> int:
        if kind == "bad_gateway":
            # What a load balancer in front of S3 sends: HTML, not S3's XML.
            status, body, content_type = (
                502,
                b"<html><body>502 Bad Gateway</body></html>",
                "text/html",
            )
        else:
            status, code, message = _ERROR_ANSWERS[kind]
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            ).encode()
            content_type = "application/xml"
        handler.send_response_only(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(0 if handler.command == "HEAD" else len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
        return status

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes, fault: Fault | None) -> int:
        kind = fault.kind if fault else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            answer_headers = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
                and k.lower() != "content-length"
                and (self.checksums or not k.lower().startswith("x-amz-checksum-"))
            ]
            status = response.status
            announced = response.getheader("Content-Length")
        finally:
            upstream.close()
        if handler.command == "HEAD":
            handler.send_response_only(status)
            for name, value in answer_headers:
                handler.send_header(name, value)
            handler.send_header("Content-Length", announced or "0")
            handler.end_headers()
            return status
        cut = fault is not None and kind in ("cut", "cut_unannounced") and len(payload) > 1
        if kind == "corrupt" and payload:
            middle = len(payload) // 2
            payload = payload[:middle] + bytes([payload[middle] ^ 0xFF]) + payload[middle + 1 :]
        handler.send_response_only(status)
        for name, value in answer_headers:
            handler.send_header(name, value)
        if kind == "cut_unannounced":
            # A body delimited by the connection's end (no length): the reader cannot tell a
            # cut from the end.
            handler.send_header("Connection", "close")
        else:
            handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if not cut:
            handler.wfile.write(payload)
            return status
        assert fault is not None
        handler.wfile.write(payload[: int(len(payload) * fault.cut_at)])
        handler.wfile.flush()
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
        return status


@pytest.fixture
def s3_proxy(s3_server: str) -> Iterator[FaultyS3Proxy]:
    """A fault-injecting proxy on 127.0.0.1 in front of the session's S3 server."""
    proxy = FaultyS3Proxy(s3_server).start()
    try:
        yield proxy
    finally:
        proxy.stop()
