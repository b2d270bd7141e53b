"""Nothing is written outside RLX_STORAGE_URL, and what is written there is the owner's alone.

Symbols and exchanges become folder names (`symbol=<SYMBOL>`): one holding a path separator,
`..` or a leading dot is refused with an error naming the setting, wherever it enters (settings,
the IO manager, the lake). Folders the platform creates are 0o700, the files it publishes 0o600.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from rlx_assets.lake.files import FileLake
from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets.schema import TRADES
from rlx_assets.settings import RlxSettings
from rlx_assets_tests.conftest import FIXTURE_DAYS, make_settings, materialize_day

DAY = dt.date(2024, 8, 8)
ODD_NAMES = ["../outside", "../../etc", "BTC/USDT", "BTC\\USDT", "..", ".hidden", "A|B", "/abs"]


def everything_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("value", ODD_NAMES)
def test_settings_refuse_symbols_that_are_not_folder_names(value: str, monkeypatch) -> None:
    monkeypatch.setenv("RLX_SYMBOLS", f"BTC-USDT,{value}")
    with pytest.raises(ValidationError) as caught:
        RlxSettings(_env_file=None)
    message = str(caught.value)
    assert "RLX_SYMBOLS" in message and repr(value.upper()) in message
    assert "cannot be a folder name" in message


@pytest.mark.parametrize("value", ["../x", "BIN/ANCE", "..", ".BINANCE", ""])
def test_settings_refuse_exchanges_that_are_not_folder_names(value: str) -> None:
    with pytest.raises(ValidationError, match=r"RLX_EXCHANGE .* cannot be a folder name"):
        RlxSettings(_env_file=None, exchange=value)


@pytest.mark.parametrize(
    ("exchange", "folder", "symbol", "date", "message"),
    [
        ("BINANCE", "raw_trades", "../../outside", DAY, "symbol '../../outside'"),
        ("BINANCE", "raw_trades", "BTC\\USDT", DAY, "symbol 'BTC\\\\\\\\USDT'"),
        ("../..", "raw_trades", "BTC-USDT", DAY, "exchange '../..'"),
        ("BINANCE", "../../outside", "BTC-USDT", DAY, "asset folder '..'"),
        ("BINANCE", "quarantine/../../x", "BTC-USDT", DAY, "asset folder '..'"),
        ("BINANCE", "raw_trades", "BTC-USDT", "2024-08-08/../../x", "not a day"),
    ],
)
def test_the_io_manager_never_writes_outside_its_root(
    tmp_path: Path, exchange: str, folder: str, symbol: str, date, message: str
) -> None:
    root = tmp_path / "deep" / "storage"
    io_manager = ParquetIOManager(base_url=str(root), exchange=exchange)

    with pytest.raises(ValueError, match=message):
        io_manager.write_partition(folder, symbol, date, pa.table({"x": [1]}))
    with (
        pytest.raises(ValueError, match=message),
        io_manager.partition_writer(folder, symbol, date) as writer,
    ):
        writer.write(pa.table({"x": [1]}))

    assert everything_under(tmp_path) <= {tmp_path / "deep", root, *everything_under(root)}
    assert not any(path.suffix == ".parquet" for path in everything_under(tmp_path))


@pytest.mark.parametrize("symbol", ["../BTC-USDT", "BTC\\USDT", ".."])
def test_the_lake_never_reads_outside_its_root(tmp_path: Path, symbol: str) -> None:
    with pytest.raises(ValueError, match="invalid symbol"):
        FileLake(str(tmp_path)).open_day(TRADES, "BINANCE", symbol, DAY, whole=True)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common default (0o022): files and folders would be world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_materialized_day_is_the_owners_alone(tmp_path: Path, usual_umask: None) -> None:
    root = tmp_path / "new" / "storage"  # neither exists yet
    settings = make_settings(root, replay_chunk_rows=50_000)  # chunks: checkpoints are written
    assert materialize_day(settings, FIXTURE_DAYS[0]).success

    created = [tmp_path / "new", root, *everything_under(root)]
    folders = [path for path in created if path.is_dir()]
    parts = [path for path in created if path.name == "part-0.parquet"]
    assert len(parts) == 9  # every asset
    for path in folders:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in parts:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Whatever else lives in the tree (checkpoints, spilled runs) is behind an owner-only folder.
    for path in created:
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0, path


def test_tables_written_beside_the_assets_are_private(tmp_path: Path, usual_umask: None) -> None:
    # How quarantined rows are kept (quarantine/<raw asset>/...).
    io_manager = ParquetIOManager(base_url=str(tmp_path / "storage"), exchange="BINANCE")
    location, _ = io_manager.write_partition(
        "quarantine/raw_trades", "BTC-USDT", DAY, pa.table({"x": [1]})
    )

    path = Path(location)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in [tmp_path / "storage", *everything_under(tmp_path / "storage")]:
        if folder.is_dir():
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
