"""Which storage a URL names: the protocol sets the lake, the asset storage and the golden samples
all go by."""

from __future__ import annotations

import fsspec

S3_PROTOCOLS = frozenset({"s3", "s3a"})
LOCAL_PROTOCOLS = frozenset({None, "file", "local"})  # None: a plain path


def protocol_of(url: str) -> str | None:
    """The URL's protocol, lower case; None for a plain path."""
    protocol, _ = fsspec.core.split_protocol(url.strip())
    return protocol.lower() if protocol else None


def is_s3(url: str) -> bool:
    return protocol_of(url) in S3_PROTOCOLS
