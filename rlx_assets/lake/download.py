"""Downloads from S3 verified against the object's size and ETag (MD5 where S3 gives one), tried
again from the start when they do not match; and the lake cache's copies."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import fsspec

from rlx_assets.lake.cache import CachedFile, LakeCache
from rlx_assets.lake.errors import LakeAccessError

log = logging.getLogger(__name__)


DOWNLOAD_ATTEMPTS = 3


BLOCK = 8 << 20


def download_verified(
    fs: fsspec.AbstractFileSystem, path: str, uri: str, target: Path
) -> tuple[str | None, str, int]:
    """Download `path` into `target` and check it whole: (ETag, SHA-256, size).

    Each request is already retried (botocore, s3fs); this catches what they cannot see, a file
    shorter than the object or bytes that are not the ETag's. Such a download is tried again
    from the start; the third failure is an error naming the file and what did not match.
    """
    problem = ""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        sha256 = hashlib.sha256()
        written = 0
        # s3fs captures the object's info at open and reads with If-Match on its ETag, so this
        # ETag and size belong to exactly the bytes read.
        with open(target, "wb") as out, fs.open(path, "rb", block_size=BLOCK) as handle:
            etag = etag_of(handle)
            expected = int(handle.size)
            md5 = hashlib.md5(usedforsecurity=False) if _is_md5(etag) else None
            while block := handle.read(BLOCK):
                sha256.update(block)
                if md5 is not None:
                    md5.update(block)
                out.write(block)
                written += len(block)
        if written != expected:
            problem = f"download incomplete: {written} of {expected} bytes"
        elif md5 is not None and md5.hexdigest() != etag:
            problem = "downloaded bytes do not match the object's ETag (MD5)"
        else:
            log.debug("%s: downloaded %d bytes, ETag %s", uri, written, etag)
            return etag, sha256.hexdigest(), written
        if attempt < DOWNLOAD_ATTEMPTS:
            log.warning(
                "%s: %s; downloading it again (%d of %d)",
                uri,
                problem,
                attempt + 1,
                DOWNLOAD_ATTEMPTS,
            )
    raise LakeAccessError(f"{uri}: {problem}, {DOWNLOAD_ATTEMPTS} downloads in a row")


def _is_md5(etag: str | None) -> bool:
    """A single-part upload's ETag is the MD5 of its bytes; a multipart one ends in -<parts>."""
    return etag is not None and len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)


def cached_copy(cache: LakeCache | None, uri: str, listed: dict[str, Any]) -> CachedFile | None:
    etag, size = clean_etag(listed.get("ETag")), listed.get("size")
    if cache is None or etag is None or not isinstance(size, int):
        return None
    cached = cache.open(uri, etag, size)
    if cached is not None:
        log.debug("%s: read from the lake cache (ETag %s)", uri, etag)
    return cached


def clean_etag(etag: object) -> str | None:
    return etag.strip('"') if isinstance(etag, str) and etag else None


def etag_of(handle: object) -> str | None:
    details = getattr(handle, "details", None) or {}
    return clean_etag(details.get("ETag"))


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
