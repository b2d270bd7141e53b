"""The `lake` resource: which lake to read and how; secrets stay in the environment."""

from __future__ import annotations

import threading

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from rlx_assets.engine.decimals import exponent_of_step
from rlx_assets.lake.source import Lake
from rlx_assets.settings import get_settings

_OPENING = threading.Lock()


class LakeResource(ConfigurableResource):
    """Config shown in the UI holds no secret: AWS keys are read from the environment on open."""

    url: str
    exchange: str
    synthetic_scale: float
    s3_endpoint_url: str | None = None
    s3_anon: bool = False
    s3_region: str | None = None
    # "SYMBOL" -> [tick, lot] as decimal strings, from RLX_INSTRUMENT_GRIDS.
    instrument_grids: dict[str, list[str]] = Field(default_factory=dict)

    _lake: Lake | None = PrivateAttr(default=None)

    def open(self) -> Lake:
        with _OPENING:  # steps running at once (rlx_threads) share one lake
            return self._open()

    def _open(self) -> Lake:
        if self._lake is None:
            from rlx_assets.lake.open import open_lake

            settings = get_settings().model_copy(
                update={
                    "lake_url": self.url,
                    "exchange": self.exchange,
                    "synthetic_scale": self.synthetic_scale,
                    "s3_endpoint_url": self.s3_endpoint_url,
                    "s3_anon": self.s3_anon,
                    "s3_region": self.s3_region,
                }
            )
            self._lake = open_lake(settings)
        return self._lake

    def grid_exponents(self, symbol: str) -> tuple[int | None, int | None]:
        """Price and size step exponents from settings, or (None, None): infer per day."""
        grid = self.instrument_grids.get(symbol)
        if not grid:
            return None, None
        return exponent_of_step(grid[0]), exponent_of_step(grid[1])
