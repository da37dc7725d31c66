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

import copy
from bisect import bisect_left, bisect_right
from collections import OrderedDict

M32 = 0xFFFFFFFF
HALF = 0x80000000
# An ACK further ahead than this (the largest scaled TCP window) acknowledges nothing we
# could have missed: it is bogus or belongs to another session, and is ignored.
ACK_AHEAD_MAX = 1 << 30

# Overlap policies (settings.OVERLAP_POLICIES); which one prefers the new
# segment's bytes over a list segment it overlaps is decided by ``use_new``.
FIRST, LAST, BSD, LINUX, OLD_LINUX, WINDOWS, SOLARIS, VISTA = range(8)
POLICY_CODES = {
    "first": FIRST, "last": LAST, "bsd": BSD, "linux": LINUX, "old-linux": OLD_LINUX,
    "windows": WINDOWS, "solaris": SOLARIS, "vista": VISTA,
}
_NEW_IF_STARTS_BEFORE = frozenset((BSD, WINDOWS, OLD_LINUX, LINUX))


def use_new(policy: int, s: int, e: int, ls: int, le: int) -> bool:
    """Does new segment [s, e) win over the overlapping list segment [ls, le)?

    Suricata's DoHandleDataOverlap (stream-tcp-list.c), IDS mode, which
    implements Snort stream5's target-based policies: 'last' always takes the
    new data, 'first' and 'vista' never do; bsd/windows take it when the new
    segment starts before the old one; linux also when it starts at the same
    place and ends beyond; old-linux and solaris when it starts at the same
    place and ends at or beyond; solaris also when it starts before and
    covers the old one to its end, or starts after and ends beyond it.
    """
    if policy == LAST:
        return True
    if s == ls:
        if e < le:
            return False
        if e > le and policy == LINUX:
            return True
        return policy == OLD_LINUX or policy == SOLARIS
    if s < ls:
        if e >= le and policy == SOLARIS:
            return True
        return policy in _NEW_IF_STARTS_BEFORE
    return e > le and policy == SOLARIS


class ReassemblyContext:
    """Settings and shared accounting for all streams of one FlowTable (global memcap)."""

    __slots__ = (
        "policy", "depth", "max_ooo_bytes", "max_ooo_segs", "gap_wait_bytes", "gap_wait_segs",
        "memcap", "unacked_max", "unacked_segs", "ooo_bytes", "buf_bytes", "buf_room", "ooo_streams", "stats", "reclaim",
        "_orphans", "settles", "depth_limit",
    )

    def __init__(self, settings):
        self.policy = POLICY_CODES[settings["stream.reassembly.policy"]]
        self.depth = settings["stream.reassembly.depth"]
        # per-stream defaults computed once here, not at every stream's creation
        self.settles = self.policy in (FIRST, VISTA)  # the policy never keeps bytes open to overlaps
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
             "ooo_limit_skips", "memcap_skips", "memcap_released_bytes", "depth_reached"), 0)

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


