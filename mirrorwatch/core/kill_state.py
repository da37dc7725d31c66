"""The killer's bookkeeping (sans-I/O: packet time only): each killed session's ``KillState`` and the
``FrameBucket`` that decides how many forged frames may leave, and for which purpose.

One token bucket (``inject.max-per-second`` frames per second, as deep as one
second of it) serves three lanes, in priority order:

=========  =============================================================
``FIRST``  the first burst of a new kill: may take every token left
``ANSWER`` follow-ups that answer an endpoint's own exact RCV.NXT
           (challenge ACKs, re-fires): never below the first-shot
           reserve (``inject.first-shot-reserve``, a share of the bucket)
``CHASE``  follow-ups that guess from the streaming peer's data: same
           floor as answers
=========  =============================================================

A burst's exact segments go whole or not at all; its predicted segments
take what is left above the lane's guess floor: zero for a first shot, half
way between the reserve and the top for follow-ups (guesses never take the
room of exact answers).  So however many killed sessions keep streaming,
the reserve stays for the first bursts of new kills.  Frames withheld by
the cap are counted by the caller (``kill.frames_capped``).
"""

from __future__ import annotations

from mirrorwatch.core.reassembly.context import M32

# bit set of endpoints to reset (``KillState.targets``)
TO_SERVER, TO_CLIENT = 1, 2  # the server is reset by a segment travelling to it, and so on
BOTH = TO_SERVER | TO_CLIENT

FIRST, ANSWER, CHASE = 0, 1, 2
LANE_NAMES = ("first_shot", "answer", "chase")
RATE_SPAN = 0.005  # seconds of a stream after a kill began before its own rate replaces the session's average


class KillState:
    """Per-flow scratch of the killer (``flow.kill``)."""

    __slots__ = (
        "gone",
        "last_fire",
        "last_seq",
        "marks",
        "prev_ack",
        "reach",
        "reason",
        "responses",
        "round_start",
        "round_used",
        "span",
        "targets",
    )

    def __init__(self, targets: int, reason: str, flow, span: int, ts: float):
        self.targets = targets
        self.gone = 0  # targets that sent a RST themselves: nothing more goes to them
        self.prev_ack = list(flow.last_ack)  # ack field of each direction's previous packet
        self.responses = 0
        self.last_fire = None
        self.round_start = None  # packet time of the current response's first burst
        self.round_used = [0, 0, 0]  # bursts sent in the current response, per lane (``FrameBucket``)
        self.last_seq = [None, None]  # exact seq of the last burst toward [server, client]
        self.reach = [None, None]  # highest seq sent toward [server, client]
        self.span = [span, span]  # predicted segments the next burst toward [server, client] carries
        self.reason = reason
        # (packet time, next_seq) of each direction when the kill began: its rate since
        self.marks = [None if ns is None else (ts, ns) for ns in flow.next_seq]

    def rate(self, flow, d: int, ts: float) -> float | None:
        """Bytes per second direction ``d`` sent since the kill began (None until ``RATE_SPAN`` seconds passed)."""
        mark, ns = self.marks[d], flow.next_seq[d]
        if mark is None or ns is None or ts - mark[0] < RATE_SPAN:
            return None
        return ((ns - mark[1]) & M32) / (ts - mark[0])


class FrameBucket:
    """The global token bucket with per-lane floors (``room``) and what was taken (``take``)."""

    __slots__ = ("_floors", "_ts", "rate", "tokens")

    def __init__(self, rate: float, reserve_share: float):
        self.rate = float(rate)
        self.tokens = self.rate
        self._ts = None
        reserve = self.rate * min(max(reserve_share, 0.0), 1.0)
        follow = (reserve, (self.rate + reserve) / 2)
        # per lane: (floor of exact segments, floor of predicted ones)
        self._floors = ((0.0, 0.0), follow, follow)

    def refill(self, ts: float) -> None:
        """Tokens earned since the last packet time seen (a clock that steps back earns nothing)."""
        if self._ts is not None and ts > self._ts:
            self.tokens = min(self.rate, self.tokens + (ts - self._ts) * self.rate)
        if self._ts is None or ts > self._ts:
            self._ts = ts

    def room(self, lane: int, exact: int) -> int:
        """-1 when ``exact`` frames do not fit above ``lane``'s floor; else the predicted frames that may follow."""
        exact_floor, guess_floor = self._floors[lane]
        if int(self.tokens - exact_floor) < exact:
            return -1
        return max(0, int(self.tokens - guess_floor) - exact)

    def take(self, n: int) -> None:
        self.tokens -= n
