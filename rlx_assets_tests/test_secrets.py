"""No secret leaks: with recognizable secrets in the AWS secret key, the alert webhook URL and the
Pushgateway URL (all in `.env`, as a user keeps them), the Dagster CLI materializes a day from S3
with failing checks, then a run that fails; every line it prints, every file it leaves (event
log and run storage, compute logs, assets, metrics, the lake cache), every event-log record and
its metadata, every error, and every request body the webhook and the Pushgateway receive are
scanned: none holds a secret."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance
from dagster._serdes import serialize_value

from rlx_assets_tests import s3_server as s3

aws_env, s3_server = s3.aws_env, s3.s3_server

CANARY = uuid.uuid4().hex[:12]
AWS_SECRET = f"rlx-canary-aws-{CANARY}"
WEBHOOK_TOKEN = f"rlx-canary-webhook-{CANARY}"
PUSHGATEWAY_PASSWORD = f"rlx-canary-push-{CANARY}"
SECRETS = (AWS_SECRET, WEBHOOK_TOKEN, PUSHGATEWAY_PASSWORD)


class Receiver:
    """A real HTTP server on loopback standing in for the webhook and the Pushgateway: accepts
    everything, keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []  # the webhook's holds its token: kept, never scanned
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(self.rfile.read(length))
                receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST

            def do_DELETE(self) -> None:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: str, aws_env: None) -> str:
    return s3.bucket_with_slice(s3_server)


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [secret for secret in SECRETS if secret.encode() in data]


def test_no_secret_in_output_files_event_log_metadata_or_requests(
    tmp_path: Path, bucket: str, s3_server: str, receiver: Receiver
) -> None:
    work = tmp_path / "project"
    home = tmp_path / "dagster_home"
    work.mkdir()
    home.mkdir()
    # Every log line, ours included, goes to the event log and the CLI's output.
    (home / "dagster.yaml").write_text(
        "python_logs:\n  python_log_level: DEBUG\n  managed_python_loggers: [rlx_assets]\n"
        "telemetry:\n  enabled: false\n"
    )
    (work / ".env").write_text(
        f"AWS_ACCESS_KEY_ID={s3.ACCESS_KEY_ID}\n"
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
        f"RLX_ALERT_WEBHOOK_URL=http://127.0.0.1:{receiver.port}/hooks/{WEBHOOK_TOKEN}\n"
        f"RLX_PUSHGATEWAY_URL=http://rlx:{PUSHGATEWAY_PASSWORD}@127.0.0.1:{receiver.port}\n"
        f"RLX_LAKE_URL=s3://{bucket}/lake\n"
        f"RLX_GOLDEN_DIR=s3://{bucket}/lake/golden\n"
        f"RLX_S3_ENDPOINT_URL={s3_server}\n"
        f"RLX_STORAGE_URL={tmp_path / 'assets'}\n"
        f"RLX_METRICS_DIR={tmp_path / 'metrics'}\n"
        f"RLX_LAKE_CACHE_DIR={tmp_path / 'lake-cache'}\n"
        "RLX_START_DATE=2024-08-01\n"
        # Checks that fail (WARN and ERROR), so alerts have something to say.
        "RLX_MAX_CLOCK_SKEW_MS=0.001\n"
        "RLX_MIN_TOP_OF_BOOK_AGREEMENT=1.0\n"
    )
    # Secrets only in `.env`: none in the environment the CLI inherits.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RLX_", "AWS_"))}
    environment.update(
        DAGSTER_HOME=str(home),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION=s3.REGION,
        AWS_CONFIG_FILE=str(tmp_path / "absent"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "absent"),
        S3FS_LOGGING_LEVEL="DEBUG",  # s3fs's own log lines on stderr, scanned too
    )
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "rlx_assets", "--select", "*"]

    def materialize(folder: Path, partition: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*command, "--partition", partition],
            cwd=folder,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )

    succeeded = materialize(work, "2024-08-08|BTC-USDT")
    # A lake that does not exist: the run fails with an S3 error. (Its own folder and `.env`:
    # Dagster's CLI loads `.env` over the environment.)
    failing = tmp_path / "project-failing"
    failing.mkdir()
    (failing / ".env").write_text(
        (work / ".env").read_text().replace(f"s3://{bucket}/lake\n", f"s3://{bucket}-absent/lake\n")
    )
    failed = materialize(failing, "2024-08-09|BTC-USDT")

    assert "RUN_SUCCESS" in succeeded.stderr, succeeded.stderr[-3000:]
    assert failed.returncode == 1 and "the S3 bucket does not exist" in failed.stderr
    for name, output in (("succeeded", succeeded), ("failed", failed)):
        assert leaks(output.stdout) == [] and leaks(output.stderr) == [], name

    # Every file the runs left, outside the `.env` that holds the secrets.
    scanned = 0
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != ".env":
            assert leaks(path.read_bytes()) == [], path
            scanned += 1
    assert scanned > 20

    # The event log as the UI reads it: every record, its metadata and its errors.
    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert sorted(run.status.value for run in runs) == ["FAILURE", "SUCCESS"]
        entries = []
        for run in runs:
            assert leaks(serialize_value(run)) == []
            entries += instance.all_logs(run.run_id)
    finally:
        instance.dispose()
    events: dict[DagsterEventType, list] = {}
    for entry in entries:
        assert leaks(serialize_value(entry)) == [], entry.message
        if entry.dagster_event is not None:
            events.setdefault(entry.dagster_event.event_type, []).append(entry.dagster_event)
    materializations = events[DagsterEventType.ASSET_MATERIALIZATION]
    assert len(materializations) >= 8
    for event in materializations:
        assert leaks(repr(event.step_materialization_data.materialization.metadata)) == []
    evaluations = [e.event_specific_data for e in events[DagsterEventType.ASSET_CHECK_EVALUATION]]
    assert any(not evaluation.passed for evaluation in evaluations)  # failing checks recorded
    errors = [e.step_failure_data.error for e in events[DagsterEventType.STEP_FAILURE]]
    assert errors and all("the S3 bucket does not exist" in e.to_string() for e in errors)
    for error in errors:
        assert leaks(error.to_string()) == []
    # Our own log lines reached the event log (python_logs above), so they were scanned too.
    assert any("downloaded" in entry.user_message for entry in entries)

    # What the alert webhook (failed checks) and the Pushgateway (every step's metrics) were sent.
    assert any(path.startswith("/hooks/") for path in receiver.paths)
    assert any(path.startswith("/metrics/job/") for path in receiver.paths)
    for body in receiver.bodies:
        assert leaks(body) == []
