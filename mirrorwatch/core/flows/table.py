"""Sessions: the bidirectional flow table and the TCP state machine.

Theory of operation
-------------------
Every decoded packet belongs to one ``Flow``.  The table key is the 5-tuple
plus the VLAN ids, normalised so both directions produce the same tuple (the
lower (address, port) endpoint first): one dict lookup per packet.  The flow
remembers whether that lower endpoint is the client, so the direction of a
packet is one comparison.  Index 0 of every per-direction pair means "towards
the server" (Suricata's toserver), 1 "towards the client".

Who is the client: the sender of a SYN; the receiver of a SYN-ACK seen
first; otherwise the side with the less well-known port (well-known < 1024 <
registered < 32768 <= ephemeral), or, for equal classes, the first sender.
A SYN arriving later on a handshake-less flow re-decides (the flow swaps).

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

``flow.state`` (EVE flow.state) follows ``tcp_state``: new (none, syn_sent,
syn_recv), established (established, fin_wait1/2, closing, close_wait),
closed (last_ack, time_wait, closed).  UDP/ICMP/other flows are new until
the reverse direction answers, then established.

Streams: a direction is reassembled (``flow.streams[d]`` is a
``reassembly.Stream``) once its initial sequence number is known from the
handshake (SYN: client; SYN-ACK: server), or, when ``stream.midstream`` is
on, from the first packet of a session whose handshake was not seen (Suricata
does the same; without it such sessions are tracked as flows, not streams).
A session whose SYN was seen but never answered (``stream.async-oneside``:
the mirror sees one direction) becomes established, and is reassembled, only
with that setting.  Packets with a bad checksum (``pkt.csum_ok is False``)
are counted and otherwise ignored, like Suricata: the receiver dropped them.

Time is packet time.  A flow is due at last activity + the
``flow-timeouts.<proto>.<new|established|closed>`` of its state.  Flows are
filed in one-second buckets of a timing wheel by the deadline they had when
filed (refiled at once only when a state change makes them due sooner);
``expire(now)`` pops the due buckets and refiles the flows that were active
since, so a packet costs no timer work and a sweep touches only flows that
are due or were filed long ago.  The table is an OrderedDict in least-recently-used
order: beyond ``flow.max-sessions`` the least recently active flow is
evicted, ended with reason ``forced``.  A new SYN (no ACK) on a finished
session (last_ack, time_wait, closed) or on one mirrorwatch killed, with
another ISN, ends the old flow (reason ``tcp_reuse``, as Suricata's TCP port
reuse) and starts a new one.  A killed session (``flow.killed``; not in
dry-run, where it goes on) waits the ``flow-timeouts.tcp.closed`` timeout.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import OrderedDict

from mirrorwatch.core.decode.packet import (
    ACK,
    FIN,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    RST,
    SYN,
)
from mirrorwatch.core.events import FlowEnded
from mirrorwatch.core.reassembly.stream import HALF, M32, ReassemblyContext, Stream

C, S = 0, 1  # sender: client (packet goes to the server) or server

# (state, sender, event) -> (new state, guard).  Guards: None (always);
# 'midstream' (stream.midstream on); 'async' (stream.async-oneside on);
# 'split' (the server answered the SYN with its own SYN: split handshake).
TCP_TRANSITIONS: dict[tuple[str, int, str], tuple[str, str | None]] = {
    # handshake
    ("none", C, "syn"): ("syn_sent", None),
    ("none", S, "synack"): ("syn_recv", "midstream"),  # the SYN was not seen
    ("none", C, "ack"): ("established", "midstream"),  # picked up midstream
    ("none", S, "ack"): ("established", "midstream"),
    ("none", C, "fin"): ("close_wait", "midstream"),
    ("none", S, "fin"): ("fin_wait1", "midstream"),
    ("syn_sent", C, "syn"): ("syn_sent", None),  # retransmitted SYN
    ("syn_sent", S, "syn"): ("syn_sent", None),  # split handshake: SYN answered by SYN
    ("syn_sent", S, "synack"): ("syn_recv", None),
    ("syn_sent", C, "synack"): ("syn_recv", "split"),  # split handshake: client sends the SYN-ACK
    ("syn_sent", C, "ack"): ("established", "async"),  # SYN-ACK not visible
    ("syn_sent", C, "fin"): ("close_wait", "async"),
    ("syn_recv", S, "synack"): ("syn_recv", None),  # retransmitted SYN-ACK
    ("syn_recv", C, "ack"): ("established", None),
    ("syn_recv", C, "fin"): ("close_wait", None),
    ("syn_recv", S, "ack"): ("established", "split_or_async"),
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

# the "+finacked" rows keyed by the plain event (no string built per packet)
_FINACKED = {(st, d, ev[:-len("+finacked")]): t for (st, d, ev), t in TCP_TRANSITIONS.items()
             if ev.endswith("+finacked")}

FLOW_STATE = {
    "none": "new", "syn_sent": "new", "syn_recv": "new",
    "established": "established", "fin_wait1": "established", "fin_wait2": "established",
    "closing": "established", "close_wait": "established",
    "last_ack": "closed", "time_wait": "closed", "closed": "closed",
}
_REUSABLE = frozenset(("last_ack", "time_wait", "closed"))

_NONE2 = (None, None)
_SYN_ACK_RST = SYN | ACK | RST  # flag masks named once: the compiler does not fold names
_SYN_FIN_RST = SYN | FIN | RST
_ICMP_REQUESTS = frozenset((8, 13, 15, 17, 128))  # echo/timestamp/info/mask requests, ICMPv6 echo


def _really_killed(reason) -> bool:
    """The killer reset the session (in dry-run it goes on: it is only marked)."""
    return reason is not None and not reason.endswith("(dry-run)")


def _port_rank(p: int) -> int:
    return 0 if p < 1024 else (1 if p < 32768 else 2)


def _wscale(opts) -> int:
    """Window scale shift from TCP options (0 when absent or malformed)."""
    i, n = 0, len(opts)
    while i < n:
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= n or opts[i + 1] < 2:
            break
        if k == 3 and opts[i + 1] == 3 and i + 2 < n:
            return min(opts[i + 2], 14)
        i += opts[i + 1]
    return 0


class Flow:
    """One bidirectional session (fields are the contract in the brief)."""

    __slots__ = (
        "flow_id", "key", "proto", "ipv", "client", "server", "cport", "sport", "vlan_id",
        "start", "last_ts", "pkts", "bytes", "state", "tcp_state", "tcp_flags_ts", "tcp_flags_tc", "streams",
        "alerted", "_killed", "end_reason", "det", "app", "kill",
        "l2", "ttl", "next_seq", "last_ack", "win",
        # internals
        "lo_client", "timeout", "bucket", "ended", "isn", "wscale", "fin_seq",
        "reasm", "synack_pending", "split", "rst_prev", "rst_by", "rst_exact", "rst_talk", "midstream", "table",
    )

    @property
    def tcp_flags(self) -> int:
        """TCP flags seen in either direction (EVE tcp.tcp_flags)."""
        return self.tcp_flags_ts | self.tcp_flags_tc

    @property
    def killed(self):
        """None, or why mirrorwatch killed the session (set by the killer)."""
        return self._killed

    @killed.setter
    def killed(self, reason) -> None:
        self._killed = reason
        if reason is not None and self.table is not None:
            self.table._on_kill(self)

    def __repr__(self) -> str:
        from ipaddress import ip_address

        c = ip_address(self.client) if self.client else "?"
        s = ip_address(self.server) if self.server else "?"
        return f"<Flow {self.flow_id} {self.proto} {c}:{self.cport} -> {s}:{self.sport} {self.tcp_state or self.state}>"

    @property
    def age(self) -> int:
        """Suricata's flow.age: whole seconds of the last packet minus those of the first."""
        return int(self.last_ts) - int(self.start)


