"""Day files (rotation, appending, quiet midnights) and encryption at rest, read back through the
`golden` resource and by the fidelity asset as if they were plain."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import secrets
from pathlib import Path

import pytest
from dagster import materialize

from rlx_assets.capture.binance import MARKETS
from rlx_assets.capture.encryption import (
    EncryptingWriter,
    GoldenKeyError,
    decrypt,
    is_encrypted,
    parse_key,
)
from rlx_assets.capture.files import NS_PER_DAY, DayFiles, golden_path
from rlx_assets.capture.session import Capture, CaptureConfig
from rlx_assets.definitions import build_definitions
from rlx_assets.engine.golden import parse_golden
from rlx_assets.partitions import partition_key
from rlx_assets.resources.golden import GoldenResource
from rlx_assets.settings import get_settings
from rlx_assets_tests.conftest import (
    FIXTURE_DAYS,
    SLICE,
    make_settings,
    materializations,
    materialize_day,
)

KEY = bytes.fromhex("00" * 31 + "01")
DAY = dt.date(2024, 8, 9)
DAY_NS = (DAY - dt.date(1970, 1, 1)).days * NS_PER_DAY


def _encrypt(plain: bytes, key: bytes = KEY, chunk: int = 1000) -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, key, chunk_bytes=chunk)
    for start in range(0, len(plain), 777):  # writes that do not fall on chunk boundaries
        writer.write(plain[start : start + 777])
        if start % 3 == 0:
            writer.flush()
    writer.close()
    return sink.getvalue()


def test_encryption_round_trips_and_hides_the_content() -> None:
    plain = (SLICE / "golden" / f"BTC-USDT-{DAY}.jsonl.gz").read_bytes()
    sealed = _encrypt(plain)
    assert is_encrypted(sealed) and not is_encrypted(plain)
    assert plain[:200] not in sealed
    assert decrypt(sealed, KEY) == plain
    # Two segments (a capture restarted the same day) read as one stream.
    assert decrypt(sealed + _encrypt(b"more"), KEY) == plain + b"more"


def test_a_wrong_or_missing_key_is_a_clear_error() -> None:
    sealed = _encrypt(b"x" * 5000)
    with pytest.raises(GoldenKeyError, match="not the key it was written with"):
        decrypt(sealed, bytes(32), "BTC-USDT-2024-08-09.jsonl.gz")
    with pytest.raises(GoldenKeyError, match="is encrypted: set RLX_GOLDEN_KEY"):
        decrypt(sealed, None, "BTC-USDT-2024-08-09.jsonl.gz")


def test_an_altered_chunk_is_an_error_and_a_cut_file_keeps_its_whole_chunks() -> None:
    sealed = bytearray(_encrypt(b"abcdefghij" * 1000))
    sealed[-40] ^= 1
    with pytest.raises(GoldenKeyError, match="altered"):
        decrypt(bytes(sealed), KEY)
    plain = b"abcdefghij" * 1000
    cut = _encrypt(plain)[:-1500]
    kept = decrypt(cut, KEY)
    assert plain.startswith(kept) and 0 < len(kept) < len(plain)


@pytest.mark.parametrize("text", ["abc", "00" * 31, "zz" * 32, "00" * 33])
def test_a_malformed_key_is_refused_without_being_echoed(text) -> None:
    with pytest.raises(GoldenKeyError, match="64 hexadecimal digits") as error:
        parse_key(text)
    assert text not in str(error.value)
    assert parse_key(None) is None and parse_key(" ") is None


def _capture(tmp_path: Path, clock, key: bytes | None = None) -> Capture:
    config = CaptureConfig(
        market=MARKETS["spot"],
        symbols=["BTC-USDT"],
        directory=tmp_path,
        ws_url="ws://unused",
        rest_url="http://unused",
        key=key,
        clock=clock,
    )
    return Capture(config)


def _frame(update_id: int) -> bytes:
    return (
        b'{"stream":"btcusdt@bookTicker","data":{"u":%d,"s":"BTCUSDT","b":"1.00","B":"2",'
        b'"a":"1.01","A":"3"}}' % update_id
    )


def test_a_quiet_feed_still_gets_its_file_closed_at_midnight(tmp_path: Path) -> None:
    now = [DAY_NS - 5 * 10**9]
    capture = _capture(tmp_path, lambda: now[0])
    capture.on_frame(_frame(1))
    capture.tick()  # flushed, still open: the day has not ended
    path = golden_path(tmp_path, "BTC-USDT", DAY - dt.timedelta(days=1))
    assert not path.exists()
    now[0] = DAY_NS + 10**9  # past midnight, no message since
    capture.tick()
    assert gzip.decompress(path.read_bytes()).count(b"\n") == 1
    capture.on_frame(_frame(2))
    capture.close("stopped")
    assert gzip.decompress(golden_path(tmp_path, "BTC-USDT", DAY).read_bytes()).count(b"\n") == 1


def test_a_capture_restarted_the_same_day_appends_a_readable_member(tmp_path: Path) -> None:
    for key in (None, KEY):
        directory = tmp_path / ("encrypted" if key else "plain")
        for update_id in (1, 2):
            capture = _capture(directory, lambda: DAY_NS + 10**9, key)
            capture.on_frame(_frame(update_id))
            capture.close("stopped")
        data = golden_path(directory, "BTC-USDT", DAY).read_bytes()
        if key:
            data = decrypt(data, key)
        sample = parse_golden(data)
        assert sample.book_ticker["update_id"].to_pylist() == [1, 2]
        assert not sample.truncated


def test_appending_in_another_form_than_the_days_file_is_refused(tmp_path: Path) -> None:
    capture = _capture(tmp_path, lambda: DAY_NS, None)
    capture.on_frame(_frame(1))
    capture.close("stopped")
    with pytest.raises(ValueError, match="exists and is not encrypted"):
        DayFiles(tmp_path, "BTC-USDT", KEY).open(DAY)


def test_the_golden_resource_decrypts_with_the_key_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = (SLICE / "golden" / f"BTC-USDT-{DAY}.jsonl.gz").read_bytes()
    golden_path(tmp_path, "BTC-USDT", DAY).write_bytes(_encrypt(plain, chunk=1 << 16))
    resource = GoldenResource(directory=str(tmp_path))
    with pytest.raises(GoldenKeyError, match="set RLX_GOLDEN_KEY"):
        resource.read("BTC-USDT", DAY)
    monkeypatch.setenv("RLX_GOLDEN_KEY", KEY.hex())
    get_settings.cache_clear()
    assert resource.read("BTC-USDT", DAY) == plain
    # The key is no part of the resource's config (which the UI shows).
    assert KEY.hex() not in repr(resource) and "key" not in resource.model_dump()


def test_the_fidelity_report_reads_encrypted_samples_as_plain_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = FIXTURE_DAYS[0]
    plain_settings = make_settings(tmp_path / "assets")
    plain = materializations(materialize_day(plain_settings, day))["fidelity_report"]
    assert plain["verdict"] == "PASS" and plain["golden_gaps"] == 0

    encrypted_dir = tmp_path / "encrypted"
    encrypted_dir.mkdir()
    for source in (SLICE / "golden").glob("*.jsonl.gz"):
        (encrypted_dir / source.name).write_bytes(_encrypt(source.read_bytes(), chunk=1 << 16))
    settings = make_settings(tmp_path / "assets", golden_dir=str(encrypted_dir))
    key = secrets.token_hex(32)

    def fidelity_only():
        definitions = build_definitions(settings)
        return materialize(
            list(definitions.assets),
            resources=definitions.resources,
            partition_key=partition_key(day, "BTC-USDT"),
            selection=["fidelity_report"],
            raise_on_error=False,
        )

    monkeypatch.setenv("RLX_GOLDEN_KEY", key)  # not the key the files were written with
    get_settings.cache_clear()
    failed = fidelity_only()
    assert not failed.success
    message = str([event.event_specific_data for event in failed.get_step_failure_events()])
    assert "not the key it was written with" in message and key not in message

    monkeypatch.setenv("RLX_GOLDEN_KEY", KEY.hex())
    get_settings.cache_clear()
    result = fidelity_only()
    assert result.success
    report = materializations(result)["fidelity_report"]
    different = {"golden_path", "plots"}  # the folder, and images with their own encoding
    assert {k: v for k, v in report.items() if k not in different} == {
        k: v for k, v in plain.items() if k not in different
    }
