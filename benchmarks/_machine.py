"""What the benchmarks ask of the machine, without importing the project (a parent process that
only watches its children stays small)."""

from __future__ import annotations


def available_memory() -> int | None:
    """MemAvailable of the machine in bytes (Linux), else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
