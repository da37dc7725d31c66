"""One direction of one TCP stream: order, overlaps, gaps, depth.

Theory of operation
-------------------
A ``Stream`` turns the segments one endpoint sent (in capture order, with
retransmissions, reordering and holes) into the byte sequence the receiving
endpoint's application read.  Positions are *stream offsets* (Python ints that
never wrap): offset 0 is the first data byte after the SYN.  Sequence numbers
are mapped to offsets relative to ``nxt`` (the sequence number of the next
in-order byte, at offset ``off``) with signed 32-bit arithmetic, so
wraparound at 2**32 is invisible to everything else.

In-order data is appended to ``buf`` at once (the fast path: one comparison,
one bytearray extend, one tuple append).  Bytes are *tentative* until the
receiver ACKs them (``final`` is the settled offset): until then a later
segment overlapping them is resolved by the overlap policy exactly as Suricata
does in IDS mode (its list segments stay open until ACKed), and ``rewrites``
counts bytes of ``buf`` replaced that way.  When the peer is not visible
(one-sided capture), when the policy can never prefer new data (first, vista)
or beyond ``depth``, bytes settle at once.

Out-of-order data waits in ``_ooo`` (sorted, non-overlapping chunks) and
moves into ``buf`` when the hole before it fills.  A hole is declared a gap
and skipped (``missed_bytes`` grows, ``epoch`` increments, ``buf`` restarts
after the gap) when the receiver ACKs past it (the data was sent, we lost it);
when the receiver is not visible (one-sided capture), after enough data
waited behind it (``gap-wait-bytes``/``-segments``); when a per-stream or
global buffer limit is hit; or when the session ends.

What others read (the contract): ``buf`` (retained in-order bytes),
``buf_base`` (stream offset of ``buf[0]``), ``end`` (= buf_base + len(buf)),
``final`` (bytes before it are settled: ACKed, or final for another reason;
Suricata inspects raw stream data only up to here), ``epoch`` (bumped when
continuity breaks at a gap), ``missed_bytes``, ``depth_reached``,
``rewrites`` (tentative bytes later replaced by the overlap policy),
``trim(keep_from)`` (detect is done with older bytes; tentative ones stay),
``observer``.  The flow table drives ``add``, ``ack``, ``flush`` (session end),
``detach`` and ``release`` (memory pressure).  Memory: ``buf`` holds at most
``stream.reassembly.depth`` bytes; out-of-order data is bounded per stream
and, with the retained bytes, by the global ``stream.reassembly.memcap``.

Observers (e.g. ``streamdump``) see every settled byte exactly once, in order,
plus each gap, through ``observer.data(stream, offset, bytes)``,
``observer.gap(stream, offset, length)`` and ``observer.end(stream)`` (the
session ended).  An observer with ``wants_data = False`` (e.g. one that only
cares about gaps) gets no ``data`` calls, so no bytes are copied for it; with
no observer the cost is one test per settle.
"""

from __future__ import annotations

import cython

from mirrorwatch.core.reassembly.context import (
    ACK_AHEAD_MAX,
    HALF,
    M32,
    ReassemblyContext,
)
from mirrorwatch.core.reassembly.overlap import OutOfOrder
from mirrorwatch.core.reassembly.policy import FIRST, VISTA

