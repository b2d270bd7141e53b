"""Peak resident memory of this process while a step runs.

On Linux: the process's high-water mark (VmHWM) when the step raised it, which is exact;
otherwise (an earlier step of the run peaked higher) the highest resident size sampled every
SAMPLE_S on a background thread. The high-water mark is never reset: benchmarks read it too.
Elsewhere: the process's high-water mark so far (getrusage). Steps that run at the same time
(the default `rlx_threads` executor) share the process: a step's peak is the process's while it
ran, the steps beside it included.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

SAMPLE_S = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATUS = Path("/proc/self/status")
_STATM = Path("/proc/self/statm")


def _high_water_bytes() -> int:
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _resident_bytes() -> int:
    return int(_STATM.read_text().split()[1]) * _PAGE


class PeakMemory:
    """`with PeakMemory() as memory: ...` then `memory.peak` (bytes)."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self._start_high_water = _high_water_bytes()
        if _STATM.exists():
            self._sampled = _resident_bytes()
            self._thread = threading.Thread(target=self._sample, name="rlx-peak-memory")
            self._thread.daemon = True
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sampled = max(self._sampled, _resident_bytes())

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sampled = max(self._sampled, _resident_bytes())
        high_water = _high_water_bytes()
        raised = high_water > self._start_high_water or self._thread is None
        self.peak = high_water if raised else self._sampled
