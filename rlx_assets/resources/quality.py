"""The `quality` resource: data-quality thresholds the checks enforce (from RLX_ settings)."""

from __future__ import annotations

from dagster import ConfigurableResource


class QualityResource(ConfigurableResource):
    max_mid_deviation_bps: float
    min_top20_match_share: float
    max_clock_skew_ms: float
    max_origin_time_invalid_share: float
    max_precision_loss_share: float
    max_quarantined_share: float
    min_top_of_book_agreement: float
    fidelity_alpha: float

    @classmethod
    def from_settings(cls, settings) -> QualityResource:
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})
