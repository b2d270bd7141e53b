"""rlx_assets: Crypto Lake market data -> validated order books and one event stream (Dagster).

Importing the package (or its engine) imports neither Dagster nor the settings: the code location
is `rlx_assets.definitions.rlx_definitions`, built from the settings when Dagster loads it. It is
reachable as `rlx_assets.rlx_definitions` too, so that `dagster ... -m rlx_assets` finds it (Dagster
lists a module's members with `dir()` and reads each one, which reaches `__getattr__` below).
"""

from __future__ import annotations

from typing import Any

_LAZY = "rlx_definitions"


def __getattr__(name: str) -> Any:
    if name == _LAZY:
        from rlx_assets.definitions import rlx_definitions

        return rlx_definitions
    raise AttributeError(f"module 'rlx_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), _LAZY])
