"""The TCP state machine: every decision about a TCP session's state is in this file.

**When is a TCP session closed?**  ``TCP_TRANSITIONS`` below is the whole
answer: (state, sender, event) -> (new state, guard).  Sender is C (the
client, packet to_server) or S.  Events: ``syn``, ``synack``, ``ack``,
``fin`` (FIN, with or without ACK), each with ``+finacked`` when the packet
acknowledges the peer's FIN.  A pair missing from the table changes nothing.
State names are Suricata's EVE ``tcp.state`` names, and like Suricata they
are named from the server's side: the client's FIN moves an established
session to ``close_wait``, the server's FIN to ``fin_wait1``.

RST is decided before the table, by where it falls in the receiver's
sequence space (RFC 793 / RFC 5961):
- exactly at the receiver's RCV.NXT (or acking our SYN in syn_sent):
  accepted, the session is ``closed``;
- inside the receiver's window but not exact: a RFC 5961 stack ignores it
  (and sends a challenge ACK), an older one accepts it: the session is
  ``closed``, but if the receiver speaks again the old state comes back;
- outside the window: ignored (counted ``rst_out_of_window``).
Reassembly never stops because of an RST: if the endpoints keep talking,
the data is still reassembled and inspected.

**Out of window.**  Once the session is past its handshake, a segment (data
or FIN) whose end lies beyond what the receiver allowed is not taken:
beyond the receiver's last ACK plus its advertised window, scaled, plus one
more window of the largest size its scaling allows (``65535 << scale``: the
slack for a window update or an ACK the mirror did not show).  Such a
segment changes no state, is not stored for reassembly, and is counted with
Suricata's stream event names (``est_packet_out_of_window``,
``fin_out_of_window``).  Sequence numbers are attacker-chosen and span 4 GiB:
without this, one segment could make a stream hold a hole of gigabytes.
Where the receiver's window is unknown (it has not sent a packet), the
segment is taken; where its scale is unknown (no SYN seen), the largest
scale is assumed, so a midstream session is judged late rather than wrongly.

``flow.state`` (EVE flow.state) follows ``tcp_state``: new (none, syn_sent,
syn_recv), established (established, fin_wait1/2, closing, close_wait),
closed (last_ack, time_wait, closed).

Streams: a direction is reassembled once its start is known: from the
handshake (SYN: client; SYN-ACK: server), or, when ``stream.midstream`` is
on, from the first packet of a session whose handshake was not seen (Suricata
does the same; without it such sessions are tracked as flows, not streams).
The start is kept in ``flow.sseq``; the ``Stream`` itself is made when the
direction's first data (or a FIN past the start) arrives, so a session that
never carries data costs its flow record only.  A session whose SYN was seen
but never answered (``stream.async-oneside``: the mirror sees one direction)
becomes established, and is reassembled, only with that setting.  A session
picked up at its SYN-ACK (``stream.midstream`` or ``stream.async-oneside``, as
Suricata) becomes established at a server packet as Suricata's SYN_RECV state
decides (``server_ack_establishes``), so a capture of the server's side only
is reassembled and reaches the application layer.
"""

from __future__ import annotations

from mirrorwatch.core.decode.packet import ACK, FIN, RST, SYN
from mirrorwatch.core.decode.tcp import window_scale
from mirrorwatch.core.flows import exceptions as eps
from mirrorwatch.core.flows.caps import set_tclass
from mirrorwatch.core.flows.flow import (
    T_CLOSED,
    T_ESTABLISHED,
    T_NEW,
    Flow,
    really_killed,
)
from mirrorwatch.core.reassembly.context import HALF, M32

C, S = 0, 1  # sender: client (packet goes to the server) or server