class Stream:
    """One direction of a TCP session, reassembled (see the module docstring)."""

    __slots__ = (
        "buf", "buf_base", "end", "epoch", "missed_bytes", "depth_reached", "_observer", "_obs_data",
        "nxt", "off", "final", "acked_hi", "fin_off", "settle_now", "peer_visible", "rewrites", "gaps",
        "_bounds", "_ooo", "_ooo_bytes", "_ctx", "_depth", "_policy", "_unacked_max", "_unacked_segs",
    )

    def __init__(self, ctx: ReassemblyContext, seq: int, settle_now: bool = False):
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
        self._policy = ctx.policy
        self.settle_now = settle_now or ctx.settles
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
        """The session ended: skip every hole, deliver every byte held, settle everything."""
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
            b = self.buf_base
            self._obs_data(self, f, bytes(self.buf[f - b: upto - b]))
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

    # -- out of order, overlaps ----------------------------------------------
    def _add_slow(self, seq: int, data, fin: bool) -> None:
        ctx = self._ctx
        st = ctx.stats
        s = self.off + ((seq - self.nxt + HALF) & M32) - HALF
        n = len(data)
        e = s + n
        if fin and (self.fin_off is None or e > self.fin_off):
            self.fin_off = e
        if not n:
            return
        st["slow_segments"] += 1
        if e <= self.final:
            st["retransmitted_bytes"] += n
            return
        s0 = s
        if s < self.final:
            st["retransmitted_bytes"] += self.final - s
            data = memoryview(data)[self.final - s:]
            s = self.final
        # Which parts of [s, e) take the new bytes, against every open segment it overlaps.
        win = self._winning(s0, e, s)
        if s < self.off:
            st["overlaps"] += 1
            self._overwrite_inorder(s, e if e < self.off else self.off, data, s, win)
        if e > self.off:
            a = s if s > self.off else self.off
            self._insert_ooo(a, e, data, s, win)
        if not self.depth_reached:
            b = (s0, e)
            bounds = self._bounds
            i = bisect_left(bounds, b)
            if i == len(bounds) or bounds[i] != b:
                bounds.insert(i, b)
            if len(bounds) > self._unacked_segs + ctx.max_ooo_segs:  # a flood of small overlaps
                while self._ooo:
                    self._skip_gap(self._ooo[0][0], "ooo_limit_skips")
                self._settle_old()
        if self._ooo:
            self._drain()
        if self._ooo:
            self._check_limits()

    def _winning(self, s0: int, e: int, lo: int) -> list:
        """Sorted disjoint [x, y) parts of [lo, e) where the new segment [s0, e) wins."""
        pol = self._policy
        lose: list = []
        bounds = self._bounds
        if bounds and pol != LAST:
            i = bisect_right(bounds, (e, -1))
            # bounds are sorted by start; walk left while they might reach lo
            j = i - 1
            while j >= 0:
                ls, le = bounds[j]
                if le > lo and ls < e and not use_new(pol, s0, e, ls, le):
                    lose.append((ls if ls > lo else lo, le if le < e else e))
                j -= 1
        if pol != LAST and self._ooo:
            # beyond depth no bounds are kept: data already held is old data
            if self.depth_reached:
                for cs, cd in self._ooo:
                    ce = cs + len(cd)
                    if ce > lo and cs < e:
                        lose.append((cs if cs > lo else lo, ce if ce < e else e))
        if not lose:
            return [(lo, e)]
        lose.sort()
        out = []
        pos = lo
        for x, y in lose:
            if x > pos:
                out.append((pos, x))
            if y > pos:
                pos = y
        if pos < e:
            out.append((pos, e))
        return out

    def _overwrite_inorder(self, a: int, b: int, data, s: int, win: list) -> None:
        """New bytes that win over tentative in-order bytes replace them in ``buf``."""
        if self.settle_now or self.depth_reached:
            return
        base = self.buf_base
        buf = self.buf
        for x, y in win:
            if x < a:
                x = a
            if y > b:
                y = b
            if x >= y or x < base:
                continue
            new = data[x - s: y - s]
            if buf[x - base: y - base] != new:
                diff = sum(1 for p, q in zip(buf[x - base: y - base], new) if p != q)
                buf[x - base: y - base] = new
                self.rewrites += diff
                self._ctx.stats["rewritten_bytes"] += diff
                self._ctx.stats["overlap_diff"] += 1

    def _insert_ooo(self, a: int, e: int, data, s: int, win: list) -> None:
        """Place [a, e) of the segment (starting at offset s) among the out-of-order chunks."""
        ctx = self._ctx
        chunks = self._ooo
        if not chunks:
            ctx.ooo_streams[self] = None
            if type(chunks) is tuple:
                chunks = self._ooo = []
        i = bisect_right(chunks, a, key=_chunk_start) - 1
        if i < 0 or chunks[i][0] + len(chunks[i][1]) <= a:
            i += 1
        pos = a
        added = 0
        mv = memoryview(data)
        while pos < e:
            if i < len(chunks) and chunks[i][0] <= pos:
                cs, cd = chunks[i]
                ce = cs + len(cd)
                oe = e if e < ce else ce
                ctx.stats["overlaps"] += 1
                for x, y in win:
                    if x < pos:
                        x = pos
                    if y > oe:
                        y = oe
                    if x < y:
                        new = mv[x - s: y - s]
                        if cd[x - cs: y - cs] != new:
                            cd[x - cs: y - cs] = new
                            ctx.stats["overlap_diff"] += 1
                pos = oe
                i += 1
            else:
                stop = chunks[i][0] if i < len(chunks) else e
                if stop > e:
                    stop = e
                chunks.insert(i, [pos, bytearray(mv[pos - s: stop - s])])
                added += stop - pos
                pos = stop
                i += 1
        if added:
            ctx.stats["ooo_segments"] += 1
            self._ooo_bytes += added
            ctx.ooo_bytes += added
            ctx.buf_room -= added
        if not chunks:
            ctx.ooo_streams.pop(self, None)

    def _drain(self) -> None:
        """Move chunks that now start at or before ``off`` into the in-order buffer."""
        chunks = self._ooo
        ctx = self._ctx
        while chunks and chunks[0][0] <= self.off:
            cs, cd = chunks.pop(0)
            self._ooo_bytes -= len(cd)
            ctx.ooo_bytes -= len(cd)
            ctx.buf_room += len(cd)
            ce = cs + len(cd)
            if ce > self.off:
                self._deliver(memoryview(cd)[self.off - cs:] if cs < self.off else cd)
        if not chunks:
            ctx.ooo_streams.pop(self, None)

    def _ack_gap(self) -> None:
        """The receiver ACKed past the hole before our first held chunk: that data is lost."""
        first = self._ooo[0][0]
        to = first if first < self.acked_hi else self.acked_hi
        if to > self.off:
            self._skip_gap(to, "ack_gap_skips")

    def _check_limits(self) -> None:
        ctx = self._ctx
        if self.acked_hi > self.off:
            self._ack_gap()
        if not self.peer_visible:  # no ACK will ever prove the loss: wait a bounded amount
            while self._ooo and (self._ooo_bytes >= ctx.gap_wait_bytes or len(self._ooo) >= ctx.gap_wait_segs):
                self._skip_gap(self._ooo[0][0], "gap_wait_skips")
        while self._ooo and (self._ooo_bytes > ctx.max_ooo_bytes or len(self._ooo) > ctx.max_ooo_segs):
            self._skip_gap(self._ooo[0][0], "ooo_limit_skips")
        while ctx.ooo_bytes > ctx.memcap and ctx.ooo_streams:
            oldest = next(iter(ctx.ooo_streams))
            oldest._skip_gap(oldest._ooo[0][0], "memcap_skips")

    def _skip_gap(self, to: int, why: str) -> None:
        """Declare [off, to) lost: count it, break continuity, go on after it."""
        g = to - self.off
        st = self._ctx.stats
        if g > 0:
            self._settle(self.end)
            if self._observer is not None:
                self._observer.gap(self, self.off, g)
            self.missed_bytes += g
            self.gaps += 1
            self.epoch += 1
            st["gaps"] += 1
            st["missed_bytes"] += g
            if why:
                st[why] += 1
            self.off = to
            self.nxt = (self.nxt + g) & M32
            self.final = to
            self._bounds = [x for x in self._bounds if x[1] > to]  # segments still held stay open
            if not self.depth_reached:
                self._ctx.buf_bytes -= len(self.buf)
                self.buf.clear()
                if to > self._depth:
                    self.depth_reached = True
                    st["depth_reached"] += 1
                    self.buf_base = self.end = self._depth
                else:
                    self.buf_base = self.end = to
        if self._ooo:
            self._drain()


def _chunk_start(c):
    return c[0]
