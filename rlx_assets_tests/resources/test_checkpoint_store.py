"""The book step's checkpoint store behaves the same on local disk and on S3 (moto on loopback),
and the IO manager puts it beside the assets of either storage."""

from pathlib import Path

import boto3
import pytest

from rlx_assets.resources.io_manager import ParquetIOManager
from rlx_assets_tests import s3_server as s3

aws_env, s3_server = s3.aws_env, s3.s3_server

PARTITION = ("reconstructed_book", "BTC-USDT", "2024-08-08")
FOLDER = ".checkpoints/reconstructed_book/exchange=BINANCE/symbol=BTC-USDT/dt=2024-08-08"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "assets")
    server = request.getfixturevalue("s3_server")
    request.getfixturevalue("aws_env")
    bucket = s3.unique_bucket()
    boto3.client("s3", endpoint_url=server).create_bucket(Bucket=bucket)
    request.node.endpoint = server
    return f"s3://{bucket}/assets"


def test_store_round_trip_beside_the_assets(storage: str, request) -> None:
    endpoint = getattr(request.node, "endpoint", None)
    manager = ParquetIOManager(base_url=storage, exchange="BINANCE", s3_endpoint_url=endpoint)
    store = manager.checkpoint_folder(*PARTITION)
    assert store.location == f"{storage}/{FOLDER}"
    assert not store.exists("checkpoint.json")
    store.write("checkpoint.json", b'{"chunks": 1}')
    store.write("checkpoint.json", b'{"chunks": 2}')  # replaced whole
    store.write("state-000002.npz", b"\x00" * 1000)
    # A second manager (another worker) finds what the first wrote.
    other = ParquetIOManager(base_url=storage, exchange="BINANCE", s3_endpoint_url=endpoint)
    again = other.checkpoint_folder(*PARTITION)
    assert again.read_text("checkpoint.json") == '{"chunks": 2}'
    with again.open("state-000002.npz") as handle:
        assert handle.read() == b"\x00" * 1000
    again.remove("state-000002.npz")
    again.remove("state-000002.npz")  # already gone: fine
    assert not again.exists("state-000002.npz")
    with pytest.raises(FileNotFoundError):
        again.open("state-000002.npz")
    again.clear()
    assert not store.exists("checkpoint.json")
    again.clear()  # nothing there: fine
