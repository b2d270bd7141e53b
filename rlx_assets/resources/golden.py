"""The `golden` resource: where golden samples live (`<dir>/<SYMBOL>-<YYYY-MM-DD>.jsonl.gz`)."""

from __future__ import annotations

import datetime as dt

from dagster import ConfigurableResource
from fsspec.core import url_to_fs

from rlx_assets.lake.open import s3_options


class GoldenResource(ConfigurableResource):
    """A local folder or an s3:// prefix (S3 options and credentials as the lake builds them)."""

    directory: str
    s3_endpoint_url: str | None = None
    s3_anon: bool = False
    s3_region: str | None = None

    def path(self, symbol: str, day: dt.date) -> str:
        return f"{self.directory.rstrip('/')}/{symbol}-{day.isoformat()}.jsonl.gz"

    def read(self, symbol: str, day: dt.date) -> bytes | None:
        """The file's bytes, or None when there is no golden sample for that day."""
        options = {}
        if self.directory.startswith("s3://"):
            options = s3_options(self.s3_endpoint_url, self.s3_anon, self.s3_region)
        fs, path = url_to_fs(self.path(symbol, day), **options)
        try:
            with fs.open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
