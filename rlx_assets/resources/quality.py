"""The `quality` resource: data-quality thresholds the checks enforce (from RLX_ settings)."""

from __future__ import annotations

from dagster import ConfigurableResource


class QualityResource(ConfigurableResource):
    max_mid_deviation_bps: float
    min_top20_match_share: float
