"""`RLX_LAKE_URL` to a lake: `synthetic://`, `s3://bucket/prefix`, `file:///path`, a plain path."""

from __future__ import annotations

from typing import Any

from rlx_assets.lake.cache import LakeCache
from rlx_assets.lake.files import FileLake
from rlx_assets.lake.source import Lake
from rlx_assets.lake.urls import LOCAL_PROTOCOLS, S3_PROTOCOLS, protocol_of
from rlx_assets.settings import RlxSettings, get_settings


def _retry_checksum_failures() -> None:
    """A body that fails its S3 checksum (botocore validates it when S3 sends one) is a transfer
    fault like a body cut short: register it with s3fs's retries (its documented hook)."""
    from botocore.exceptions import FlexibleChecksumError
    from s3fs.core import S3_RETRYABLE_ERRORS, add_retryable_error

    if not issubclass(FlexibleChecksumError, S3_RETRYABLE_ERRORS):
        add_retryable_error(FlexibleChecksumError)


def s3_storage_options(settings: RlxSettings) -> dict[str, Any]:
    """s3fs options from settings: endpoint, region, anonymous access, AWS credentials, retries.

    The one place S3 options are built: the lake, the asset storage and the golden samples all
    use it. The result holds the secrets in plain text: hand it to fsspec, never log or store it.
    """
    _retry_checksum_failures()
    options: dict[str, Any] = {
        "anon": settings.s3_anon,
        # Listings are not cached: a file another process writes must be seen on the next read.
        "use_listings_cache": False,
        # botocore retries each request itself: throttling (503 SlowDown), 5xx answers and
        # dropped connections, with exponential backoff and jitter ("total_": the first attempt
        # counts; botocore's "max_attempts" would not count it). Around that, s3fs tries a
        # request again (up to 5 times, briefly) when its body breaks off or fails its checksum,
        # or botocore gave up on SlowDown.
        "config_kwargs": {
            "retries": {
                "mode": settings.s3_retry_mode,
                "total_max_attempts": settings.s3_max_attempts,
            }
        },
    }
    client_kwargs: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        client_kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        client_kwargs["region_name"] = settings.s3_region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    if not settings.s3_anon:
        # Unset fields leave botocore's own chain (profile, instance role) to find credentials.
        credentials = {
            "key": settings.aws_access_key_id,
            "secret": settings.aws_secret_access_key,
            "token": settings.aws_session_token,
        }
        for option, secret in credentials.items():
            if secret is not None:
                options[option] = secret.get_secret_value()
    return options


def s3_options(endpoint_url: str | None, anon: bool, region: str | None) -> dict[str, Any]:
    """`s3_storage_options` for a resource's own endpoint and access, with the credentials of
    the environment and `.env` (never part of a resource's config, which the UI shows)."""
    settings = get_settings().model_copy(
        update={"s3_endpoint_url": endpoint_url, "s3_anon": anon, "s3_region": region}
    )
    return s3_storage_options(settings)


def lake_cache(settings: RlxSettings) -> LakeCache | None:
    """The local cache of remote lake files that settings ask for (None: no cache)."""
    if settings.lake_cache_max_mb == 0:
        return None
    return LakeCache(settings.lake_cache_dir, settings.lake_cache_max_mb << 20)


def open_lake(settings: RlxSettings) -> Lake:
    """The lake that `settings.lake_url` names."""
    url = settings.lake_url.strip()
    protocol = protocol_of(url)
    if protocol == "synthetic":
        # Imported here: the simulator is heavy and only this source needs it.
        from rlx_assets.lake.synthetic.lake import SyntheticLake

        return SyntheticLake(scale=settings.synthetic_scale, url=settings.lake_url)
    if protocol in S3_PROTOCOLS:
        return FileLake(url, s3_storage_options(settings), lake_cache(settings))
    if protocol in LOCAL_PROTOCOLS:
        return FileLake(url)
    raise ValueError(
        # The scheme only: the rest of an unknown URL could carry credentials.
        f"RLX_LAKE_URL: unsupported scheme {protocol!r}"
        " (expected synthetic://, s3://bucket/prefix, file:///path or a plain path)"
    )
