"""The segments of one kill burst (sans-I/O): ``ForgedSegment`` values, every header decided here.

What to send
------------
A forged segment to endpoint E impersonates E's peer P.  Its sequence number
is E's next expected byte: P's ``next_seq`` (seq + payload + SYN + FIN of the
highest segment seen from P), falling back to E's own last ack field; its ack
number is P's next expected byte (E's ``next_seq``, falling back to P's last
ack).  MAC addresses and the whole VLAN stack are those of the last frame seen
from P to E (or those of E to P, swapped); TTL / hop limit is P's.  The IP ID
is random.  ``--kill-with rst`` sends RST+ACK, ``fin`` sends FIN+ACK, ``both``
sends FIN+ACK at S and RST+ACK at S+1 (the FIN consumes one sequence number).

Winning the race against a streaming peer
-----------------------------------------
A receiver takes an RST only when its sequence number is exactly its
RCV.NXT *when the RST arrives* (RFC 5961: one that is merely inside the
window earns a challenge ACK, which Linux sends at most once per 500 ms per
socket; one outside is dropped).  When P is streaming to E, P's segments
keep arriving at E while the sensor decides: every segment the mirror
copied before the RST left is ahead of the RST on the way to E, and so is
every segment P sent before then that the sensor has not processed yet.  The
first kind is what ``next_seq`` counts; the second kind is unknown, so one RST
at ``next_seq`` arrives behind.  The burst therefore carries, after the exact
segment, RST+ACK segments at the next boundaries P's segments will have, each
predicted one segment size further (P's latest data segment, ``Flow.seg_len``):
one of them is E's RCV.NXT when the burst lands, the others are harmless
(ahead of RCV.NXT: a rate-limited challenge ACK; beyond the window: dropped).
Predictions are made only when P's latest segment carried at least
``STREAM_SEGMENT`` bytes (a bulk sender fills its segments; a request or an
interactive exchange does not), only for RST (a FIN ahead of RCV.NXT would be
queued as out-of-order data), ``inject.rst-burst`` - 1 of them and never beyond
the receive window E advertised (``Flow.window_edge``; when E's SYN was not
seen its window scale is unknown, and only the burst size bounds them).  A
sensor further behind the stream than one burst covers sees the stream
outrun its last RST: the killer then sends a new burst from there with twice
as many predictions (up to ``MAX_PREDICTED``), so the reach grows with the
sensor's delay -- for a few bursts only: such chasing is bounded per session
(``inject.chase-bursts``) and never takes the frames that the first bursts of
new kills need (``core.kill_state``).

A live sensor knows more: how long ago the packet it answers was captured
(``Killer.clock``, the capture's clock; none in a replay).  A busy or
descheduled sensor is milliseconds behind, and E has received all that P
sent meanwhile; at P's rate (``segments_ahead``: its average so far, for
follow-ups its rate since the kill began, ``KillState.rate``) that is a number of
segments, and the predictions are centred there, spread on each side by
``inject.lag-spread`` of it plus the usual span, so the first burst lands
although the sensor lagged -- the exact segment still leads the burst.  E's
window, last seen before those segments, is taken to have moved on with
them (E read them: it is reading a stream).  A sensor more than
``inject.max-lag`` seconds behind sends the exact segments alone.
"""

from __future__ import annotations

import random
from collections import deque

from mirrorwatch.core.decode.packet import ACK, FIN, RST
from mirrorwatch.core.events import ForgedSegment
from mirrorwatch.core.reassembly.context import HALF, M32

MAX_PREDICTED = 255  # predicted segments in one burst at the most, however often the stream outran the last one
STREAM_SEGMENT = 536  # bytes: a peer whose latest segment carried this much is streaming (RFC 879's MSS)
MODE_FLAGS = {"rst": (RST | ACK,), "fin": (FIN | ACK,), "both": (FIN | ACK, RST | ACK)}
_WORKER_BITS = 16  # reseed(): the worker's number in the low bits of the new seed


def after(a: int, b: int) -> bool:
    """Sequence number ``a`` lies after ``b`` (modulo 2**32)."""
    return 0 < ((a - b) & M32) < HALF


def l2_toward(flow, toward_server: bool) -> tuple:
    """(src_mac, dst_mac, vlans) for a frame in that direction, as seen on this flow."""
    d = 0 if toward_server else 1
    l2 = flow.l2
    if l2[d]:
        return l2[d]
    if l2[1 - d]:
        src, dst, vlans = l2[1 - d]
        return dst, src, vlans
    return b"", b"", ()