# (state, sender, event) -> (new state, guard).  Guards (``GUARDS``): None (always);
# 'midstream' (stream.midstream on), 'midstream_data' (and the packet carries data);
# 'async' (stream.async-oneside on); 'pickup' (either:
# Suricata picks a session up at a SYN-ACK with either); 'split' (the server answered the SYN
# with its own SYN: split handshake); 'server_ack' (``server_ack_establishes``).
TCP_TRANSITIONS: dict[tuple[str, int, str], tuple[str, str | None]] = {
    # handshake
    ("none", C, "syn"): ("syn_sent", None),
    ("none", S, "synack"): ("syn_recv", "pickup"),  # the SYN was not seen
    ("none", C, "ack"): ("established", "midstream"),  # picked up midstream
    ("none", S, "ack"): ("established", "midstream"),
    ("none", C, "fin"): ("close_wait", "midstream_data"),  # Suricata: a bare FIN picks nothing up
    ("none", S, "fin"): ("fin_wait1", "midstream_data"),
    ("syn_sent", C, "syn"): ("syn_sent", None),  # retransmitted SYN
    ("syn_sent", S, "syn"): ("syn_sent", None),  # split handshake: SYN answered by SYN
    ("syn_sent", S, "synack"): ("syn_recv", None),
    ("syn_sent", C, "synack"): ("syn_recv", "split"),  # split handshake: client sends the SYN-ACK
    ("syn_sent", C, "ack"): ("established", "async"),  # SYN-ACK not visible
    ("syn_sent", C, "fin"): ("close_wait", "async"),
    ("syn_recv", S, "synack"): ("syn_recv", None),  # retransmitted SYN-ACK
    ("syn_recv", C, "ack"): ("established", None),
    ("syn_recv", C, "fin"): ("close_wait", None),
    ("syn_recv", S, "ack"): ("established", "server_ack"),  # the client's final ACK not seen
    ("syn_recv", S, "fin"): ("fin_wait1", "async"),
    # teardown
    ("established", C, "fin"): ("close_wait", None),
    ("established", C, "fin+finacked"): ("close_wait", None),
    ("established", S, "fin"): ("fin_wait1", None),
    ("established", S, "fin+finacked"): ("fin_wait1", None),
    ("fin_wait1", C, "ack+finacked"): ("fin_wait2", None),
    ("fin_wait1", C, "fin"): ("closing", None),
    ("fin_wait1", C, "fin+finacked"): ("time_wait", None),
    ("fin_wait2", C, "fin"): ("time_wait", None),
    ("fin_wait2", C, "fin+finacked"): ("time_wait", None),
    ("close_wait", S, "fin"): ("last_ack", None),
    ("close_wait", S, "fin+finacked"): ("last_ack", None),
    ("closing", C, "ack+finacked"): ("time_wait", None),
    ("closing", S, "ack+finacked"): ("time_wait", None),
    ("last_ack", C, "ack+finacked"): ("closed", None),
    ("time_wait", S, "ack+finacked"): ("closed", None),
    ("time_wait", C, "ack+finacked"): ("closed", None),
}

# The ACK/FIN part of the table as one row per state (no key built per packet): a row holds the
# transitions at ``_fin_ack_slot(sender, fin, finacked)``.
_FIN_ACK_EVENTS = ("ack", "fin")
_FINACKED = "+finacked"


def _fin_ack_slot(d: int, fin: bool, finacked: bool) -> int:
    return (4 if finacked else 0) + 2 * d + (1 if fin else 0)


def _fin_ack_rows() -> dict:
    rows: dict = {}
    for (st, d, ev), t in TCP_TRANSITIONS.items():
        plain = ev.removesuffix(_FINACKED)
        if plain in _FIN_ACK_EVENTS:
            row = rows.setdefault(st, [None] * 8)
            row[_fin_ack_slot(d, plain == "fin", plain != ev)] = t
    return {st: tuple(row) for st, row in rows.items()}


_FIN_ACK_ROWS = _fin_ack_rows()

FLOW_STATE = {
    "none": "new", "syn_sent": "new", "syn_recv": "new",
    "established": "established", "fin_wait1": "established", "fin_wait2": "established",
    "closing": "established", "close_wait": "established",
    "last_ack": "closed", "time_wait": "closed", "closed": "closed",
}
_TCLASS = {"new": T_NEW, "established": T_ESTABLISHED, "closed": T_CLOSED}
REUSABLE = frozenset(("last_ack", "time_wait", "closed"))

MAX_WINDOW = 0xFFFF  # the largest window a TCP header carries, before scaling
MAX_WSCALE = 14  # RFC 7323's largest shift; assumed when the receiver's SYN was not seen
# the most a window may allow beyond the receiver's ACK (with the largest scale, (w + 65535) << 14
# would come near 2**31, where "ahead" and "behind" become ambiguous in sequence space)
WINDOW_ALLOW_MAX = 1 << 30
# Suricata's stream event names for segments beyond the receiver's window
EV_DATA_OUT_OF_WINDOW = "est_packet_out_of_window"
EV_FIN_OUT_OF_WINDOW = "fin_out_of_window"


def seq_gt(a: int, b: int) -> bool:
    """Suricata's SEQ_GT: is sequence number ``a`` after ``b`` (modulo 2**32)?"""
    diff = (a - b) & M32
    return diff != 0 and diff < HALF


def seq_ahead(end: int, mark) -> bool:
    """Is sequence number ``end`` at or after ``mark`` (None: nothing yet), modulo 2**32?"""
    if mark is None:
        return True
    m = mark  # (a C integer, compiled)
    return ((end - m) & M32) < HALF