class Stream(OutOfOrder):
    """One direction of a TCP session, reassembled (see the module docstring)."""

    __slots__ = (
        "buf", "buf_base", "end", "epoch", "missed_bytes", "depth_reached", "_observer", "_obs_data",
        "nxt", "off", "final", "acked_hi", "fin_off", "settle_now", "peer_visible", "rewrites", "gaps",
        "_bounds", "_ooo", "_ooo_bytes", "_ctx", "_depth", "_policy", "_unacked_max", "_unacked_segs",
        "closed_out", "max_regions",
    )

    def __init__(self, ctx: ReassemblyContext, seq: int, settle_now: bool = False, policy: int | None = None):
        self.buf = bytearray()
        self.buf_base = 0
        self.end = 0
        self.epoch = 0
        self.missed_bytes = 0
        self.depth_reached = False
        self._observer = None
        self._obs_data = None  # observer.data, or None when there is no observer or it wants none
        self.nxt = seq & M32  # sequence number of offset ``off``
        self.off = 0  # next in-order offset (== end unless depth was reached)
        self.final = 0  # bytes before this offset are settled
        self.acked_hi = 0  # highest offset the receiver acknowledged beyond our in-order data
        self.fin_off = None  # offset of the FIN, once seen
        self.closed_out = False  # flushed when the session closed (``flush``): its end was told
        self.max_regions = 1  # most regions Suricata's buffer would have had (``OutOfOrder._regions``)
        self._policy = ctx.policy if policy is None else policy  # the receiving host's (host-os-policy)
        self.settle_now = settle_now or self._policy == FIRST or self._policy == VISTA
        self.peer_visible = not settle_now  # the receiver's packets (ACKs) are seen
        self.rewrites = 0
        self.gaps = 0
        self._bounds: list = []  # (start, end) of open segments, sorted
        self._ooo: list | tuple = ()  # [start, bytearray] chunks past ``off``, sorted, disjoint (a list once used)
        self._ooo_bytes = 0
        self._ctx = ctx
        self._depth = ctx.depth_limit
        self._unacked_max = ctx.unacked_max
        self._unacked_segs = ctx.unacked_segs

    def __repr__(self) -> str:
        return (f"<Stream nxt={self.nxt} off={self.off} buf=[{self.buf_base},{self.end}) final={self.final} "
                f"ooo={len(self._ooo)} epoch={self.epoch} missed={self.missed_bytes}>")

    # -- sequence mapping ---------------------------------------------------
    def offset_of(self, seq: int) -> int:
        """Stream offset of sequence number ``seq`` (nearest within +-2**31 of nxt)."""
        return self.off + ((seq - self.nxt + HALF) & M32) - HALF

    # -- the public operations ------------------------------------------------
    def add(self, seq: int, data, fin: bool = False) -> None:
        """A segment the sender sent: ``data`` starts at sequence number ``seq``."""
        if seq == self.nxt and not fin and not self._ooo:
            n = len(data)
            if not n:
                return
            s = self.off
            e = s + n
            if e > self._depth:  # crosses or is beyond the depth
                self._deliver(data)
                return
            # the fast path: in order, below depth
            self.off = self.end = e
            self.nxt = (seq + n) & M32
            self.buf += data
            ctx = self._ctx
            ctx.buf_bytes += n
            if ctx.buf_bytes > ctx.buf_room and ctx.reclaim is not None:
                ctx.reclaim()
            if self.settle_now:
                if self._obs_data is None and len(self._bounds) < 32:
                    self.final = e
                else:
                    self._settle(e)
            else:
                bounds = self._bounds
                bounds.append((s, e))
                if e - self.final > self._unacked_max or len(bounds) > self._unacked_segs:
                    self._settle_old()  # the receiver's ACKs are not seen (or tiny segments)
            return
        self._add_slow(seq, data, fin)

    def ack(self, ack_seq: int) -> None:
        """The receiver acknowledged everything before ``ack_seq``."""
        off = self.off
        a = off + ((ack_seq - self.nxt + HALF) & M32) - HALF
        if a <= self.final or a > off + ACK_AHEAD_MAX:
            return
        if a <= self.end and self._obs_data is None and len(self._bounds) < 32:
            self.final = a  # the common case: nobody to tell, nothing to prune
            if a == self.end and not self._ooo and self._bounds:
                self._bounds.clear()  # everything is settled: no segment is open to the policy
            return
        if a <= off:
            self._settle(a if a < self.end else self.end)
            if self.depth_reached:
                self.final = self.off
            return
        if a > self.acked_hi:  # only an ACK beyond our data says something about losses
            self.acked_hi = a
        self._settle(self.end)
        if self.depth_reached:
            self.final = self.off
        if self._ooo:
            self._ack_gap()

    def trim(self, keep_from: int) -> None:
        """Detect no longer needs bytes before ``keep_from``; tentative bytes are kept."""
        keep = keep_from if keep_from < self.final else self.final
        if keep > self.end:
            keep = self.end
        if keep > self.buf_base:
            del self.buf[: keep - self.buf_base]
            self._ctx.buf_bytes -= keep - self.buf_base
            self.buf_base = keep

    def release(self) -> int:
        """Memory pressure: settle everything and drop every buffered in-order byte; returns bytes freed."""
        self._settle(self.end)
        self._bounds.clear()
        n = len(self.buf)
        self.trim(self.end)
        return n

    def flush(self) -> None:
        """The session closed or ended: skip every hole, deliver every byte held, settle
        everything, tell the observer the end.  Once only: a later flush does nothing."""
        if self.closed_out:
            return
        self.closed_out = True
        while self._ooo:
            self._skip_gap(self._ooo[0][0], "")
        limit = self.fin_off
        if limit is None:
            # An ACK one past our data most likely acknowledged a FIN we did not see.
            limit = self.acked_hi if self.acked_hi > self.off + 1 else self.off
        if limit > self.off:
            self._skip_gap(limit, "")
        self._settle(self.end)
        self.final = self.off
        self._bounds.clear()
        if self._observer is not None:
            self._observer.end(self)

    def detach(self) -> None:
        """Take the stream out of the global accounting (its flow left the table)."""
        self._ctx.buf_bytes -= len(self.buf)
        if self._ooo:
            self._ctx.ooo_bytes -= self._ooo_bytes
            self._ctx.buf_room += self._ooo_bytes
            self._ooo_bytes = 0
            self._ooo.clear()
            self._ctx.ooo_streams.pop(self, None)
        # whatever still touches the stream (detect trimming after the flow ended) counts elsewhere
        self._ctx = self._ctx.orphans()

    @property
    def observer(self):
        """Who is told about settled bytes, gaps and the end (see the module docstring)."""
        return self._observer

    @observer.setter
    def observer(self, obs) -> None:
        self._observer = obs
        self._obs_data = obs.data if obs is not None and getattr(obs, "wants_data", True) else None

    def peer_seen(self) -> None:
        """The receiver is visible: bytes now stay open to overlap policies until it ACKs them,
        and holes wait for its ACKs (or the out-of-order limits) instead of ``gap-wait``."""
        self.peer_visible = True
        self.settle_now = self._policy == FIRST or self._policy == VISTA

    @property
    def acked(self) -> int:
        """Offset up to which bytes are settled (ACKed, or final for another reason)."""
        return self.final

    # -- in-order delivery ----------------------------------------------------
    def _deliver(self, data) -> None:
        """Append in-order bytes at ``off`` (the caller recorded their bounds)."""
        n = len(data)
        s = self.off
        self.off = s + n
        self.nxt = (self.nxt + n) & M32
        if not self.depth_reached:
            if self.off <= self._depth:
                self.buf += data
                self.end = self.off
                ctx = self._ctx
                ctx.buf_bytes += n
                if ctx.buf_bytes > ctx.buf_room and ctx.reclaim is not None:
                    ctx.reclaim()
                if self.settle_now:
                    self._settle(self.off)
                elif self.off - self.final > self._unacked_max or len(self._bounds) > self._unacked_segs:
                    self._settle_old()
                return
            k = self._depth - s
            if k > 0:
                self.buf += data[:k]
                self.end = s + k
                self._ctx.buf_bytes += k
            self.depth_reached = True
            self._ctx.stats["depth_reached"] += 1
            self._settle(self.end)
            self._bounds.clear()
            data = data[k:] if k > 0 else data
            s = self.end if k > 0 else s
        if self._obs_data is not None:
            self._obs_data(self, s, bytes(data))
        self.final = self.off

    def _settle(self, upto: int) -> None:
        """Bytes of ``buf`` before ``upto`` become final: observers get them, bounds close."""
        f = self.final
        if upto <= f:
            return
        if self._obs_data is not None:
            start = f - self.buf_base  # >= 0: trim keeps what is not final yet
            stop = max(min(upto - self.buf_base, len(self.buf)), start)
            p = self.buf
            # compiled: one copy straight out of the buffer (no bytearray slice in between)
            self._obs_data(self, f, p[start:stop] if cython.compiled else bytes(p[start:stop]))
        self.final = upto
        if len(self._bounds) >= 32:  # closed bounds are harmless (ignored by _winning): drop them in batches
            self._prune_bounds()

    def _settle_old(self) -> None:
        """Too much is open to the policy (bytes or segments): settle the older half."""
        upto = self.end - self._unacked_max // 2
        bounds = self._bounds
        if len(bounds) > self._unacked_segs:
            b = bounds[len(bounds) - self._unacked_segs // 2][0]
            if b > upto:
                upto = b
        self._settle(upto if upto < self.end else self.end)
        f = self.final
        self._bounds = [x for x in bounds if x[1] > f]
        if len(self._bounds) > self._unacked_segs // 2:  # overlapping bounds reach past it: settle all
            self._settle(self.end)
            f = self.final
            self._bounds = [x for x in self._bounds if x[1] > f]

    def _prune_bounds(self) -> None:
        bounds = self._bounds
        upto = self.final
        k = 0
        n = len(bounds)
        while k < n and bounds[k][1] <= upto:
            k += 1
        if k:
            del bounds[:k]
