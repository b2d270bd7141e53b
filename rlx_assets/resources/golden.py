"""The `golden` resource: where golden samples live (`<dir>/<SYMBOL>-<YYYY-MM-DD>.jsonl.gz`).

Encrypted samples (`rlx_assets.capture.encryption`) are decrypted here with RLX_GOLDEN_KEY, read
from the settings when needed: like the S3 credentials, the key is never part of the resource's
config, which the UI shows."""

from __future__ import annotations

import datetime as dt

from dagster import ConfigurableResource
from fsspec.core import url_to_fs

from rlx_assets.capture.encryption import decrypt, is_encrypted, parse_key
from rlx_assets.lake.open import s3_options
from rlx_assets.lake.urls import is_s3
from rlx_assets.settings import get_settings


class GoldenResource(ConfigurableResource):
    """A local folder or an s3:// prefix (S3 options and credentials as the lake builds them)."""

    directory: str
    s3_endpoint_url: str | None = None
    s3_anon: bool = False
    s3_region: str | None = None

    def path(self, symbol: str, day: dt.date) -> str:
        return f"{self.directory.rstrip('/')}/{symbol}-{day.isoformat()}.jsonl.gz"

    def read(self, symbol: str, day: dt.date) -> bytes | None:
        """The file's bytes (gzip, decrypted if need be), or None when there is no golden
        sample for that day. An encrypted file without the right key raises GoldenKeyError."""
        options = {}
        if is_s3(self.directory):
            options = s3_options(self.s3_endpoint_url, self.s3_anon, self.s3_region)
        fs, path = url_to_fs(self.path(symbol, day), **options)
        try:
            with fs.open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        if not is_encrypted(data):
            return data
        secret = get_settings().golden_key
        key = parse_key(secret.get_secret_value() if secret is not None else None)
        return decrypt(data, key, self.path(symbol, day))
