import sys
import time

import numpy as np
import pytest

from rlx_assets.telemetry.memory import PeakMemory

MB = 1 << 20
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _hold(megabytes: int) -> None:
    block = np.ones(megabytes * MB // 8)  # written, so resident
    time.sleep(0.3)  # several samples long
    del block


def test_a_step_sees_its_own_peak_even_below_the_process_high_water_mark() -> None:
    with PeakMemory() as idle:
        pass
    with PeakMemory() as big:  # raises the process's high-water mark: exact
        _hold(400)
    with PeakMemory() as small:  # below that mark: sampled
        _hold(150)
    assert big.peak >= idle.peak + 350 * MB
    assert idle.peak + 100 * MB <= small.peak <= big.peak - 150 * MB
