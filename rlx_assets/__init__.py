"""rlx_assets: Crypto Lake market data -> validated order books and one event stream (Dagster)."""

from rlx_assets.definitions import defs

__all__ = ["defs"]
