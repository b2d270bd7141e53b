"""The `golden` resource: where golden samples live (`<dir>/<SYMBOL>-<YYYY-MM-DD>.jsonl.gz`)."""

from __future__ import annotations

import datetime as dt

from dagster import ConfigurableResource
from fsspec.core import url_to_fs


class GoldenResource(ConfigurableResource):
    """A local folder or an s3:// prefix (credentials from the standard AWS variables)."""

    directory: str
    s3_endpoint_url: str | None = None

    def path(self, symbol: str, day: dt.date) -> str:
        return f"{self.directory.rstrip('/')}/{symbol}-{day.isoformat()}.jsonl.gz"

    def read(self, symbol: str, day: dt.date) -> bytes | None:
        """The file's bytes, or None when there is no golden sample for that day."""
        options = {}
        if self.directory.startswith("s3://") and self.s3_endpoint_url:
            options["client_kwargs"] = {"endpoint_url": self.s3_endpoint_url}
        fs, path = url_to_fs(self.path(symbol, day), **options)
        try:
            with fs.open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
