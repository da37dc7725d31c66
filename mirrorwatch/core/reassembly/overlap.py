"""Out-of-order segments, overlaps and gaps: the slow half of ``Stream`` (a mixin).

A segment that is not the next in-order bytes comes here (``_add_slow``):
the parts it wins over open segments under the stream's overlap policy
(``_winning``) replace tentative in-order bytes (``_overwrite_inorder``) or
are placed among the out-of-order chunks (``_insert_ooo``), which move in order
when the hole before them fills (``_drain``).  A hole is declared a gap and
skipped (``_skip_gap``) when the receiver ACKs past it, when a limit is hit
(``_check_limits``), or when the session ends; see ``stream.py``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from mirrorwatch.core.reassembly.context import HALF, M32
from mirrorwatch.core.reassembly.policy import LAST, use_new

# Suricata's STREAMING_BUFFER_REGION_GAP_DEFAULT: out-of-order data farther than this from every region of
# a stream's buffer opens a region of its own (not a setting in Suricata either)
REGION_GAP = 262144


class OutOfOrder:
    """The out-of-order and overlap methods of ``Stream`` (its slots are Stream's)."""

    __slots__ = ()

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
            self._regions()
        if not chunks:
            ctx.ooo_streams.pop(self, None)

    def _regions(self) -> None:
        """Suricata's StreamingBuffer regions, for the flow record's ``ts_max_regions``/``tc_max_regions``:
        the in-order data and the out-of-order chunks, one region where less than ``REGION_GAP`` apart
        (util-streaming-buffer.c RegionsIntersect); ``max_regions`` keeps the most there were."""
        n = 1
        reach = self.off + REGION_GAP
        for cs, cd in self._ooo:
            if cs > reach:
                n += 1
            ce = cs + len(cd) + REGION_GAP
            if ce > reach:
                reach = ce
        if n > self.max_regions:
            self.max_regions = n

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
        if ctx.ooo_bytes + ctx.buf_bytes > ctx.memcap:
            if ctx.reclaim is not None:
                ctx.reclaim()  # the flow table frees retained bytes first, then out-of-order ones
            else:
                ctx.shed_ooo(ctx.memcap)

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
