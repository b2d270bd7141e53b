"""Delta messages whose sequence number puts them far from their time: found from the message times,
quarantined as `sequence_out_of_place`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rlx_assets.engine.raw_account import RawAccount
from rlx_assets.engine.runs import Run

# Sequence numbers that went back for a few messages mid-day (or jumped ahead) put those
# messages first (or last) in sequence order, hours away from their neighbours in time. A
# message is out of place when it is later than the message OUT_OF_PLACE_NEIGHBOURS after it by
# more than OUT_OF_PLACE_SPAN_NS (or has none that far after it), and earlier than the one that
# far before it by as much (or has none). A longer run of such messages is a regime of its own
# (a feed numbered again), kept; a sparse feed is in order, however far apart its messages.
OUT_OF_PLACE_REASON = "sequence_out_of_place"


OUT_OF_PLACE_SPAN_NS = 600 * 10**9


OUT_OF_PLACE_NEIGHBOURS = 100


def _message_ids(sequence: np.ndarray, last_sequence: int, last_id: int) -> np.ndarray:
    """Message number of each row (rows in sequence order), continuing from the previous
    batch's last row."""
    starts = np.empty(sequence.size, dtype=bool)
    starts[0] = sequence[0] != last_sequence
    starts[1:] = sequence[1:] != sequence[:-1]
    return last_id + np.cumsum(starts)


def messages_out_of_place(times: list[np.ndarray]) -> np.ndarray:
    """The numbers of the messages out of place (see OUT_OF_PLACE_REASON), from the time of
    each kept message in sequence order."""
    if not times:
        return np.zeros(0, dtype=np.int64)
    time = np.concatenate(times)
    reach = OUT_OF_PLACE_NEIGHBOURS
    if time.size <= reach:
        return np.zeros(0, dtype=np.int64)
    # Pairs (i, i + reach) whose times run backwards by more than the span.
    backwards = time[:-reach] - time[reach:] > OUT_OF_PLACE_SPAN_NS
    later_than_after = np.ones(time.size, dtype=bool)  # none that far after: true
    later_than_after[:-reach] = backwards
    earlier_than_before = np.ones(time.size, dtype=bool)
    earlier_than_before[reach:] = backwards
    return np.flatnonzero(later_than_after & earlier_than_before)


class WithoutMessages:
    """A run of kept rows without the messages given. The first read quarantines their rows
    and takes them off the kept count; other reads (later, or at the same time on another
    thread) only leave them out."""

    def __init__(
        self,
        run: Run,
        messages: np.ndarray,
        account: RawAccount,
        quarantine: Callable[[pa.Table], None],
    ) -> None:
        self.run = run
        self.messages = messages
        self.account = account
        self.quarantine = quarantine
        self.removed = 0
        self._counting_claimed = False
        self._claim = threading.Lock()

    @property
    def rows(self) -> int:
        return self.run.rows - self.removed

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Whole rows are read whatever `columns`: the first read quarantines whole rows."""
        for batch in self._whole_batches():
            yield batch if columns is None else batch.select(list(columns))

    def _whole_batches(self) -> Iterator[pa.Table]:
        with self._claim:
            counting, self._counting_claimed = not self._counting_claimed, True
        last_sequence, last_id = -(2**63), -1
        for batch in self.run.batches():
            if batch.num_rows == 0:
                continue
            sequence = pc.fill_null(batch["sequence_number"], -1).to_numpy()
            ids = _message_ids(sequence, last_sequence, last_id)
            last_sequence, last_id = int(sequence[-1]), int(ids[-1])
            out = np.isin(ids, self.messages)
            if not out.any():
                yield batch
                continue
            if counting:
                self._quarantine(batch.filter(pa.array(out)))
            yield batch.filter(pa.array(~out))

    def _quarantine(self, rows: pa.Table) -> None:
        count = rows.num_rows
        self.removed += count
        self.account.rows_kept -= count
        self.account.quarantined[OUT_OF_PLACE_REASON] += count
        origin = pc.fill_null(pc.greater(rows["origin_time"], 0), False).to_numpy()
        self.account.origin_time_invalid -= int((~origin).sum())
        self.quarantine(rows.append_column("reason", pa.array([OUT_OF_PLACE_REASON] * count)))
