"""Pure engine: numpy, numba and pyarrow arrays in, arrays out. No Dagster, no files."""
