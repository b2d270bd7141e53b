"""A reconstructed_book materialization killed with SIGKILL at random points resumes from its
checkpoint and ends byte-identical to an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import AssetSelection

from rlx_assets.resources.io_manager import partition_path
from rlx_assets_tests.conftest import (
    FIXTURE_DAYS,
    REPO,
    make_settings,
    materializations,
    materialize_day,
)

DAY = FIXTURE_DAYS[0]
CHUNK_ROWS = 1_000
BOOK_ASSETS = ("reconstructed_book", "book_state")

RUN_BOOK = """
import sys
from dagster import AssetSelection, materialize
from rlx_assets.definitions import build_definitions
from rlx_assets_tests.conftest import make_settings
from pathlib import Path
settings = make_settings(Path(sys.argv[1]), replay_chunk_rows=int(sys.argv[2]))
definitions = build_definitions(settings)
result = materialize(
    list(definitions.assets), resources=definitions.resources, partition_key=sys.argv[3],
    selection=AssetSelection.assets("reconstructed_book", "book_state"),
)
sys.exit(0 if result.success else 1)
"""


def _files(storage: Path) -> dict[str, bytes]:
    return {
        asset: Path(partition_path(str(storage), asset, "BINANCE", "BTC-USDT", DAY)).read_bytes()
        for asset in BOOK_ASSETS
    }


def _kill_after_segments(storage: Path, segments: int) -> bool:
    """Run the book step in a child process and SIGKILL it once `segments` chunks are
    checkpointed; False when it finished first."""
    folder = storage / ".checkpoints" / "reconstructed_book"
    child = subprocess.Popen(
        [sys.executable, "-c", RUN_BOOK, str(storage), str(CHUNK_ROWS), f"{DAY}|BTC-USDT"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("RLX_")},
    )
    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and time.monotonic() < deadline:
            if len(list(folder.rglob("segment-*.npz"))) >= segments:
                child.send_signal(signal.SIGKILL)
                child.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_killed_at_random_points_it_resumes_to_identical_bytes(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    uninterrupted = materialize_day(make_settings(reference, replay_chunk_rows=CHUNK_ROWS), DAY)
    assert uninterrupted.success
    expected = _files(reference)
    chunks = materializations(uninterrupted)["reconstructed_book"]["chunks"]
    assert chunks > 20

    generator = random.Random(20240808)
    resumed = []
    for trial in range(3):
        storage = tmp_path / f"trial-{trial}"
        settings = make_settings(storage, replay_chunk_rows=CHUNK_ROWS)
        raw = AssetSelection.groups("raw")
        assert materialize_day(settings, DAY, selection=raw).success  # the book's inputs
        segments = generator.randint(2, chunks - 2)
        if not _kill_after_segments(storage, segments):
            continue
        result = materialize_day(
            settings,
            DAY,
            selection=AssetSelection.assets(*BOOK_ASSETS),
        )
        assert result.success
        book = materializations(result)["reconstructed_book"]
        resumed.append(book["resumed_from_chunk"])
        # The kill may land between a segment and its state: then that chunk is replayed again.
        assert book["resumed_from_chunk"] >= segments - 1
        assert _files(storage) == expected, f"trial {trial}"
        assert not (storage / ".checkpoints" / "reconstructed_book").exists() or not list(
            (storage / ".checkpoints" / "reconstructed_book").rglob("segment-*")
        )
    assert resumed, "no trial was killed mid-stream"