class Forger:
    """Builds the segments of a burst for one ``--kill-with`` mode."""

    def __init__(self, mode: str, seed: int | None = None):
        self.flags = MODE_FLAGS[mode]
        self.predicts = mode != "fin"
        self._rand = random.Random(seed)

    def reseed(self, worker: int) -> None:
        """A forked copy of this forger (``--workers``): IP IDs of its own, not the ones its parent and its
        siblings would draw next; reproducible when the parent's seed was fixed."""
        self._rand.seed(self._rand.getrandbits(64) << _WORKER_BITS | worker)

    def segment(self, flow, toward_server: bool, seq: int, ack: int, flags: int, l2: tuple) -> ForgedSegment:
        """One segment impersonating the endpoint the other way (its addresses, ports and TTL)."""
        d = 0 if toward_server else 1
        if toward_server:
            src, dst, sport, dport = flow.client, flow.server, flow.cport, flow.sport
        else:
            src, dst, sport, dport = flow.server, flow.client, flow.sport, flow.cport
        ip_id = self._rand.getrandbits(16) if flow.ipv == 4 else 0
        return ForgedSegment(toward_server, flow.ipv, src, dst, sport, dport, seq, ack, flags, flow.ttl[d], ip_id,
                             *l2)

    def exact(self, flow, toward_server: bool, seq: int, ack: int, l2: tuple) -> list:
        """The segment(s) at the endpoint's RCV.NXT ``seq`` (two for --kill-with both)."""
        out = []
        for flags in self.flags:
            out.append(self.segment(flow, toward_server, seq, ack, flags, l2))
            if flags & FIN:
                seq = (seq + 1) & M32
        return out

    def boundaries(self, flow, toward_server: bool, seq: int, count: int, first: int = 1) -> list:
        """``count`` sequence numbers at which the impersonated sender's segments will end, the ``first``-th
        boundary after ``seq`` and those after it, within the receiver's window -- as it was, moved on by the
        ``first`` - 1 segments the receiver is taken to have read since (none when the sender is not streaming,
        or in ``fin`` mode)."""
        if not self.predicts:
            return []
        d = 0 if toward_server else 1
        stride = flow.seg_len[d]
        if stride < STREAM_SEGMENT:
            return []
        # a receiver whose SYN was not seen may scale its window: then only the burst size bounds it
        edge = flow.window_edge(d) if flow.wscale[1 - d] is not None else None
        out = []
        seq = (seq + (first - 1) * stride) & M32
        if edge is not None:
            edge = (edge + (first - 1) * stride) & M32
        for _ in range(count):
            seq = (seq + stride) & M32
            if edge is not None and not after(edge, seq):
                break
            out.append(seq)
        return out

    def predicted(self, flow, toward_server: bool, seqs: list, ack: int, l2: tuple) -> list:
        """RST+ACK at each of ``seqs`` (``boundaries``)."""
        return [self.segment(flow, toward_server, seq, ack, RST | ACK, l2) for seq in seqs]

def segments_ahead(flow, d: int, lag: float, rate: float | None = None) -> int:
    """Segments the sender in direction ``d`` sends in ``lag`` seconds at ``rate`` bytes/s (None: its average
    so far, sequence progress over the session's packet time, or captured bytes when its ISN was not seen)."""
    stride, ns, isn = flow.seg_len[d], flow.next_seq[d], flow.isn[d]
    duration = flow.last_ts - flow.start
    if lag <= 0 or ns is None or stride < STREAM_SEGMENT:
        return 0
    if rate is None:
        if duration <= 0:
            return 0
        rate = ((ns - isn) & M32 if isn is not None else flow.bytes[d]) / duration
    return int(rate * lag / stride)


class SentFrames:
    """The last ``memory`` frames sent (``inject.own-frame-memory``), to tell them when they come back.

    The capture interface sees what is sent on it, and a SPAN of the
    destination port's tx mirrors it too.  A frame is recognised by
    (addresses, ports, seq, ack, flags, IP ID): what ``ForgedSegment.key``
    gives and a decoded packet carries.
    """

    def __init__(self, memory: int):
        self._order: deque = deque(maxlen=max(1, memory))
        self._count: dict = {}

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, pkt) -> bool:
        return (pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq, pkt.ack, pkt.flags,
                pkt.ip_id if pkt.ipv == 4 else 0) in self._count

    def add(self, seg: ForgedSegment) -> None:
        key, order, count = seg.key(), self._order, self._count
        if len(order) == order.maxlen:
            old = order[0]
            n = count.get(old, 0) - 1
            if n > 0:
                count[old] = n
            else:
                count.pop(old, None)
        order.append(key)
        count[key] = count.get(key, 0) + 1
