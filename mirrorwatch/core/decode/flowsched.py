"""Which worker a session's flow hash names: ``autofp-scheduler`` (Suricata's key for how one capture's
sessions are shared among workers).  ``flowshare.FlowPartitioner`` computes the hash; this decides.

- ``hash``: the hash modulo the number of workers (Suricata's default).  A few
  heavy sessions make the split uneven: the real mixed capture of the bench
  goes 55/45 between two workers, which caps their speed-up at 1.8x.
- ``ippair``: the same, of the address pair only (the partitioner leaves the
  ports out of the hash), as Suricata's ``ippair`` scheduler.
- ``balanced`` (the default): the hash's top 16 bits name one of 65,536
  buckets; the first frame of a bucket gives it to the worker that has been
  given the least work so far, and the bucket keeps that worker while it is
  active.  Work is an estimate of one engine's time: so much a frame, a byte
  and a new session (``WORK_*``; a session costs an engine about as much as 16
  of its frames, so counting frames alone gave one worker 53% of the real
  mixed capture's time).  A bucket idle for longer than ``idle`` (twice the
  longest flow timeout: no session of it can still be alive in any engine) is
  given afresh; idle is read on ``now``, the latest time seen, which never
  goes back.  Every worker reads every frame in the same order and so makes
  the same choices: each session still has exactly one worker, both
  directions and its fragments included.  Like Suricata's former
  ``active-packets`` scheduler, but deterministic.
"""

from __future__ import annotations

from array import array

import cython

HASH, IPPAIR, BALANCED = 0, 1, 2
_BALANCED = BALANCED  # the same, as a C constant (.pxd)
_CODES = {"hash": HASH, "ippair": IPPAIR, "balanced": BALANCED}
_BUCKET_SHIFT, _BUCKETS = 16, 1 << 16  # balanced: the hash's top 16 bits name its bucket
# balanced: the work a worker is given, in units of ~1/16 us of one engine's time (fitted by least squares
# over the sessions of the bench's real mixed capture: ~1.2 us a frame, ~1.5 ns a byte, ~20 us a session)
WORK_FRAME, WORK_BYTE_SHIFT, WORK_SESSION = 20, 3, 330


class Scheduler:
    """``pick(h)``: the worker of flow hash ``h``; ``give(w, nbytes)``: a frame of that many bytes went to ``w``."""

    def __init__(self, workers: int, kind: str = "hash", idle: float = 0.0):
        self.n = workers
        self.kind = _CODES[kind]
        self.idle = idle  # balanced: seconds a bucket stays its worker's with no frame
        self.now = 0.0  # balanced: the latest time read (OwnFrames sets it)
        self._bucket_worker = array("i", bytes(4 * _BUCKETS))  # balanced: worker + 1 (0: not given yet)
        self._bucket_seen = array("d", bytes(8 * _BUCKETS))  # balanced: when its last frame was read
        self._given = array("q", bytes(8 * workers))  # balanced: work given to each worker so far

    @cython.boundscheck(False)  # b < _BUCKETS (h is 32 bits), w - 1 < n: checked by construction
    @cython.wraparound(False)
    def pick(self, h: int) -> int:
        if self.kind != _BALANCED:
            return h % self.n
        b = h >> _BUCKET_SHIFT
        w = self._bucket_worker[b]
        if w == 0 or self.now - self._bucket_seen[b] > self.idle:
            w = 1
            for i in range(1, self.n):
                if self._given[i] < self._given[w - 1]:
                    w = i + 1
            self._bucket_worker[b] = w
            self._given[w - 1] += WORK_SESSION
        self._bucket_seen[b] = self.now
        return w - 1

    @cython.boundscheck(False)  # w: an owner, 0..n-1
    @cython.wraparound(False)
    def give(self, w: int, nbytes: int) -> None:
        self._given[w] += WORK_FRAME + (nbytes >> WORK_BYTE_SHIFT)
