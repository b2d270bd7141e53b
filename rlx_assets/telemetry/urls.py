"""URLs that may carry credentials: what may be shown of them, and the credentials apart."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def redacted(url: str) -> str:
    """Scheme, host and port only: user info, path and query may hold a secret (basic auth, a
    webhook's token), so a log line or error never shows them."""
    parts = urlsplit(url)
    host = _host(url)
    hidden = "/…" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{hidden}"


def without_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without user:password@, user, password)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    bare = urlunsplit((parts.scheme, _host(url), parts.path, parts.query, parts.fragment))
    password = unquote(parts.password) if parts.password is not None else None
    return bare, unquote(parts.username), password
