"""How the assets declare their checks."""

import warnings

from dagster import AssetCheckSpec, PreviewWarning


def partitioned_check(name: str, **kwargs) -> AssetCheckSpec:
    """A check evaluated per partition, so the UI shows each day's result on its own.

    Partitioned check specs are a Dagster preview feature; the warning on every load helps no
    user, so it is silenced here, in one place.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(name, **kwargs)