def server_ack_establishes(tracker, f: Flow, pkt) -> bool:
    """A server packet (no SYN/FIN/RST) in syn_recv: does the session become established?

    Suricata's StreamTcpPacketStateSynRecv, to-client packet, IDS mode, in its order: a split
    handshake goes on; with ``stream.async-oneside``, a packet at the server's next SEQ (the
    mirror sees that side only); a packet at the client's next SEQ (what the SYN-ACK
    acknowledged, ``f.sseq[0]``) is refused as an evasion attempt; one after it that
    acknowledges more than the SYN-ACK did ("ACK for missing data": Suricata compares this
    SEQ with the client's, and so does this); if the SYN was seen, the packet that fits
    right after a missed final ACK of the handshake.
    """
    if f.split:
        return True
    seq = pkt.seq
    ack = pkt.ack
    srv_next = (f.isn[1] + 1) & M32 if f.isn[1] is not None else None
    cli_next = f.sseq[0]
    if seq == cli_next and ack == srv_next:
        return True
    if tracker.async_oneside and seq == srv_next:
        return True
    if cli_next is None or seq == cli_next:
        return False
    if seq_gt(seq, cli_next) and seq_gt(ack, cli_next):
        return True
    return not f.midstream and ack == cli_next and seq == srv_next


# guard -> fn(tracker, flow, packet): may the transition happen?
GUARDS = {
    "midstream": lambda tracker, f, pkt: tracker.midstream,
    "async": lambda tracker, f, pkt: tracker.async_oneside,
    "pickup": lambda tracker, f, pkt: tracker.midstream or tracker.async_oneside,
    "midstream_data": lambda tracker, f, pkt: tracker.midstream and len(pkt.payload) > 0,
    "split": lambda tracker, f, pkt: f.split,
    "server_ack": server_ack_establishes,
}


def in_window(f: Flow, d: int, seq: int, length: int) -> bool:
    """Does [seq, seq + length) end within what direction d's receiver allowed (module docstring)?"""
    r = 1 - d
    last_ack = f.last_ack[r]
    window = f.win[r]
    if last_ack is None or window is None:
        return True
    ack = last_ack
    w = window
    scale = f.wscale[r]
    ws = MAX_WSCALE if scale is None else scale
    allow = (w + MAX_WINDOW) << ws
    limit = ack + (allow if allow < WINDOW_ALLOW_MAX else WINDOW_ALLOW_MAX)
    return ((limit - seq - length) & M32) < HALF


# -- the per-packet path: functions of the flow table ``ft`` (C calls in the compiled build) --------
def tcp_packet(ft, f: Flow, pkt, d: int, fl: int) -> int:
    """Per-direction TCP fields, the state machine, then the streams; returns the direction.

    For packets that may change the state (SYN, FIN, RST, or a session not
    established); ``FlowTable.process`` does the rest inline."""
    seq = pkt.seq
    payload = pkt.payload
    n = len(payload)
    was = f.tcp_state
    if (n or fl & FIN) and f.state != "new" and not fl & (SYN | RST) \
            and not in_window(f, d, seq, n + (1 if fl & FIN else 0)):
        ft.stream_events[EV_FIN_OUT_OF_WINDOW if fl & FIN else EV_DATA_OUT_OF_WINDOW] += 1
        return d
    if fl & ACK:
        f.last_ack[d] = pkt.ack
    f.win[d] = pkt.win
    if n:
        f.seg_len[d] = n
    if fl & RST:
        if not _rst(ft, f, pkt, d):
            return d
    else:
        if f.rst_by is not None:
            _after_rst(ft, f, d, n, fl)
        end = (seq + n + (1 if fl & SYN else 0) + (1 if fl & FIN else 0)) & M32
        if seq_ahead(end, f.next_seq[d]):
            f.next_seq[d] = end
        if fl & SYN:
            d = _syn(ft, f, pkt, d, fl)  # may swap the roles
        elif fl & (FIN | ACK):
            _fin_ack(ft, f, pkt, d, fl, seq + n)
    if f.reasm and (n or fl & (FIN | ACK)):
        _tcp_streams(ft, f, pkt, d, fl, seq, n)
        if f.tcp_state == "closed" and was != "closed" and f.rst_by is None:
            # both FINs acknowledged (Suricata's TCP_CLOSED: the app layer's STREAM_EOF): each
            # direction delivers what it holds and tells its end on this packet, so a response
            # that ends with the connection completes, and is logged, here
            for s in f.streams:
                if s is not None:
                    s.flush()
    return d


