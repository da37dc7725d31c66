"""Settings and shared accounting of all the streams of one flow table: the global memcap.

Sequence arithmetic constants live here too, so every module of the room (and
the flows room) takes them from one place.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from mirrorwatch.core.reassembly.policy import POLICY_CODES

M32 = 0xFFFFFFFF
HALF = 0x80000000
# An ACK further ahead than this (the largest scaled TCP window) acknowledges nothing we
# could have missed: it is bogus or belongs to another session, and is ignored.
ACK_AHEAD_MAX = 1 << 30


class ReassemblyContext:
    """Settings and shared accounting for all streams of one FlowTable (global memcap)."""

    __slots__ = (
        "policy", "depth", "max_ooo_bytes", "max_ooo_segs", "gap_wait_bytes", "gap_wait_segs",
        "memcap", "unacked_max", "unacked_segs", "ooo_bytes", "buf_bytes", "buf_room", "ooo_streams", "stats", "reclaim",
        "_orphans", "depth_limit",
    )

    def __init__(self, settings):
        self.policy = POLICY_CODES[settings["stream.reassembly.policy"]]
        self.depth = settings["stream.reassembly.depth"]
        # per-stream defaults computed once here, not at every stream's creation
        self.depth_limit = self.depth or (1 << 62)
        self.max_ooo_bytes = settings["stream.reassembly.max-ooo-bytes"]
        self.max_ooo_segs = settings["stream.reassembly.max-ooo-segments"]
        self.gap_wait_bytes = settings["stream.reassembly.gap-wait-bytes"]
        self.gap_wait_segs = settings["stream.reassembly.gap-wait-segments"]
        self.memcap = settings["stream.reassembly.memcap"]
        self.unacked_max = settings["stream.reassembly.unacked-max"]
        self.unacked_segs = max(2, settings["stream.reassembly.unacked-max-segments"])
        self.ooo_bytes = 0  # out-of-order bytes held by all streams
        self.buf_bytes = 0  # in-order bytes retained in all streams' ``buf``
        self.buf_room = self.memcap  # memcap - ooo_bytes: buf_bytes beyond it call ``reclaim``
        # called when buf_bytes + ooo_bytes exceed the memcap (the flow table releases the
        # least recently active sessions' buffers); None: nobody to ask
        self.reclaim = None
        self.ooo_streams: OrderedDict = OrderedDict()  # streams holding ooo data, oldest first
        self._orphans = None  # the context detached streams count in (``orphans``)
        self.stats = dict.fromkeys(
            ("slow_segments", "ooo_segments", "retransmitted_bytes", "overlaps", "overlap_diff",
             "rewritten_bytes", "gaps", "missed_bytes", "gap_wait_skips", "ack_gap_skips",
             "ooo_limit_skips", "memcap_skips", "memcap_reclaims", "memcap_released_bytes", "depth_reached"), 0)

    def shed_ooo(self, target: int) -> None:
        """Out-of-order data while the streams hold more than ``target`` bytes: the streams that
        have held theirs longest skip their holes (``memcap_skips``) and give up the bytes that
        moves in order, once their observers saw them (``memcap_released_bytes``).  Bytes are
        freed here, not through ``reclaim``: one pass, however many streams it takes."""
        reclaim, self.reclaim = self.reclaim, None
        try:
            while self.ooo_bytes + self.buf_bytes > target and self.ooo_streams:
                s = next(iter(self.ooo_streams))
                s._skip_gap(s._ooo[0][0], "memcap_skips")
                self.stats["memcap_released_bytes"] += s.release()
        finally:
            self.reclaim = reclaim

    def orphans(self) -> "ReassemblyContext":
        """One context shared by every stream detached from this one: what still touches them
        (detect trimming after the flow ended) counts there, outside the global accounting."""
        o = self._orphans
        if o is None:
            o = self._orphans = copy.copy(self)
            o.buf_bytes = o.ooo_bytes = 0
            o.memcap = o.buf_room = 1 << 62
            o.reclaim = None
            o.ooo_streams = OrderedDict()
            o.stats = dict.fromkeys(self.stats, 0)
            o._orphans = o
        return o
