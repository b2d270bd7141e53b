"""The `replay` resource: how large a chunk of delta rows the book replay holds at once."""

from dagster import ConfigurableResource
from pydantic import Field


class ReplayResource(ConfigurableResource):
    chunk_rows: int = Field(default=1_000_000, gt=0, description="Delta rows per chunk.")
