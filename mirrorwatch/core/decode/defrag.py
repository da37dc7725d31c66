"""IPv4 / IPv6 fragment reassembly, bounded in fragments, bytes and time.

The decoder hands every fragment here with a key that names its datagram
(addresses, IP id, protocol, VLANs, enclosing tunnel).  A fragment that does not
complete its datagram is *held* (the decoder returns None and counts it as
``defrag.fragments_held``, not as an error).  The fragment that completes it
gets back the unfragmentable header it should carry and the rebuilt payload;
the decoder then decodes that datagram as if it had arrived whole.

Overlap policy: **first wins** — bytes already received are never replaced by
a later fragment that overlaps them (Suricata's "first" policy; for the
overlaps seen in evasion captures this agrees with its default "bsd" policy on
the bytes of the first fragment).  Overlaps are counted (``defrag.overlaps``).

Bounds (settings): ``defrag.max-frags`` fragments and ``defrag.memcap`` bytes
held at once; beyond either, the oldest incomplete datagrams are evicted
(``defrag.evicted``).  ``defrag.timeout`` seconds after its first fragment an
incomplete datagram is dropped (``defrag.timeouts``), by ``expire(now)`` or
when a late fragment for it arrives.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

IPV4_MAX = 65535


class _Datagram:
    """Fragments of one datagram so far, in arrival order."""

    __slots__ = ("first_ts", "frags", "nbytes", "total", "header", "l2", "cs", "ce")

    def __init__(self, ts: float, l2):
        self.first_ts = ts
        self.frags: list[tuple[int, bytes]] = []
        # byte ranges received so far, merged: sorted disjoint starts / ends.  Kept
        # incrementally so a datagram cut into thousands of fragments costs
        # O(log n) per fragment, not a sort of all of them each time.
        self.cs: list[int] = []
        self.ce: list[int] = []
        self.nbytes = 0
        self.total = -1  # payload length, known once the last fragment arrived
        self.header = None  # unfragmentable part from the offset-0 fragment
        self.l2 = l2  # link-layer fields; those of the offset-0 fragment once it arrived


class Defragmenter:
    """Reassembly table keyed by datagram identity; see the module docstring."""

    def __init__(self, settings):
        self.max_frags = settings["defrag.max-frags"]
        self.memcap = settings["defrag.memcap"]
        self.timeout = settings["defrag.timeout"]
        self.table: dict[tuple, _Datagram] = {}
        self.frags_held = 0
        self.bytes_held = 0
        self.c = {
            "defrag.fragments": 0,
            "defrag.fragments_held": 0,
            "defrag.reassembled": 0,
            "defrag.overlaps": 0,
            "defrag.evicted": 0,
            "defrag.timeouts": 0,
        }

    def add(self, key, ts: float, offset: int, data: bytes, more: bool, header: bytes | None, l2, max_payload: int):
        """Add one fragment.

        ``offset`` in bytes into the payload, ``more`` = more-fragments flag,
        ``header`` = the unfragmentable part when ``offset`` is 0 else None,
        ``l2`` = opaque link-layer info kept from the first fragment,
        ``max_payload`` = largest payload the datagram may have.
        Returns ``(header, payload, l2)`` when the datagram is complete, the
        string reason when the fragment is invalid (caller counts it as an
        error), or None when the fragment is held.
        """
        c = self.c
        c["defrag.fragments"] += 1
        n = len(data)
        end = offset + n
        if n == 0:
            return "frag_empty"
        if end > max_payload:
            return "frag_too_large"
        if more and n & 7:
            return "frag_len_invalid"
        d = self.table.get(key)
        if d is not None and ts - d.first_ts > self.timeout:
            self._drop(key, d)
            c["defrag.timeouts"] += 1
            d = None
        if d is None:
            d = _Datagram(ts, l2)
        else:
            del self.table[key]  # re-inserted below after the bounds check
        self._make_room(1, n)
        if self.frags_held + 1 > self.max_frags or self.bytes_held + n > self.memcap:
            self._drop(key, d)  # this datagram alone exceeds the bounds
            c["defrag.evicted"] += 1
            return "frag_memcap"
        self.table[key] = d
        if not more:
            if d.total < 0:
                d.total = end
            elif d.total != end:
                c["defrag.overlaps"] += 1
        if offset == 0 and d.header is None:
            d.header = header
            d.l2 = l2  # link-layer fields and headers of the offset-0 fragment, as Suricata keeps
        if self._cover(d, offset, end):
            c["defrag.overlaps"] += 1
        d.frags.append((offset, data))
        d.nbytes += n
        self.frags_held += 1
        self.bytes_held += n
        if d.total >= 0 and d.header is not None and d.cs[0] == 0 and d.ce[0] >= d.total:
            self._drop(key, d)
            c["defrag.reassembled"] += 1
            return d.header, self._assemble(d), d.l2
        c["defrag.fragments_held"] += 1
        return None

    @staticmethod
    def _cover(d: _Datagram, start: int, end: int) -> bool:
        """Merge [start, end) into the received ranges; True when it overlapped bytes already there."""
        cs, ce = d.cs, d.ce
        i = bisect_left(ce, start)  # first range ending at or after start (touching counts)
        j = bisect_right(cs, end)  # ranges starting at or before end
        overlap = False
        for k in range(i, j):
            if cs[k] < end and start < ce[k]:
                overlap = True
                break
        if i < j:
            start = min(start, cs[i])
            end = max(end, ce[j - 1])
        cs[i:j] = [start]
        ce[i:j] = [end]
        return overlap

    @staticmethod
    def _assemble(d: _Datagram) -> bytes:
        """First wins: write fragments newest-first so the earliest copy of a byte lands last."""
        buf = bytearray(d.total)
        total = d.total
        for o, b in reversed(d.frags):
            if o >= total:
                continue
            buf[o:o + len(b)] = b[: total - o]
        return bytes(buf)

    def _drop(self, key, d: _Datagram) -> None:
        self.table.pop(key, None)
        self.frags_held -= len(d.frags)
        self.bytes_held -= d.nbytes

    def _make_room(self, frags: int, nbytes: int) -> None:
        table = self.table
        while table and (self.frags_held + frags > self.max_frags or self.bytes_held + nbytes > self.memcap):
            key = next(iter(table))
            self._drop(key, table[key])
            self.c["defrag.evicted"] += 1

    def expire(self, now: float) -> int:
        """Drop datagrams whose first fragment is older than the timeout; returns how many."""
        if not self.table:
            return 0
        limit = now - self.timeout
        old = [k for k, d in self.table.items() if d.first_ts < limit]
        for k in old:
            self._drop(k, self.table[k])
        self.c["defrag.timeouts"] += len(old)
        return len(old)

    def counters(self) -> dict:
        c = dict(self.c)
        c["defrag.datagrams_pending"] = len(self.table)
        c["defrag.bytes_held"] = self.bytes_held
        return c
