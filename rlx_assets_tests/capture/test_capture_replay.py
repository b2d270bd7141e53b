"""The capture against Binance replayed on 127.0.0.1 from the committed golden sample: both
fixture files (23:58:30 to 00:01:30 UTC) at 15x their recorded pace, the connection dropped
at 00:00:30 and refused for a while, two malformed frames. The capture's clock is the replay's,
so its files rotate at the replayed UTC midnight."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from rlx_assets import schema
from rlx_assets.capture.files import utc_day
from rlx_assets.capture.session import Capture
from rlx_assets.engine.fidelity import compare_day
from rlx_assets.engine.golden import concat_samples, parse_golden
from rlx_assets.engine.reconstruct import reconstruct_day
from rlx_assets.lake.files import FileLake
from rlx_assets_tests.capture.binance_replay import (
    MALFORMED_FRAMES,
    BinanceReplay,
    frame_of,
    gzip_lines,
    outside_gap,
)
from rlx_assets_tests.conftest import FIXTURE_DAYS, SLICE
from rlx_assets_tests.engine.test_fidelity import _clean

SPEED = 15.0
MIDNIGHT_NS = 1_723_161_600 * 10**9  # 2024-08-09 00:00:00 UTC
DROP_AT_NS = MIDNIGHT_NS + 30 * 10**9
MALFORMED_AT_NS = MIDNIGHT_NS - 60 * 10**9
DOWN_S = 0.3  # wall seconds the server refuses connections after the drop (4.5 s replayed)
REFUSALS = 2  # and at least this many handshakes
ORIGINAL = [SLICE / "golden" / f"BTC-USDT-{day}.jsonl.gz" for day in FIXTURE_DAYS]


@dataclasses.dataclass
class Captured:
    directory: Path
    replay: BinanceReplay
    summary: dict
    seconds: float


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Captured:
    directory = tmp_path_factory.mktemp("golden")
    lines = [line for path in ORIGINAL for line in gzip_lines(path)]
    started = time.monotonic()
    with BinanceReplay(
        lines,
        SPEED,
        drop_at_ns=DROP_AT_NS,
        down_s=DOWN_S,
        refusals=REFUSALS,
        malformed_at_ns=MALFORMED_AT_NS,
    ) as replay:
        capture = Capture(replay.capture_config(directory, summary_path=directory / "summary.json"))

        async def run() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(capture.run(stop))
            deadline = time.monotonic() + 60
            # Until the replay is over and the capture has read every frame it was sent.
            while not (
                replay.finished.is_set()
                and capture.summary.frames >= len(replay.sent) + len(MALFORMED_FRAMES)
            ):
                assert not task.done(), task.result()
                assert time.monotonic() < deadline, "the replay did not finish in 60 s"
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(run())
    summary = json.loads((directory / "summary.json").read_text())
    return Captured(directory, replay, summary, time.monotonic() - started)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("BTC-USDT-*.jsonl.gz"))


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip_lines(path)]


def test_the_run_stays_well_under_a_minute(captured: Captured) -> None:
    assert captured.seconds < 50


def test_every_frame_delivered_is_written_byte_for_byte_in_order(captured: Captured) -> None:
    replay = captured.replay
    written = [
        frame_of(line)
        for path in _files(captured.directory)
        for line in gzip_lines(path)
        if b'"stream":"btcusdt@' in line[:60]
    ]
    assert written == [frame_of(replay.lines[index]) for index in replay.sent]
    # Most of the stream got through (how much is lost while the server is down depends on
    # how busy the machine is: the replay keeps its pace, the reconnect takes what it takes).
    assert len(written) > len(replay.lines) // 2
    # What the capture did not get is what the server could not send while it was down.
    assert sorted(replay.sent + replay.lost) == list(range(len(replay.lines)))
    assert len(replay.lost) > 100


def test_files_rotate_at_utc_midnight_and_each_reads_alone(captured: Captured) -> None:
    files = _files(captured.directory)
    assert [p.name for p in files] == [f"BTC-USDT-{day}.jsonl.gz" for day in FIXTURE_DAYS]
    assert not list(captured.directory.glob("*.partial"))
    for path, day in zip(files, FIXTURE_DAYS, strict=True):
        records = _records(path)  # decompresses whole: a torn file would raise here
        assert {utc_day(r["capture_ns"]) for r in records} == {day}
        # Each file has a REST snapshot of its own, so a book can be rebuilt from it alone.
        assert any(r["stream"] == "rest@depthSnapshot" for r in records)
        sample = parse_golden(path.read_bytes(), str(path))
        assert not sample.truncated and sample.malformed_lines == 0
    last_before = max(r["capture_ns"] for r in _records(files[0]))
    first_after = min(r["capture_ns"] for r in _records(files[1]))
    assert last_before < MIDNIGHT_NS <= first_after


def test_a_snapshot_after_every_connect_and_at_each_new_day(captured: Captured) -> None:
    summary = captured.summary
    assert summary["connections"] == 2 == captured.replay.connections
    # One per connection and one per new file, less those asked while one was on its way; a
    # reconnect replaces one still on its way (asked, perhaps answered, never written).
    requests = len(captured.replay.snapshot_requests)
    assert 2 <= summary["snapshots"] <= requests <= summary["snapshots"] + 1 <= 4
    assert summary["snapshot_failures"] == 0
    assert all("symbol=BTCUSDT&limit=5000" in r for r in captured.replay.snapshot_requests)
    snapshots = [
        record
        for path in _files(captured.directory)
        for record in _records(path)
        if record["stream"] == "rest@depthSnapshot"
    ]
    assert all(set(r["data"]) == {"lastUpdateId", "bids", "asks"} for r in snapshots)
    reconnected = captured.summary["gaps"][0]["reconnected_ns"]
    assert any(r["capture_ns"] >= reconnected for r in snapshots)


def test_the_drop_and_the_refusals_are_survived_and_recorded(captured: Captured) -> None:
    summary = captured.summary
    assert summary["disconnects"] == 1
    assert summary["failed_connection_attempts"] == captured.replay.refused >= REFUSALS
    assert len(summary["gaps"]) == 1
    gap = summary["gaps"][0]
    assert gap["reason"] == "disconnect" and gap["symbol"] == "BTC-USDT"
    in_file = [
        r["data"] for r in _records(_files(captured.directory)[1]) if r["stream"] == "capture@gap"
    ]
    assert in_file == [{k: v for k, v in gap.items() if k not in ("symbol", "capture_ns")}]
    assert DROP_AT_NS <= gap["disconnected_ns"] < gap["reconnected_ns"]


def test_every_message_lost_lies_inside_the_recorded_gap(captured: Captured) -> None:
    gap = captured.summary["gaps"][0]
    lost = [json.loads(captured.replay.lines[i]) for i in captured.replay.lost]
    kinds = {r["stream"].split("@", 1)[1] for r in lost}
    assert kinds == {"trade", "bookTicker", "depth@100ms"}
    assert outside_gap(lost, gap) == []


def test_malformed_frames_are_counted_and_never_written(captured: Captured) -> None:
    summary = captured.summary
    assert summary["malformed_frames"] == len(MALFORMED_FRAMES)
    assert summary["malformed_reasons"] == {"not JSON": 1, "expected an integer, got str": 1}
    text = b"".join(gzip.decompress(p.read_bytes()) for p in _files(captured.directory))
    assert b"not a number" not in text and b'"E":17231\n' not in text


@pytest.fixture(scope="module")
def second_day() -> tuple:
    """2024-08-09's rebuilt book (continuing 2024-08-08's) and raw trades."""
    lake = FileLake(str(SLICE))
    state = None
    for day in FIXTURE_DAYS:
        deltas, snapshots = _clean(lake, schema.BOOK_DELTAS, day), _clean(lake, schema.BOOK, day)
        rebuilt = reconstruct_day(deltas, snapshots, state)
        state = rebuilt.state
    return rebuilt.book, _clean(lake, schema.TRADES, FIXTURE_DAYS[1])


def test_the_fidelity_report_equals_the_originals_outside_the_recorded_gap(
    captured: Captured, second_day
) -> None:
    book, trades = second_day
    capture = concat_samples([parse_golden(p.read_bytes()) for p in _files(captured.directory)])
    original = concat_samples([parse_golden(p.read_bytes()) for p in ORIGINAL])
    assert capture.gaps.num_rows == 1 and original.gaps.num_rows == 0
    # The original files, judged outside the window the capture knows it missed.
    original_outside = dataclasses.replace(original, gaps=capture.gaps)

    from_capture = compare_day(book, trades, capture)
    from_original = compare_day(book, trades, original_outside)
    # Everything but the count of golden messages inside the gap, which the capture has fewer of.
    inside_gap = ("trades_excluded_golden", "book_ticker_excluded")
    mine, theirs = from_capture.row(), from_original.row()
    assert {k: v for k, v in mine.items() if k not in inside_gap} == {
        k: v for k, v in theirs.items() if k not in inside_gap
    }
    for name in inside_gap:
        assert 0 < mine[name] < theirs[name]
    for name, (mine, theirs) in from_original.samples.items():
        np.testing.assert_array_equal(from_capture.samples[name][0], mine)
        np.testing.assert_array_equal(from_capture.samples[name][1], theirs)

    # The gap was left out and reported, and it mattered: judged without it, the capture's
    # missing trades would count against the reconstruction.
    assert from_capture.verdict == "PASS", from_capture.verdict_reasons
    assert from_capture.golden_gaps == 1 and "disconnect time 2024-08-09T00:00:" in (
        from_capture.golden_gap_windows
    )
    assert from_capture.trades_excluded_golden > 0
    assert from_capture.trades_excluded_reconstructed >= from_capture.trades_excluded_golden
    assert from_capture.book_ticker_excluded > 0 and from_capture.book_rows_excluded > 0
    assert from_capture.golden_gap_excluded_ms > DOWN_S * SPEED * 1000
    blind = compare_day(book, trades, dataclasses.replace(capture, gaps=original.gaps))
    assert blind.trade_agreement < from_capture.trade_agreement == 1.0
    assert blind.verdict == "FAIL"


def test_the_summary_lists_the_files(captured: Captured) -> None:
    files = captured.summary["files"]
    assert [f["day"] for f in files] == [d.isoformat() for d in FIXTURE_DAYS]
    for entry in files:
        path = Path(entry["path"])
        assert entry["lines"] == len(gzip_lines(path))
        assert dt.date.fromisoformat(entry["day"]) == utc_day(_records(path)[0]["capture_ns"])
