"""Dagster glue by domain: raw/, book/ (assets and their checks)."""