def _tcp_streams(ft, f: Flow, pkt, d: int, fl: int, seq: int, n: int) -> None:
    """The packet's data (RST data too, as Suricata), then its ACK for the other direction."""
    streams = f.streams
    if (n or fl & FIN) and (f.state != "new" or fl & SYN):
        s = streams[d]
        if fl & SYN:
            seq = (seq + 1) & M32
        if s is None and (n or seq != f.sseq[d]) \
                and (f.sseq[d] is not None or f.midstream or f.state == "established"):
            s = streams[d] = ft._stream(f, d, seq)
        if s is not None:
            s.add(seq, pkt.payload, fl & FIN)
    if fl & ACK:
        o = streams[1 - d]
        if o is not None:
            if not o.peer_visible:
                o.peer_seen()
            o.ack(pkt.ack)


def _fin_ack(ft, f: Flow, pkt, d: int, fl: int, data_end: int) -> None:
    """FIN/ACK packets through TCP_TRANSITIONS."""
    st = f.tcp_state
    pf = f.fin_seq[1 - d]
    t = None
    row = _FIN_ACK_ROWS.get(st)
    if row is not None:
        fin = (fl & FIN) != 0
        if pf is not None and fl & ACK and ((pkt.ack - pf - 1) & M32) < HALF:
            t = row[_fin_ack_slot(d, fin, True)]
        if t is None:
            t = row[_fin_ack_slot(d, fin, False)]
    if st == "none" and not _midstream_exception(ft, f):
        t = None
    if t is not None and t[1] is not None and not GUARDS[t[1]](ft, f, pkt):
        t = None
    # remember where this side's FIN is (only a FIN the session took)
    if fl & FIN and (t is not None or FLOW_STATE[st] == "established") and seq_ahead(data_end, f.fin_seq[d]):
        f.fin_seq[d] = data_end & M32
    if t is not None:
        if st == "none":
            _pickup(ft, f, pkt, d)
        elif st == "syn_sent" and t[1] == "async":
            ft.c["async_oneside"] += 1
        set_state(ft, f, t[0])


def exception_mode(ft, settings, ips: bool) -> None:
    """IDS (replay, listen) or IPS (inline): the exception policies of the flow table ``ft`` depend on it
    (SettingError when the settings name a policy Suricata refuses in that mode)."""
    ft.midstream_policy = eps.midstream_policy(settings, ips)
    ft.midstream_applied = ((eps.MIDSTREAM, ft.midstream_policy),)


def _midstream_exception(ft, f: Flow) -> bool:
    """A packet (ACK, FIN or SYN-ACK) of a session whose handshake was not seen: Suricata applies the
    midstream exception policy (StreamTcpPacketStateNone); may the session still be picked up?"""
    if not f.eps:
        f.eps = ft.midstream_applied  # the one target so far: no other can be there yet
    policy = ft.midstream_policy
    if policy == eps.IGNORE:
        return True
    if f.action is None:  # the first action set wins
        f.action = "pass" if policy in (eps.PASS_FLOW, eps.BYPASS) else "drop"
    if policy == eps.PASS_FLOW:
        return True
    if policy == eps.BYPASS and not f.bypassed:
        f.bypassed = True
        f.stop_inspection()
    return False  # bypassed, or dropped (inline: the judge gives the verdict)


def set_state(ft, f: Flow, st: str) -> None:
    """``f`` enters TCP state ``st``; its flow state and timeout follow."""
    f.tcp_state = st
    fs = FLOW_STATE[st]
    if fs != f.state:
        f.state = fs
        if fs == "established" and really_killed(f):
            fs = "closed"  # a killed session stays on the closed timeout
        set_tclass(ft, f, _TCLASS[fs])


