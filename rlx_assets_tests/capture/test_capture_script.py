"""scripts/capture_golden.py as a user runs it, against Binance replayed on 127.0.0.1: stopped
by SIGTERM mid-stream, it exits 0 and leaves complete files (plain, or encrypted at rest)."""

from __future__ import annotations

import gzip
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlx_assets.capture.encryption import decrypt, is_encrypted
from rlx_assets.engine.golden import parse_golden
from rlx_assets_tests.capture.binance_replay import BinanceReplay, frame_of, gzip_lines
from rlx_assets_tests.conftest import FIXTURE_DAYS, REPO, SLICE

LINES = gzip_lines(SLICE / "golden" / f"BTC-USDT-{FIXTURE_DAYS[1]}.jsonl.gz")


def _start(replay: BinanceReplay, directory: Path, key: str | None) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLX_")}
    environment.update(
        RLX_CAPTURE_WS_URL=replay.ws_url,
        RLX_CAPTURE_REST_URL=replay.rest_url,
        RLX_GOLDEN_DIR=str(directory),
        **({"RLX_GOLDEN_KEY": key} if key else {}),
    )
    command = [sys.executable, "scripts/capture_golden.py", "--symbols", "BTC-USDT"]
    return subprocess.Popen(
        [*command, "--flush-interval", "0.2", "--backoff-initial", "0.05"],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_sigterm_stops_cleanly_with_the_last_file_complete(tmp_path: Path, encrypted) -> None:
    key = secrets.token_hex(32) if encrypted else None
    with BinanceReplay(LINES, speed=2.0) as replay:
        process = _start(replay, tmp_path, key)
        try:
            deadline = time.monotonic() + 60
            while len(replay.sent) < 1500:  # mid-stream: the replay has ~45 s left
                assert process.poll() is None, process.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "no data reached the capture"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        sent = [frame_of(replay.lines[i]) for i in replay.sent]
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert key is None or key not in stderr

    files = sorted(tmp_path.glob("BTC-USDT-*.jsonl.gz"))
    assert files and not list(tmp_path.glob("*.partial"))
    data = files[-1].read_bytes()
    assert is_encrypted(data) == encrypted
    if encrypted:
        data = decrypt(data, bytes.fromhex(key), files[-1].name)
    text = gzip.decompress(data)  # whole: a torn gzip stream raises here
    assert text.endswith(b"\n")
    sample = parse_golden(data)
    assert not sample.truncated and sample.malformed_lines == 0
    written = [frame_of(line) for line in text.splitlines() if b'"stream":"btcusdt@' in line[:60]]
    # Every frame it read is there, in order, byte for byte: a prefix of what was sent.
    assert len(written) >= 1500
    assert written == sent[: len(written)]
    summaries = list(tmp_path.glob("capture-*-spot.summary.json"))
    assert len(summaries) == 1 and '"stop_reason": "stopped"' in summaries[0].read_text()
