"""threshold / detection_filter bookkeeping, as Suricata's detect-engine-threshold.c.

``allow(th, rule_key, pkt, flow_state, ts)`` returns True when a matching rule
may raise its alert.  Counters live per (rule, tracked key): by_src, by_dst,
by_both (address pair), by_rule (one per rule) or by_flow (kept in the flow's
detect state so they die with the flow).  Windows run on packet time.
The table is bounded (``detect.threshold-entries``): beyond it, entries whose
window has passed are dropped, then the oldest ones.

A detection_filter with ``unique_on`` counts distinct ports; Suricata gives each
such entry a 65536-bit bitmap, and its stats show their memory
(``detect.thresholds.bitmap_memuse``, ``bitmap_alloc_fail``): counted the same
way here, per live entry (the table's, and a flow's by_flow ones until the flow
ends).  An entry never fails to get one here (the table evicts instead of
refusing), so ``bitmap_alloc_fail`` stays 0.
"""

from __future__ import annotations

DF_PORT_BITMAP_SIZE = 65536 // 8  # bytes of Suricata's distinct-port bitmap per unique_on entry


class _Entry:
    __slots__ = ("t1", "count", "next", "seen", "bitmap")

    def __init__(self, t1: float, bitmap: bool):
        self.t1 = t1
        self.count = 0
        self.next = 0
        self.seen = None  # unique_on: set of distinct port values in the window
        self.bitmap = bitmap  # a unique_on entry: Suricata's distinct-port bitmap is accounted for


class Thresholds:
    def __init__(self, max_entries: int) -> None:
        self.table: dict = {}
        self.max_entries = max_entries
        self.suppressed = 0
        self.bitmaps = 0  # live unique_on entries

    def _key(self, th, rule_key, pkt, fd):
        track = th.track
        if track == "by_flow" and fd is not None:
            if fd.thr is None:
                fd.thr = {}
            return fd.thr, rule_key
        if track == "by_src":
            k = pkt.src
        elif track == "by_dst":
            k = pkt.dst
        elif track == "by_both":
            k = (pkt.src, pkt.dst)
        elif track == "by_flow":  # a flowless packet: counted with the other flowless ones
            k = "noflow"
        else:  # by_rule
            k = None
        return self.table, (rule_key, th.type, k)

    def allow(self, th, rule_key, pkt, fd, ts: float) -> bool:
        """``fd``: the flow's detect state (holds by_flow counters), None for a flowless packet."""
        table, key = self._key(th, rule_key, pkt, fd)
        e = table.get(key)
        if e is None:
            if table is self.table and len(table) >= self.max_entries:
                self._evict(ts)
            bitmap = th.type == "detection_filter" and bool(getattr(th, "unique_on", None))
            e = table[key] = _Entry(ts, bitmap)
            self.bitmaps += bitmap
        ok = _step(th, e, pkt, ts)
        if not ok:
            self.suppressed += 1
        return ok

    def release(self, entries: dict) -> None:
        """A flow's by_flow entries die with it."""
        self.bitmaps -= sum(e.bitmap for e in entries.values())

    def counters(self) -> dict:
        return {"suppressed": self.suppressed, "thresholds.bitmap_memuse": self.bitmaps * DF_PORT_BITMAP_SIZE,
                "thresholds.bitmap_alloc_fail": 0}

    def _evict(self, ts: float) -> None:
        t = self.table
        stale = [k for k, e in t.items() if ts - e.t1 > 3600]
        for k in stale:
            self.bitmaps -= t.pop(k).bitmap
        while len(t) >= self.max_entries:
            self.bitmaps -= t.pop(next(iter(t))).bitmap


def _step(th, e: _Entry, pkt, ts: float) -> bool:
    typ, count, seconds = th.type, th.count, th.seconds
    if typ == "backoff":
        # alert on the count-th match, then every time the count reaches count * multiplier^n
        e.count += 1
        if e.next == 0:
            e.next = count
        if e.count == e.next:
            e.next *= max(2, int(getattr(th, "multiplier", 0) or 2))
            return True
        return False
    within = ts - e.t1 < seconds
    if typ == "detection_filter":
        unique = getattr(th, "unique_on", None)
        if not within:
            e.t1, e.count, e.seen = ts, 0, None
        if unique:
            if e.seen is None:
                e.seen = set()
            e.seen.add(pkt.sport if unique == "src_port" else pkt.dport)
            e.count = len(e.seen)
        else:
            e.count += 1
        return e.count > count
    if not within:
        e.t1, e.count = ts, 0
    e.count += 1
    if typ == "limit":
        return e.count <= count
    if typ == "threshold":
        if e.count >= count:
            e.count = 0
            return True
        return False
    if typ == "both":
        return e.count == count
    return True
