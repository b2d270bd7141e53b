"""The one settings class: `RLX_` variables and `.env`, read on demand (never at import)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rlx_assets.paths import check_path_component


class RlxSettings(BaseSettings):
    """Every knob of the platform. Secrets are `SecretStr` so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="RLX_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    lake_url: str = "synthetic://"
    exchange: str = "BINANCE"
    symbols: Annotated[list[str], NoDecode] = ["BTC-USDT"]
    start_date: dt.date = dt.date(2024, 8, 1)
    storage_url: str = "data/assets"
    golden_dir: str = "data/golden"
    metrics_dir: str = "data/metrics"

    # Golden-sample capture (scripts/capture_golden.py): base URLs, Binance's paths appended;
    # unset: Binance's own endpoints of the market captured.
    capture_ws_url: str | None = None
    capture_rest_url: str | None = None
    # 64 hex digits: captures are encrypted at rest (AES-256-GCM) and read back with it.
    golden_key: SecretStr | None = None

    s3_endpoint_url: str | None = None
    s3_anon: bool = False
    s3_region: str | None = None
    # Attempts per S3 request, the first included (botocore's own retries, with exponential
    # backoff and jitter): throttling (503 SlowDown), 5xx answers, dropped connections.
    s3_max_attempts: int = Field(default=5, ge=1, le=20)
    # "standard" backs off each request; "adaptive" also slows the client down while throttled.
    s3_retry_mode: Literal["standard", "adaptive"] = "standard"
    # Whole lake files downloaded from object stores are kept here, keyed by ETag, so a file is
    # not downloaded again while it is unchanged; the least recently used go beyond the limit
    # (0 turns the cache off).
    lake_cache_dir: str = "data/lake-cache"
    lake_cache_max_mb: int = Field(default=10_240, ge=0)

    # Telemetry: OTLP-JSON lines under metrics_dir for every asset step (off: nothing at all).
    telemetry_enabled: bool = True
    # URLs may carry credentials (user:password@, a token in the path): secrets, never shown.
    pushgateway_url: SecretStr | None = None
    pushgateway_job: str = "rlx_assets"
    # The most a run waits on the gateway, all pushes together; then pushes are skipped.
    pushgateway_timeout_s: float = Field(default=2.0, gt=0)
    alert_webhook_url: SecretStr | None = None
    # The most a run waits on the webhook, all alerts and retries together.
    alert_webhook_timeout_s: float = Field(default=10.0, gt=0)
    # The Dagster UI that alerts link to (a run's page is <ui_base_url>/runs/<run id>).
    ui_base_url: str = "http://127.0.0.1:3000"

    # AWS credentials keep their standard names (no RLX_ prefix).
    aws_access_key_id: SecretStr | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="AWS_SECRET_ACCESS_KEY"
    )
    aws_session_token: SecretStr | None = Field(default=None, validation_alias="AWS_SESSION_TOKEN")

    # Synthetic source: 1.0 is a busy real BTC-USDT day; the default runs in seconds.
    synthetic_scale: float = Field(default=0.002, gt=0, le=4.0)

    # Delta rows the book replay holds at once (memory follows this, not the day's size).
    replay_chunk_rows: int = Field(default=1_000_000, gt=0)

    # Where a run's steps execute: "threads" (the default: ready steps at the same time on
    # threads of the run's process, up to RLX_MAX_CONCURRENT_STEPS), "in_process" (one step at
    # a time) or "celery" (each step a task on the celery workers listening on the broker;
    # deploy/shared).
    executor: Literal["threads", "in_process", "celery"] = "threads"
    max_concurrent_steps: int = Field(default=2, ge=1)
    # redis://[:password@]host:port/db; URLs may carry a password: secrets, never shown.
    celery_broker_url: SecretStr | None = None
    celery_backend_url: SecretStr | None = None  # unset: the broker's URL
    # A step's task unacknowledged this long (its worker died, or it is still running) is handed
    # to another worker: longer than the longest step, shorter than the wait you accept.
    celery_visibility_timeout_s: int = Field(default=3600, ge=2)

    # Parquet codec of every asset: lz4 is the fastest to write and read, zstd the smallest.
    parquet_compression: Literal["lz4", "zstd", "snappy"] = "lz4"

    # Grids "<SYMBOL>=<tick>/<lot>" (e.g. "BTC-USDT=0.01/0.00001"); absent -> inferred daily.
    instrument_grids: Annotated[dict[str, tuple[str, str]], NoDecode] = {}

    # Check thresholds.
    max_mid_deviation_bps: float = Field(default=1.0, ge=0)
    min_top20_match_share: float = Field(default=0.999, ge=0, le=1)
    max_clock_skew_ms: float = Field(default=5_000.0, gt=0)
    max_origin_time_invalid_share: float = Field(default=0.001, ge=0, le=1)
    max_precision_loss_share: float = Field(default=0.0001, ge=0, le=1)
    max_quarantined_share: float = Field(default=0.001, ge=0, le=1)
    min_top_of_book_agreement: float = Field(default=0.999, ge=0, le=1)
    fidelity_alpha: float = Field(default=0.01, gt=0, lt=1)

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip().upper() for s in value.split(",") if s.strip()]
        return value

    @field_validator("instrument_grids", mode="before")
    @classmethod
    def _parse_grids(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        grids: dict[str, tuple[str, str]] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            symbol, sep, steps = item.partition("=")
            tick, slash, lot = steps.partition("/")
            if not (sep and slash and tick and lot):
                raise ValueError(f"RLX_INSTRUMENT_GRIDS item {item!r}: expected SYMBOL=tick/lot")
            grids[symbol.strip().upper()] = (tick.strip(), lot.strip())
        return grids

    @field_validator("symbols")
    @classmethod
    def _symbols_present(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("RLX_SYMBOLS must name at least one symbol")
        for symbol in value:
            # Each symbol becomes a folder name (symbol=<SYMBOL>) under the storage and the lake.
            check_path_component("RLX_SYMBOLS", symbol)
        return value

    @field_validator("exchange")
    @classmethod
    def _exchange_is_a_folder_name(cls, value: str) -> str:
        return check_path_component("RLX_EXCHANGE", value)


@lru_cache(maxsize=1)
def get_settings() -> RlxSettings:
    """Settings as the environment has them now; tests call `get_settings.cache_clear()`."""
    return RlxSettings()
