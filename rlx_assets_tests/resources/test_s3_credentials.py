"""Where S3 credentials come from, seen on the wire: every request the lake, the asset storage and
the golden samples make passes a proxy on loopback that records the access key id it was signed
with (or that it was not signed). Credentials in the environment, only in `.env`, or none at all
with anonymous access: all three users of S3 behave the same, because one function builds their
options (`lake.open.s3_storage_options`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rlx_assets.definitions import build_definitions
from rlx_assets.lake.errors import LakeAccessError
from rlx_assets.schema import TRADES
from rlx_assets.settings import RlxSettings, get_settings
from rlx_assets_tests import s3_server as s3
from rlx_assets_tests.lake.test_s3_faults import DAY, day_key, trades_file
from rlx_assets_tests.s3_server import ACCESS_KEY_ID, FaultyS3Proxy, unique_bucket

aws_env, s3_client, s3_server, s3_proxy = s3.aws_env, s3.s3_client, s3.s3_server, s3.s3_proxy

DOTENV_KEY_ID = "AKIARLXDOTENVKEY0000"
DOTENV_SECRET = "rlx-dotenv-secret-0b7e4d21-never-printed"
GOLDEN = "golden/BTC-USDT-2024-08-08.jsonl.gz"


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """The lake's file and a golden sample, readable by anyone (like s3://sample.crypto.lake)."""
    name = unique_bucket()
    s3_client.create_bucket(Bucket=name)
    s3_client.put_object(Bucket=name, Key=day_key(), Body=trades_file(), ACL="public-read")
    s3_client.put_object(Bucket=name, Key=GOLDEN, Body=b"golden bytes", ACL="public-read")
    return name


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials anywhere botocore looks, unless a test puts them somewhere."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(missing))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(missing))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3.REGION)


def settings_file(folder: Path, bucket: str, proxy: FaultyS3Proxy, extra: str = "") -> None:
    """A `.env` as a user writes one: everything on S3, through the proxy's endpoint."""
    (folder / ".env").write_text(
        f"RLX_LAKE_URL=s3://{bucket}/lake\n"
        f"RLX_STORAGE_URL=s3://{bucket}/assets\n"
        f"RLX_GOLDEN_DIR=s3://{bucket}/golden\n"
        f"RLX_S3_ENDPOINT_URL={proxy.url}\n"
        f"RLX_LAKE_CACHE_MAX_MB=0\n"
        f"{extra}"
    )


def use_all_three(settings: RlxSettings, write: bool) -> None:
    """What a run does with S3: read the lake, write and read an asset, read a golden sample."""
    resources = build_definitions(settings).resources
    day = resources["lake"].open().read_day(TRADES, "BINANCE", "BTC-USDT", DAY)
    assert day.tables[0].num_rows == 60_000
    if write:
        io_manager = resources["io_manager"]
        io_manager.write_partition("raw_trades", "BTC-USDT", DAY, pa.table({"x": [1, 2, 3]}))
        with io_manager.read_partition("raw_trades", "BTC-USDT", DAY) as parquet:
            assert parquet.metadata.num_rows == 3
    assert resources["golden"].read("BTC-USDT", DAY) == b"golden bytes"


def signed_with(proxy: FaultyS3Proxy) -> dict[str, set[str | None]]:
    """Access key ids seen, by what was asked for (lake, assets, golden)."""
    seen: dict[str, set[str | None]] = {}
    for request in proxy.requests:
        prefix = f"{request.path}?{request.query}"
        user = next(
            (u for u in ("lake", "assets", "golden") if f"/{u}" in prefix or f"={u}" in prefix),
            "other",
        )
        seen.setdefault(user, set()).add(request.access_key_id)
    return seen


def test_credentials_from_the_environment(
    bucket: str, s3_proxy: FaultyS3Proxy, aws_env: None, tmp_path: Path, monkeypatch
) -> None:
    settings_file(tmp_path, bucket, s3_proxy)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    use_all_three(get_settings(), write=True)

    assert signed_with(s3_proxy) == {u: {ACCESS_KEY_ID} for u in ("lake", "assets", "golden")}


def test_credentials_only_in_dotenv_reach_lake_storage_and_golden(
    bucket: str, s3_proxy: FaultyS3Proxy, no_aws_environment: None, tmp_path: Path, monkeypatch
) -> None:
    settings_file(
        tmp_path,
        bucket,
        s3_proxy,
        f"AWS_ACCESS_KEY_ID={DOTENV_KEY_ID}\nAWS_SECRET_ACCESS_KEY={DOTENV_SECRET}\n",
    )
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    use_all_three(get_settings(), write=True)

    assert signed_with(s3_proxy) == {u: {DOTENV_KEY_ID} for u in ("lake", "assets", "golden")}


def test_no_credentials_is_a_clear_error(
    bucket: str, s3_proxy: FaultyS3Proxy, no_aws_environment: None, tmp_path: Path, monkeypatch
) -> None:
    settings_file(tmp_path, bucket, s3_proxy)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    with pytest.raises(LakeAccessError, match="no AWS credentials found") as caught:
        use_all_three(get_settings(), write=False)

    assert str(caught.value).startswith(f"s3://{bucket}/lake/trades/")
    assert s3_proxy.requests == []  # refused before anything was sent


def test_anonymous_access_sends_no_credentials_even_when_some_are_set(
    bucket: str, s3_proxy: FaultyS3Proxy, aws_env: None, tmp_path: Path, monkeypatch
) -> None:
    settings_file(tmp_path, bucket, s3_proxy, "RLX_S3_ANON=true\n")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()

    use_all_three(get_settings(), write=False)

    assert signed_with(s3_proxy) == {"lake": {None}, "golden": {None}}


def test_dotenv_secrets_never_print(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".env").write_text(
        f"AWS_SECRET_ACCESS_KEY={DOTENV_SECRET}\n"
        f"RLX_PUSHGATEWAY_URL=http://rlx:{DOTENV_SECRET}@127.0.0.1:9091\n"
        f"RLX_ALERT_WEBHOOK_URL=http://127.0.0.1:9/hooks/{DOTENV_SECRET}\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = RlxSettings()

    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    assert DOTENV_SECRET not in shown
    assert settings.pushgateway_url is not None and settings.alert_webhook_url is not None
    assert DOTENV_SECRET in settings.pushgateway_url.get_secret_value()
    assert DOTENV_SECRET in settings.alert_webhook_url.get_secret_value()
    definitions = build_definitions(settings.model_copy(update={"storage_url": str(tmp_path)}))
    assert DOTENV_SECRET not in repr(definitions.resources)