class FlowTable:
    """The session table; ``process`` is the per-packet entry point (see module docstring)."""

    def __init__(self, settings):
        self.flows: OrderedDict = OrderedDict()
        self.max_sessions = max(1, settings["flow.max-sessions"])
        self.midstream = settings["stream.midstream"]
        self.async_oneside = settings["stream.async-oneside"]
        to = {}
        for proto, name in ((PROTO_TCP, "tcp"), (PROTO_UDP, "udp"), (PROTO_ICMP, "icmp"), (PROTO_ICMPV6, "icmp")):
            to[proto] = (settings[f"flow-timeouts.{name}.new"], settings[f"flow-timeouts.{name}.established"],
                         settings["flow-timeouts.tcp.closed"] if proto == PROTO_TCP else
                         settings[f"flow-timeouts.{name}.established"])
        dflt = (settings["flow-timeouts.default.new"], settings["flow-timeouts.default.established"],
                settings["flow-timeouts.default.established"])
        self._timeouts = to
        self._default_timeouts = dflt
        self.reasm = ReassemblyContext(settings)
        self.reasm.reclaim = self._reclaim
        # ``on_new_stream(flow, direction, stream)``: called when a direction starts being
        # reassembled, e.g. to attach an observer (streamdump); None costs nothing.
        self.on_new_stream = None
        # ``on_swap(flow)``: called after the roles swapped (a later SYN showed the other side is
        # the client), so rooms keeping per-direction state of their own swap it too
        self.on_swap = None
        self._wheel: dict[int, list] = {}
        self._wheel_keys: list[int] = []
        self._seq = 0
        self.c = dict.fromkeys(
            ("flows", "tcp", "udp", "icmp", "other", "evicted", "timeout", "tcp_reuse", "csum_bad_pkts",
             "midstream_pickups", "not_reassembled", "rst_accepted", "rst_in_window", "rst_out_of_window",
             "rst_resumed", "role_swaps", "async_oneside"), 0)

    # -- the per-packet path --------------------------------------------------
    def process(self, pkt, events: list):
        """Find or create the packet's flow, update it; returns (flow, to_server)."""
        proto = pkt.proto
        src = pkt.src
        dst = pkt.dst
        if proto == PROTO_TCP or proto == PROTO_UDP:
            sp = pkt.sport
            dp = pkt.dport
        elif proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            sp = dp = pkt.icmp_id if pkt.icmp_id >= 0 else 0
        else:
            sp = pkt.sport
            dp = pkt.dport
        if src < dst or (src == dst and sp <= dp):
            fwd = True
            key = (proto, src, sp, dst, dp, pkt.vlan_id)
        else:
            fwd = False
            key = (proto, dst, dp, src, sp, pkt.vlan_id)
        flows = self.flows
        f = flows.get(key)
        ts = pkt.ts
        if f is None:
            f = self._new_flow(key, pkt, fwd, sp, dp, events)
        else:
            flows.move_to_end(key)
            if proto == PROTO_TCP and pkt.flags & _SYN_ACK_RST == SYN \
                    and (f.tcp_state in _REUSABLE or _really_killed(f._killed)) \
                    and pkt.seq != f.isn[0] and pkt.csum_ok is not False:
                f = self._reuse(f, key, pkt, fwd, sp, dp, events)
        d = 0 if fwd == f.lo_client else 1
        f.pkts[d] += 1
        f.bytes[d] += pkt.wirelen  # the frame's captured length
        if ts > f.last_ts:
            f.last_ts = ts
        if proto == PROTO_TCP:
            fl = pkt.flags
            if d:
                f.tcp_flags_tc |= fl
            else:
                f.tcp_flags_ts |= fl
            if pkt.csum_ok is False:
                self.c["csum_bad_pkts"] += 1
            elif fl & _SYN_FIN_RST or f.tcp_state != "established" or f.rst_by is not None:
                d = self._tcp(f, pkt, d, fl)
            else:
                # established, a plain ACK or data (most packets): no state change, inline
                seq = pkt.seq
                payload = pkt.payload
                n = len(payload)
                f.win[d] = pkt.win
                end = (seq + n) & M32
                ns = f.next_seq[d]
                if ns is None or ((end - ns) & M32) < HALF:
                    f.next_seq[d] = end
                streams = f.streams
                if n:
                    st = streams[d]
                    if st is None:
                        st = streams[d] = self._stream(f, d, seq)
                    if st is not None:
                        st.add(seq, payload)
                if fl & ACK:
                    ack = f.last_ack[d] = pkt.ack
                    st = streams[1 - d]
                    if st is not None:
                        if not st.peer_visible:
                            st.peer_seen()
                        st.ack(ack)
        elif pkt.csum_ok is False:
            self.c["csum_bad_pkts"] += 1
        elif f.state == "new" and f.pkts[1 - d]:
            f.state = "established"
            self._set_timeout(f, self._timeouts.get(proto, self._default_timeouts)[1])
        f.ttl[d] = pkt.ttl
        f.l2[d] = (pkt.src_mac, pkt.dst_mac, pkt.vlans)
        return f, d == 0

    def _reclaim(self) -> None:
        """Over ``stream.reassembly.memcap``: the least recently active sessions give up their
        buffered stream bytes (settled first, so observers still get them) until 10% is free."""
        r = self.reasm
        target = r.memcap - r.memcap // 10
        freed = 0
        for f in self.flows.values():  # least recently active first
            for s in f.streams:
                if s is not None and s.buf:
                    freed += s.release()
            if r.buf_bytes + r.ooo_bytes <= target:
                break
        r.stats["memcap_released_bytes"] += freed

    def _tcp(self, f: Flow, pkt, d: int, fl: int) -> int:
        """Per-direction TCP fields, the state machine, then the streams; returns the direction.

        For packets that may change the state (SYN, FIN, RST, or a session not
        established); ``process`` does the rest inline."""
        seq = pkt.seq
        payload = pkt.payload
        n = len(payload)
        if fl & ACK:
            f.last_ack[d] = pkt.ack
        f.win[d] = pkt.win
        if fl & RST:
            if not self._rst(f, pkt, d):
                return d
        else:
            if f.rst_by is not None:
                self._after_rst(f, d, n, fl)
            end = (seq + n + (1 if fl & SYN else 0) + (1 if fl & FIN else 0)) & M32
            ns = f.next_seq[d]
            if ns is None or ((end - ns) & M32) < HALF:
                f.next_seq[d] = end
            if fl & SYN:
                d = self._syn(f, pkt, d, fl)  # may swap the roles
            elif fl & (FIN | ACK):
                self._table(f, pkt, d, fl, seq + n)
        if not f.reasm:
            return d
        # streams: the packet's data (RST data too, as Suricata), then its ACK for the other direction
        streams = f.streams
        if n or fl & FIN:
            s = streams[d]
            if s is None and (f.midstream or f.state == "established"):
                s = streams[d] = self._stream(f, d, seq)
            if s is not None and (f.state != "new" or fl & SYN):
                if fl & SYN:
                    seq = (seq + 1) & M32
                s.add(seq, payload, fl & FIN)
        if fl & ACK:
            o = streams[1 - d]
            if o is not None:
                if not o.peer_visible:
                    o.peer_seen()
                o.ack(pkt.ack)
        return d

    def _table(self, f: Flow, pkt, d: int, fl: int, data_end: int) -> None:
        """FIN/ACK packets through TCP_TRANSITIONS."""
        st = f.tcp_state
        ev = "fin" if fl & FIN else "ack"
        pf = f.fin_seq[1 - d]
        t = None
        if pf is not None and fl & ACK and ((pkt.ack - pf - 1) & M32) < HALF:
            t = _FINACKED.get((st, d, ev))
        if t is None:
            t = TCP_TRANSITIONS.get((st, d, ev))
        if t is not None and t[1] is not None and not self._guard(f, t[1]):
            t = None
        if fl & FIN and (t is not None or FLOW_STATE[st] == "established"):
            fs = f.fin_seq[d]  # remember where this side's FIN is (only a FIN the session took)
            if fs is None or ((data_end - fs) & M32) < HALF:
                f.fin_seq[d] = data_end & M32
        if t is not None:
            if st == "none":
                self._pickup(f, pkt, d)
            elif st == "syn_sent" and t[1] == "async":
                self.c["async_oneside"] += 1
            self._set_state(f, t[0])

    def _stream(self, f: Flow, d: int, seq: int) -> Stream:
        s = Stream(self.reasm, seq, settle_now=f.pkts[1 - d] == 0)
        if self.on_new_stream is not None:
            self.on_new_stream(f, d, s)
        return s

    def _guard(self, f: Flow, guard) -> bool:
        if guard is None:
            return True
        if guard == "midstream":
            return self.midstream
        if guard == "async":
            return self.async_oneside
        if guard == "split":
            return f.split
        return f.split or self.async_oneside  # split_or_async

    def _set_state(self, f: Flow, st: str) -> None:
        f.tcp_state = st
        fs = FLOW_STATE[st]
        if fs != f.state:
            f.state = fs
            to = self._timeouts[PROTO_TCP]
            if fs == "established" and _really_killed(f._killed):
                fs = "closed"  # a killed session stays on the closed timeout
            self._set_timeout(f, to[0] if fs == "new" else (to[1] if fs == "established" else to[2]))

    def _on_kill(self, f: Flow) -> None:
        """A killed TCP session is over for its endpoints: it waits the closed timeout."""
        if f.proto == PROTO_TCP and not f.ended and _really_killed(f._killed):
            self._set_timeout(f, self._timeouts[PROTO_TCP][2])

    def _set_timeout(self, f: Flow, timeout: float) -> None:
        """A state change brings another timeout; file the flow earlier if it is now due sooner."""
        f.timeout = timeout
        if math.ceil(f.last_ts + timeout) < f.bucket:
            self._file(f)

    def _syn(self, f: Flow, pkt, d: int, fl: int) -> int:
        """SYN / SYN-ACK: roles, initial sequence numbers, the handshake part of the table."""
        st = f.tcp_state
        seq = pkt.seq
        if fl & ACK:
            ev = "synack"
            if st == "none" and d == C and f.isn[0] is None:
                self._swap(f)  # a SYN-ACK tells who the server is
                d = S
        else:
            ev = "syn"
            if st == "none" and d == S and f.isn[0] is None:
                self._swap(f)
                d = C
        t = TCP_TRANSITIONS.get((st, d, ev))
        if ev == "syn" and d == C:
            if f.isn[0] is not None and seq != f.isn[0] and f.streams[0] is not None:
                f.streams[0].detach()
                f.streams[0] = None
            f.isn[0] = seq
            f.wscale[0] = _wscale(pkt.tcp_opts)
            f.reasm = True
            if f.streams[0] is None:
                f.streams[0] = self._stream(f, 0, (seq + 1) & M32)
        elif ev == "syn" and d == S and st == "syn_sent":
            f.split = True
            f.isn[1] = seq
            f.wscale[1] = _wscale(pkt.tcp_opts)
        elif ev == "synack" and d == S:
            if st in ("none", "syn_sent", "syn_recv"):
                f.isn[1] = seq
                f.wscale[1] = _wscale(pkt.tcp_opts)
                if st == "none" and t is not None and not self._guard(f, t[1]):
                    f.synack_pending = pkt.ack  # the SYN may still come (reordered capture)
                    return d
        elif ev == "synack" and d == C and f.split:
            f.isn[0] = f.isn[0] if f.isn[0] is not None else (pkt.ack - 1) & M32
        if t is None or not self._guard(f, t[1]):
            return d
        new = t[0]
        if st == "none" and ev == "synack":
            self.c["midstream_pickups"] += 1
            f.midstream = True
            f.reasm = True
        if ev == "syn" and d == C and f.synack_pending is not None:
            if f.synack_pending == (seq + 1) & M32:
                new = "syn_recv"  # the SYN-ACK was captured before its SYN
            f.synack_pending = None
        if new == "syn_recv" and f.reasm:
            if f.isn[1] is not None and f.streams[1] is None:
                f.streams[1] = self._stream(f, 1, (f.isn[1] + 1) & M32)
            if f.streams[0] is None and ev == "synack":
                f.streams[0] = self._stream(f, 0, pkt.ack if d == S else (seq + 1) & M32)
        self._set_state(f, new)
        return d

    def _pickup(self, f: Flow, pkt, d: int) -> None:
        """A session whose handshake was not seen is picked up (stream.midstream)."""
        self.c["midstream_pickups"] += 1
        f.midstream = True
        f.reasm = True
        if pkt.flags & ACK and f.streams[1 - d] is None:
            f.streams[1 - d] = self._stream(f, 1 - d, pkt.ack)

    def _rst(self, f: Flow, pkt, d: int) -> bool:
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
            win = (w << (14 if ws is None else ws)) if w is not None else 0
            ok = exact or ((seq - rcv_nxt) & M32) < max(win, 1)
        if not ok:
            self.c["rst_out_of_window"] += 1
            return False
        self.c["rst_accepted" if exact else "rst_in_window"] += 1
        if f.rst_by is None:
            f.rst_prev = st
        f.rst_by = d
        f.rst_exact = exact
        f.rst_talk = 0
        self._set_state(f, "closed")
        return True

    def _after_rst(self, f: Flow, d: int, n: int, fl: int) -> None:
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
            self.c["rst_resumed"] += 1
            prev = f.rst_prev
            f.rst_by = f.rst_prev = None
            f.rst_talk = 0
            self._set_state(f, prev if prev != "closed" else ("established" if f.reasm else "none"))

    # -- creation, reuse, roles ---------------------------------------------
    def _new_flow(self, key, pkt, fwd: bool, sp: int, dp: int, events: list) -> Flow:
        flows = self.flows
        if len(flows) >= self.max_sessions:
            _, old = flows.popitem(last=False)
            self._end(old, "forced")
            self.c["evicted"] += 1
            events.append(FlowEnded(pkt.ts, old, "forced"))
        proto = pkt.proto
        f = Flow()
        self._seq += 1
        # flow_id (EVE): positive, < 2**53, unique for 2**32 sessions: the counter in the high
        # bits, 21 bits of a hash of the key below (so ids look unrelated, as Suricata's do)
        f.flow_id = ((self._seq & 0xFFFFFFFF) << 21) | (zlib.crc32(pkt.src + pkt.dst, (sp << 16 | dp) ^ proto) & 0x1FFFFF)
        f.key = key
        f.proto = proto
        f.ipv = pkt.ipv
        f.vlan_id = pkt.vlan_id
        # who is the client (module docstring)
        if proto == PROTO_TCP:
            fl = pkt.flags
            if fl & (SYN | RST) == SYN:
                sender_client = not fl & ACK
            else:
                rs, rd = _port_rank(sp), _port_rank(dp)
                sender_client = rs >= rd
        elif proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            sender_client = True if pkt.icmp_type in _ICMP_REQUESTS else not (pkt.icmp_type in (0, 14, 16, 18, 129))
        else:
            rs, rd = _port_rank(sp), _port_rank(dp)
            sender_client = rs >= rd
        f.lo_client = fwd == sender_client
        if sender_client:
            f.client, f.server, f.cport, f.sport = pkt.src, pkt.dst, sp, dp
        else:
            f.client, f.server, f.cport, f.sport = pkt.dst, pkt.src, dp, sp
        f.start = f.last_ts = pkt.ts
        f.pkts = [0, 0]
        f.bytes = [0, 0]
        f.state = "new"
        f.tcp_state = "none" if proto == PROTO_TCP else None
        f.tcp_flags_ts = f.tcp_flags_tc = 0
        if proto == PROTO_TCP:
            f.streams = [None, None]
            f.next_seq = [None, None]
            f.last_ack = [None, None]
            f.win = [None, None]
            f.isn = [None, None]
            f.wscale = [None, None]
            f.fin_seq = [None, None]
        else:  # TCP-only fields: nothing writes them, one shared (None, None) saves ~500 bytes a flow
            f.streams = f.next_seq = f.last_ack = f.win = f.isn = f.wscale = f.fin_seq = _NONE2
        f.alerted = False
        f._killed = None
        f.table = self
        f.end_reason = None
        f.det = None
        f.app = None  # the application layer's per-flow state (core.applayer), once it has data
        f.kill = None
        f.l2 = [None, None]
        f.ttl = [None, None]
        f.reasm = False
        f.synack_pending = None
        f.split = False
        f.rst_prev = None
        f.rst_by = None
        f.rst_exact = False
        f.rst_talk = 0
        f.midstream = False
        f.ended = False
        f.timeout = self._timeouts.get(proto, self._default_timeouts)[0]
        self._file(f)
        flows[key] = f
        c = self.c
        c["flows"] += 1
        c["tcp" if proto == PROTO_TCP else "udp" if proto == PROTO_UDP
          else "icmp" if proto in (PROTO_ICMP, PROTO_ICMPV6) else "other"] += 1
        return f

    def _reuse(self, old: Flow, key, pkt, fwd, sp, dp, events) -> Flow:
        """A new SYN on a finished session: the old flow ends, a new one starts."""
        del self.flows[key]
        self._end(old, "tcp_reuse")
        self.c["tcp_reuse"] += 1
        events.append(FlowEnded(pkt.ts, old, "tcp_reuse"))
        return self._new_flow(key, pkt, fwd, sp, dp, events)

    def _swap(self, f: Flow) -> None:
        """The other side turned out to be the client: swap every per-direction field."""
        self.c["role_swaps"] += 1
        f.lo_client = not f.lo_client
        f.client, f.server, f.cport, f.sport = f.server, f.client, f.sport, f.cport
        for name in ("pkts", "bytes", "l2", "ttl", "next_seq", "last_ack", "win", "isn", "wscale", "fin_seq", "streams"):
            v = getattr(f, name)
            v.reverse()
        f.tcp_flags_ts, f.tcp_flags_tc = f.tcp_flags_tc, f.tcp_flags_ts
        if f.rst_by is not None:
            f.rst_by = 1 - f.rst_by
        if self.on_swap is not None:
            self.on_swap(f)

    # -- time ---------------------------------------------------------------
    def _file(self, f: Flow) -> None:
        k = math.ceil(f.last_ts + f.timeout)
        f.bucket = k
        b = self._wheel.get(k)
        if b is None:
            self._wheel[k] = [f]
            heapq.heappush(self._wheel_keys, k)
        else:
            b.append(f)

    def expire(self, now: float) -> list:
        """Flows whose deadline passed by packet time ``now``, removed (reason 'timeout')."""
        out = []
        keys = self._wheel_keys
        wheel = self._wheel
        while keys and keys[0] <= now:
            k = heapq.heappop(keys)
            for f in wheel.pop(k, ()):
                if f.ended or f.bucket != k:
                    continue
                if f.last_ts + f.timeout <= now:
                    self.flows.pop(f.key, None)
                    self._end(f, "timeout")
                    self.c["timeout"] += 1
                    out.append(f)
                else:
                    self._file(f)
        return out

    def flush_all(self) -> list:
        """End of capture: every flow, removed (reason 'shutdown')."""
        out = list(self.flows.values())
        self.flows.clear()
        for f in out:
            self._end(f, "shutdown")
        self._wheel.clear()
        self._wheel_keys.clear()
        return out

    def _end(self, f: Flow, reason: str) -> None:
        """A flow leaves the table: its streams deliver everything they hold."""
        f.ended = True
        f.end_reason = reason
        for s in f.streams:
            if s is not None:
                s.flush()
                s.detach()
        if f.proto == PROTO_TCP and not f.reasm:
            self.c["not_reassembled"] += 1

    def counters(self) -> dict:
        c = dict(self.c)
        c["active"] = len(self.flows)
        c["reassembly"] = dict(self.reasm.stats, ooo_bytes_held=self.reasm.ooo_bytes)
        return c
