"""Dagster glue by domain: raw/, book/, quality/ (assets and their checks), with the check names
and the metadata helpers they share."""
