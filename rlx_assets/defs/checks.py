"""How the assets declare their checks."""

import warnings
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, PreviewWarning


def partitioned_check(name: str, **kwargs) -> AssetCheckSpec:
    """A check evaluated per partition, so the UI shows each day's result on its own.

    Partitioned check specs are a Dagster preview feature; the warning on every load helps no
    user, so it is silenced here, in one place.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(name, **kwargs)


def at_most(
    check_name: str,
    severity: AssetCheckSeverity,
    figure: str,
    value: float,
    threshold: float,
    threshold_key: str = "threshold",
    **details: Any,
) -> AssetCheckResult:
    """A check that holds while `value` is at most `threshold`; both in the metadata under their
    names (the UI shows each partition's value beside its threshold), then `details`."""
    return AssetCheckResult(
        check_name=check_name,
        passed=value <= threshold,
        severity=severity,
        metadata={figure: value, threshold_key: threshold, **details},
    )
