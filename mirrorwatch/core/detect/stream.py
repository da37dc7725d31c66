"""Stream inspection: which reassembled bytes are inspected now, and through which literals.

Stream data is inspected the way Suricata does in IDS mode (see the theory of
operation in ``core.detect``): settled bytes in chunks, at once when closing or
at depth, and in a window reaching back in inline mode.  Each direction's new
bytes go once through its hyperscan stream (``hsdb.LiteralStream``).
"""

from __future__ import annotations

from mirrorwatch.core.detect.hsdb import LiteralStream
from mirrorwatch.core.detect.state import FlowDet, GapKeeper
from mirrorwatch.core.detect.tables import PacketTables
from mirrorwatch.core.flows.flow import Flow
from mirrorwatch.core.reassembly.stream import Stream

SYN = 0x02
# Suricata inspects raw stream data at once when ssn->state > TCP_TIME_WAIT
CLOSING = frozenset(("last_ack", "close_wait", "closing", "closed"))


class StreamMixin:
    """The Detector's flow-table hooks for stream data; the per-packet step is ``stream_chunk``
    (see ``core.detect.Detector``)."""

    def on_swap(self, flow) -> None:
        """FlowTable hook: the session's roles swapped; detect's per-direction state follows."""
        fd = flow.det
        if fd is None:
            return
        fd.swap()
        for d, st in enumerate(flow.streams):  # the streams moved too: their gap keepers follow
            obs = st.observer if st is not None else None
            if type(obs) is GapKeeper and obs.fd is fd:
                obs.d = d

    def on_new_stream(self, flow, d: int, stream) -> None:
        """FlowTable hook: keep the bytes a gap would discard before detect saw them."""
        fd = flow.det
        if fd is None:  # direction d's packet brought the data: the ports of its packets
            fd = self.attach(flow, FlowDet(), d, flow.sport if d == 0 else flow.cport,
                             flow.cport if d == 0 else flow.sport, False)
        stream.observer = GapKeeper(fd, d, stream.observer)


def stream_chunk(t: PacketTables, fd: FlowDet, st: Stream, d: int, flow: Flow, cands: set, at_end: bool):
    """Stream pieces (list of contiguous bytes) to inspect now for direction d, or None.

    Adds the rules whose literal occurs in them to the set ``cands``.
    Pieces are separated by gaps; each is matched on its own, as Suricata
    inspects each contiguous block of raw stream data.  The new bytes go
    through the direction's hyperscan stream (``hsdb.LiteralStream``) once;
    a piece is copied out of the stream buffer only when some rule will be
    verified on it.
    """
    held = fd.held[d] if fd.held is not None else None
    start = fd.prog[d]
    base = st.buf_base
    c = t.c
    inline = t.inline
    if start < base:
        if not held:
            c["stream_lost_bytes"] += base - start
        start = base
    if at_end or inline:
        end = st.end
    else:
        end = st.final if st.final < st.end else st.end
    n = end - start
    if n <= 0 and not held:
        return None
    if not (at_end or inline or held or n >= t.chunk[d] or st.depth_reached
            or flow.tcp_state in CLOSING):
        return None
    c["stream_scans"] += 1
    # the stream of direction d flows between the same ports as its packets
    if d == 0:
        dport, sport = flow.sport, flow.cport
    else:
        dport, sport = flow.cport, flow.sport
    scanner = t.stream_scan[d]  # the literals of rules that can match in direction d
    if scanner is not None:
        gate = t.stream_gate[d]
        if gate is not None and dport not in gate[0] and sport not in gate[1]:
            scanner = None
    if scanner is not None:
        lits = fd.lits
        if lits is None:
            lits = fd.lits = [None, None]
        ls = lits[d]
        if ls is None:
            ls = lits[d] = LiteralStream()
    pieces = []
    offs = fd.piece_offs = []
    lo = start  # where the new piece begins (the inline window reaches further back)
    first = start  # where everything inspected now begins, held pieces included
    if held:
        for off, p, _ in held:
            pieces.append(p)
            offs.append(off)
            if off < first:
                first = off
            if scanner is not None:
                c["stream_bytes"] += len(p)
                ls.feed(scanner, off, p)
        gaps = [0]
        gaps += [g for _, _, g in held]
        fd.gaps = gaps
        held.clear()
    else:
        fd.gaps = [0]
    back = 0
    if n > 0:
        fd.prog[d] = end
        if inline:
            # verify over a window reaching back (Suricata's inline window: a chunk
            # ending with the new bytes), so a match that started in earlier
            # segments is seen; only the new bytes are scanned
            back = max(t.lookback, t.chunk[d])
            w = min(start - t.lookback, end - back)
            lo = w if w > base else base
            if lo < first:
                first = lo
    if scanner is not None:
        if n > 0:
            c["stream_bytes"] += n
            with memoryview(st.buf) as mv:
                recent = ls.feed(scanner, start, mv[start - base:end - base])
        else:
            recent = ls.recent
        if recent:
            # literals whose last occurrence ends in what is inspected now; older ones
            # can lie in no later window either
            hit = [i for i, e in recent.items() if e > first]
            if len(hit) < len(recent):
                ls.recent = {i: recent[i] for i in hit}
            expand(hit, t.stream_rules[d], dport, sport, cands.update)
        if st.fin_off is not None and end >= st.fin_off:
            ls.close()  # the direction ended with its FIN: its hyperscan state can go now
    cands.update(t.stream_nompm)
    if n > 0:
        if cands:
            with memoryview(st.buf) as mv:  # one copy, not a bytearray slice and then bytes
                pieces.append(bytes(mv[lo - base:end - base]))
            offs.append(lo)
        keep = end - back
        if keep > st.buf_base:
            st.trim(keep)
    if pieces and fd.lead is not None and fd.lead[d]:
        fd.gaps[0] = fd.lead[d]
        fd.lead[d] = 0
    return pieces


def with_gaps(pieces: list, fd) -> bytes:
    """Stream alert payload: the inspected pieces, each gap before one shown with Suricata's marker."""
    gaps = fd.gaps if fd is not None else ()
    if len(pieces) == 1 and not (gaps and gaps[0]):
        return pieces[0]
    out = bytearray()
    for i, p in enumerate(pieces):
        gap = gaps[i] if i < len(gaps) else 0
        if gap or i:
            out += b"[%d bytes missing]" % gap
        out += p
    return bytes(out)


def data_added(flow, d: int, pkt) -> bool:
    """Suricata's PKT_STREAM_ADD: this TCP packet's data went into its direction's stream.

    The flows room adds data once the session left 'new' (or data on a SYN);
    past ``stream.reassembly.depth`` nothing is added, so those packets are
    inspected on their own again, as in Suricata.
    """
    st = flow.streams[d]
    if st is None or (flow.state == "new" and not pkt.flags & SYN):
        return False
    return not st.depth_reached or st.offset_of(pkt.seq) < st.end


def release(flow) -> None:
    """Nothing will inspect this session's stream bytes: let reassembly drop the settled ones."""
    for st in flow.streams:
        if st is not None and st.final > st.buf_base:
            st.trim(st.final)


def expand(ids, split, dport: int, sport: int, add) -> None:
    """Literal ids -> their rules (``groups.port_split``: any-port, by dst port, by src port)."""
    for i in ids:
        anys, dmap, smap = split[i]
        add(anys)
        if dmap is not None:
            add(dmap.get(dport, ()))
        if smap is not None:
            add(smap.get(sport, ()))
