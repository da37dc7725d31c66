"""The tables the per-packet path reads, in one typed record the Detector owns (``Detector.tables``).

The Detector is a plain class of mixins: in it every ``self.x`` is a dictionary lookup and
every ``self.m()`` a generic call.  The per-packet steps (``Detector.inspect_unguarded``,
``stream.stream_chunk``, ``header_table``) read this record instead, whose fields are C
fields once compiled.  It is made once the detector is built and holds the very tables the
detector holds (nothing is copied), with the literal databases of packets split out by
transport class.
"""

from __future__ import annotations

from mirrorwatch.core.detect.plan import ADDED, TCP, UDP
from mirrorwatch.core.detect.state import HeaderTable

# header tables kept (one per protocol and ports some header-decided rule names); past it they
# are made again
HEADER_TABLES_MAX = 4096


class PacketTables:
    """What ``Detector.inspect_unguarded`` and ``stream.stream_chunk`` read per packet."""

    __slots__ = ("c", "blk_tcp", "blk_added", "blk_udp", "blk_other", "added_differs", "iponly", "ipo_src",
                 "ipo_dst", "has_stream", "has_tx", "inline", "chunk", "lookback", "stream_scan", "stream_gate",
                 "stream_rules", "stream_nompm", "static", "dports", "sports")

    def __init__(self, det) -> None:
        self.c = det.c  # the detector's counters
        block = det.block  # per transport class, per direction: (scanner, rules per literal, port gate) or None
        self.blk_tcp, self.blk_added, self.blk_udp, self.blk_other = block[TCP], block[ADDED], block[UDP], block[0]
        self.added_differs = det._added_differs
        self.iponly, self.ipo_src, self.ipo_dst = det.iponly, det.ipo_src, det.ipo_dst
        self.has_stream, self.has_tx, self.inline = det.has_stream, det.has_tx, det.inline
        self.chunk, self.lookback = det.chunk, det.lookback
        self.stream_scan, self.stream_gate = det.stream_scan, det.stream_gate
        self.stream_rules, self.stream_nompm = det.stream_rules, det.stream_nompm
        self.static: dict = {}  # (proto, dport, sport) -> its HeaderTable (``header_table``)
        self.dports, self.sports = det._dports, det._sports


def header_table(t: PacketTables, proto: int, dport: int, sport: int) -> HeaderTable:
    """The shared header value -> candidates table of packets with this protocol and ports
    (ports no header-decided rule names share one: ephemeral ports do not grow the tables)."""
    key = (proto, dport if dport in t.dports else -1, sport if sport in t.sports else -1)
    table = t.static.get(key)
    if table is None:
        if len(t.static) >= HEADER_TABLES_MAX:
            t.static.clear()
        table = t.static[key] = HeaderTable()
        table.key = key
    return table
