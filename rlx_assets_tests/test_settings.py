import datetime as dt

import pytest
from pydantic import ValidationError

from rlx_assets.settings import RlxSettings


def test_defaults_are_the_embedded_synthetic_lake(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RlxSettings(_env_file=None)
    assert settings.lake_url == "synthetic://"
    assert settings.exchange == "BINANCE" and settings.symbols == ["BTC-USDT"]
    assert settings.storage_url == "data/assets"


def test_environment_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLX_SYMBOLS", "btc-usdt, ETH-USDT")
    monkeypatch.setenv("RLX_START_DATE", "2024-08-08")
    monkeypatch.setenv("RLX_INSTRUMENT_GRIDS", "BTC-USDT=0.01/0.00001")
    monkeypatch.setenv("RLX_S3_ENDPOINT_URL", "")  # empty means unset
    settings = RlxSettings(_env_file=None)
    assert settings.symbols == ["BTC-USDT", "ETH-USDT"]
    assert settings.start_date == dt.date(2024, 8, 8)
    assert settings.instrument_grids == {"BTC-USDT": ("0.01", "0.00001")}
    assert settings.s3_endpoint_url is None


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("RLX_ALERT_WEBHOOK_URL", "https://hooks.example/token-abc")
    settings = RlxSettings(_env_file=None)
    shown = repr(settings) + str(settings.model_dump())
    assert "very-secret-value" not in shown and "token-abc" not in shown
    assert settings.aws_secret_access_key.get_secret_value() == "very-secret-value"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("RLX_EXCHANGE=COINBASE\nRLX_SYNTHETIC_SCALE=0.01\n")
    monkeypatch.chdir(tmp_path)
    settings = RlxSettings()
    assert settings.exchange == "COINBASE" and settings.synthetic_scale == 0.01


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RLX_INSTRUMENT_GRIDS", "BTC-USDT=0.01", "expected SYMBOL=tick/lot"),
        ("RLX_SYMBOLS", " , ", "at least one symbol"),
        ("RLX_START_DATE", "yesterday", "start_date"),
        ("RLX_SYNTHETIC_SCALE", "0", "synthetic_scale"),
    ],
)
def test_bad_values_say_which_setting(monkeypatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        RlxSettings(_env_file=None)
