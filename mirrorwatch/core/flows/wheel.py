"""A timing wheel of one-second buckets: which flows may be due by packet time ``now``.

A flow is filed in the bucket of the whole second its deadline falls in, and
in no other: filing it again moves it, ending it (``unfile``) takes it out at
once.  The wheel therefore never keeps a session alive after the table let it
go (evicted, reused, timed out): its memory is bounded by the table's caps,
not by the rate of new sessions times their timeout.  Buckets are dicts keyed
by the flow (identity), so filing, moving and unfiling are O(1); ``pop_due``
hands out whole buckets, oldest first.  A dict keeps the room its peak needed
when entries leave it: a bucket that empties is dropped at once, and one that
drains to a small share of its room is copied into a compact dict (checked
when its size reaches a power of two: O(1) amortised), so in a flood, where
each second's bucket fills with 100k new sessions that are ended a second
later, the buckets' memory follows the sessions alive, not their peak.
"""

from __future__ import annotations

import heapq
import math
import sys

_ENTRY_ROOM = 128  # bytes per entry beyond which a drained bucket is compacted (a dense dict needs ~40-80)


class TimingWheel:
    """Flows by the whole second of their deadline (``flow.bucket`` holds it; None: not filed)."""

    __slots__ = ("_buckets", "_keys")

    def __init__(self) -> None:
        self._buckets: dict[int, dict] = {}
        self._keys: list[int] = []  # heap of the seconds that have a bucket

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def file(self, f, deadline: float) -> None:
        """(Re)file ``f`` under ``deadline``."""
        k = math.ceil(deadline)
        old = f.bucket
        if old == k:
            return
        if old is not None:
            self._drop(old, f)
        f.bucket = k
        b = self._buckets.get(k)
        if b is None:
            self._buckets[k] = {f: None}
            heapq.heappush(self._keys, k)
        else:
            b[f] = None

    def unfile(self, f) -> None:
        """``f`` left the table: the wheel forgets it now."""
        k = f.bucket
        if k is not None:
            self._drop(k, f)
            f.bucket = None

    def _drop(self, k: int, f) -> None:
        buckets = self._buckets
        b = buckets.get(k)
        if b is None:
            return
        b.pop(f, None)
        n = len(b)
        if not n:
            del buckets[k]  # its heap key stays: pop_due finds no bucket there
        elif not n & (n - 1) and sys.getsizeof(b) > _ENTRY_ROOM * n:
            buckets[k] = dict(b)  # a sparse dict copies into a compact one

    def pop_due(self, now: float):
        """Yield the flows of every bucket whose second is <= ``now`` (each unfiled first)."""
        keys = self._keys
        buckets = self._buckets
        while keys and keys[0] <= now:
            k = heapq.heappop(keys)
            for f in buckets.pop(k, {}):
                f.bucket = None
                yield f

    def clear(self) -> None:
        self._buckets.clear()
        self._keys.clear()