def _syn(ft, f: Flow, pkt, d: int, fl: int) -> int:
    """SYN / SYN-ACK: roles, initial sequence numbers, the handshake part of the table."""
    st = f.tcp_state
    seq = pkt.seq
    if fl & ACK:
        ev = "synack"
        if st == "none" and d == C and f.isn[0] is None:
            ft._swap(f)  # a SYN-ACK tells who the server is
            d = S
    else:
        ev = "syn"
        if st == "none" and d == S and f.isn[0] is None:
            ft._swap(f)
            d = C
    t = TCP_TRANSITIONS.get((st, d, ev))
    if ev == "syn" and d == C:
        if f.isn[0] is not None and seq != f.isn[0] and f.streams[0] is not None:
            ft._drop_stream(f, 0)  # another ISN: the client starts over
        f.isn[0] = seq
        f.wscale[0] = window_scale(pkt.tcp_opts)
        f.reasm = True
        if f.streams[0] is None:
            f.sseq[0] = (seq + 1) & M32
    elif ev == "syn" and d == S and st == "syn_sent":
        f.split = True
        f.isn[1] = seq
        f.wscale[1] = window_scale(pkt.tcp_opts)
    elif ev == "synack" and d == S:
        if st in ("none", "syn_sent", "syn_recv"):
            f.isn[1] = seq
            f.wscale[1] = window_scale(pkt.tcp_opts)
            if st == "none" and not _midstream_exception(ft, f):
                return d
            if st == "none" and t is not None and not GUARDS[t[1]](ft, f, pkt):
                f.synack_pending = pkt.ack  # the SYN may still come (reordered capture)
                return d
    elif ev == "synack" and d == C and f.split:
        f.isn[0] = f.isn[0] if f.isn[0] is not None else (pkt.ack - 1) & M32
    if t is None or (t[1] is not None and not GUARDS[t[1]](ft, f, pkt)):
        return d
    _handshake_step(ft, f, pkt, d, ev, t[0])
    return d


def _handshake_step(ft, f: Flow, pkt, d: int, ev: str, new: str) -> None:
    """A SYN or SYN-ACK the table takes: pickups, reordered handshakes, stream starts."""
    st = f.tcp_state
    seq = pkt.seq
    if st == "none" and ev == "synack":
        ft.c["midstream_pickups"] += 1
        f.midstream = True
        f.reasm = True
    if ev == "syn" and d == C and f.synack_pending is not None:
        if f.synack_pending == (seq + 1) & M32:
            new = "syn_recv"  # the SYN-ACK was captured before its SYN
        f.synack_pending = None
    if new == "syn_recv" and f.reasm:
        if f.isn[1] is not None and f.streams[1] is None:
            f.sseq[1] = (f.isn[1] + 1) & M32
        if f.streams[0] is None and ev == "synack":
            f.sseq[0] = pkt.ack if d == S else (seq + 1) & M32
    set_state(ft, f, new)


def _pickup(ft, f: Flow, pkt, d: int) -> None:
    """A session whose handshake was not seen is picked up (stream.midstream)."""
    ft.c["midstream_pickups"] += 1
    f.midstream = True
    f.reasm = True
    if pkt.flags & ACK and f.streams[1 - d] is None:
        f.sseq[1 - d] = pkt.ack


def _rst(ft, f: Flow, pkt, d: int) -> bool:
    """Where does the RST fall in the receiver's sequence space (module docstring)?

    Returns False when it is ignored (out of window)."""
    seq = pkt.seq
    st = f.tcp_state
    rcv_nxt = f.next_seq[d]
    if st == "syn_sent" and d == S:
        ok = exact = bool(pkt.flags & ACK) and f.isn[0] is not None and pkt.ack == (f.isn[0] + 1) & M32
    elif rcv_nxt is None:
        ok = exact = True
    else:
        # exactly at RCV.NXT; or at the sender's own FIN (or SYN) sequence number, which many
        # stacks use for the RST that follows their FIN
        exact = seq == rcv_nxt or ((rcv_nxt - seq) & M32 == 1 and (seq == f.fin_seq[d] or seq == f.isn[d]))
        w = f.win[1 - d]
        ws = f.wscale[1 - d]  # unknown (no SYN seen): assume the largest scale, do not judge too fast
        win = (w << (MAX_WSCALE if ws is None else ws)) if w is not None else 0
        ok = exact or ((seq - rcv_nxt) & M32) < max(win, 1)
    if not ok:
        ft.c["rst_out_of_window"] += 1
        return False
    ft.c["rst_accepted" if exact else "rst_in_window"] += 1
    if f.rst_by is None:
        f.rst_prev = st
    f.rst_by = d
    f.rst_exact = exact
    f.rst_talk = 0
    set_state(ft, f, "closed")
    return True


def _after_rst(ft, f: Flow, d: int, n: int, fl: int) -> None:
    """A non-RST packet after an RST: did the endpoints ignore it?"""
    if not f.rst_exact and d != f.rst_by:
        resume = True  # the receiver answered: it ignored the inexact RST (RFC 5961)
    elif fl & SYN and FLOW_STATE[f.rst_prev] == "new":
        resume = True  # the handshake goes on: the RST did not take
    else:
        if n:
            f.rst_talk |= 1 << d
        resume = f.rst_talk == 3  # both sides send new data: the RST did not take
    if resume:
        ft.c["rst_resumed"] += 1
        prev = f.rst_prev
        f.rst_by = f.rst_prev = None
        f.rst_talk = 0
        set_state(ft, f, prev if prev != "closed" else ("established" if f.reasm else "none"))
