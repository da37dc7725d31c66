"""Sessions: the bidirectional flow table.

Theory of operation
-------------------
Every decoded packet belongs to one ``Flow`` (``flow.py``).  The table key is
the 5-tuple plus the VLAN ids, normalised so both directions produce the same
key (the lower (address, port) endpoint first), packed in parts that hash and
compare cheaply: both addresses, protocol and both ports as one bytes
(``flow_key``), paired with the VLAN ids for a tagged packet (an untagged one's
key is that bytes: a VLAN part would cost every lookup a tuple to build, hash
and compare, and a bytes never equals a pair).  One dict lookup per packet.
The flow remembers whether that lower endpoint is the client, so the
direction of a packet is one comparison.

Who is the client: the sender of a SYN; the receiver of a SYN-ACK seen
first; otherwise the side with the less well-known port (well-known < 1024 <
registered < 32768 <= ephemeral), or, for equal classes, the first sender.
A SYN arriving later on a handshake-less flow re-decides (the flow swaps).

TCP state, windows and when a direction is reassembled: ``tcp.py``.  Packets
with a bad checksum (``pkt.csum_ok is False``) are counted and otherwise
ignored, like Suricata: the receiver dropped them.  UDP/ICMP/other flows are
new until the reverse direction answers, then established.

Time is packet time.  A flow is due at last activity + the
``flow-timeouts.<proto>.<new|established|closed>`` of its state (the
``emergency-*`` ones in emergency mode).  Flows are filed in one-second
buckets of a timing wheel (``wheel.py``) by the deadline they had when filed
(refiled at once only when they become due sooner); ``expire(now)`` pops the
due buckets and refiles the flows that were active since, so a packet costs
no timer work.  A flow that leaves the table leaves the wheel at once.

The table is a dict; ``order`` (``caps.ActivityOrder``) keeps its sessions
from the least to the most recently active.  Its caps
(``flow.max-sessions``, ``flow.memcap``), what a new session does when it
finds them reached (emergency mode, the least valuable session ended with
reason ``forced``): ``caps.py``.  A new SYN (no ACK) on a finished session
(last_ack, time_wait, closed) or on one mirrorwatch killed, with another ISN,
ends the old flow (reason ``tcp_reuse``, as Suricata's TCP port reuse) and
starts a new one.  A killed session (``flow.killed``; not in dry-run, where it
goes on) waits the ``flow-timeouts.tcp.closed`` timeout.

Target-based reassembly (Suricata's ``host-os-policy``): a stream's overlap
policy is the receiving host's, looked up once when the stream starts; hosts
not listed use ``stream.reassembly.policy``.
"""

from __future__ import annotations

import zlib

import cython

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, RST, SYN, Packet
from mirrorwatch.core.events import FlowEnded
from mirrorwatch.core.flows.caps import (
    FLOW_BYTES_OTHER,
    FLOW_BYTES_TCP,
    STREAM_BYTES,
    ActivityOrder,
    Capacity,
    idle_timeout,
    refile,
    set_tclass,
)
from mirrorwatch.core.flows.flow import T_CLOSED, T_ESTABLISHED, T_NEW, Flow, really_killed
from mirrorwatch.core.flows.tcp import (  # noqa: F401 - FLOW_STATE, TCP_TRANSITIONS: the table's public names
    EV_DATA_OUT_OF_WINDOW,
    EV_FIN_OUT_OF_WINDOW,
    FLOW_STATE,
    REUSABLE,
    TCP_TRANSITIONS,
    exception_mode,
    in_window,
    seq_ahead,
    tcp_packet,
)
from mirrorwatch.core.flows.wheel import TimingWheel
from mirrorwatch.core.reassembly.context import M32, ReassemblyContext
from mirrorwatch.core.reassembly.policy import HostOsPolicy
from mirrorwatch.core.reassembly.stream import Stream

_NONE2 = (None, None)
_ZERO2 = (0, 0)
_SYN_ACK_RST = SYN | ACK | RST  # flag masks named once: the compiler does not fold names
_SYN_FIN_RST = SYN | FIN | RST
_ICMP_REQUESTS = frozenset((8, 13, 15, 17, 128))  # echo/timestamp/info/mask requests, ICMPv6 echo
_ICMP_REPLIES = frozenset((0, 14, 16, 18, 129))
RECLAIM_FREE = 10  # percent of stream.reassembly.memcap a reclaim frees
KEY_ALEN_MAX = 16  # the longest address (IPv6) a flow key is built from in C (table.pxd)
KEY_PORT_BYTES = 5  # protocol and both ports in a flow key


def flow_key(lo: bytes, hi: bytes, ports: int) -> bytes:
    """A session's key without its VLAN ids: the lower endpoint's address, the other's, then
    protocol and ports (``ports``, 40 bits, least significant byte first) as one bytes (it hashes and
    compares cheaper than a tuple of the parts; IPv4 and IPv6 keys differ in length).  Compiled:
    made in C."""
    n = len(lo)
    if cython.compiled and n <= KEY_ALEN_MAX and len(hi) == n:
        return _key_bytes(lo, hi, n, ports)  # noqa: F821 - table.pxd's inline C, the compiled build's only
    return lo + hi + ports.to_bytes(KEY_PORT_BYTES, "little")


def _port_rank(p: int) -> int:
    return 0 if p < 1024 else (1 if p < 32768 else 2)


def _sender_is_client(pkt, sp: int, dp: int) -> bool:
    """Who is the client (module docstring), from the session's first packet."""
    proto = pkt.proto
    if proto == PROTO_TCP and pkt.flags & (SYN | RST) == SYN:
        return not pkt.flags & ACK
    if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        return pkt.icmp_type in _ICMP_REQUESTS or pkt.icmp_type not in _ICMP_REPLIES
    return _port_rank(sp) >= _port_rank(dp)


def established(ft, f: Flow, pkt, d: int, fl: int) -> None:
    """An established session's plain ACK or data (most packets): no state change."""
    seq = pkt.seq
    payload = pkt.payload
    n = len(payload)
    streams = f.streams
    if n:
        f.seg_len[d] = n
        st = streams[d]
        if st is None or seq != st.nxt:  # not the next in-order bytes: within the window?
            if not in_window(f, d, seq, n):
                ft.stream_events[EV_DATA_OUT_OF_WINDOW] += 1
                return
            if st is None:
                st = streams[d] = ft._stream(f, d, seq)
        if st is not None:  # (a subclass may reassemble nothing: bench/flows_reassembly.py)
            st.add(seq, payload)
    f.win[d] = pkt.win
    end = (seq + n) & M32
    if seq_ahead(end, f.next_seq[d]):
        f.next_seq[d] = end
    if fl & ACK:
        ack = f.last_ack[d] = pkt.ack
        st = streams[1 - d]
        if st is not None:
            if not st.peer_visible:
                st.peer_seen()
            st.ack(ack)


class FlowTable(Capacity):
    """The session table; ``process`` is the per-packet entry point (see module docstring)."""

    def __init__(self, settings):
        self.flows: dict = {}
        self.order = ActivityOrder()  # the sessions, least recently active first
        self.midstream = settings["stream.midstream"]
        self.async_oneside = settings["stream.async-oneside"]
        exception_mode(self, settings, False)  # IDS until the engine says inline (Engine: exception_mode)
        self.c = dict.fromkeys(
            ("flows", "tcp", "udp", "icmp", "other", "evicted", "timeout", "tcp_reuse", "csum_bad_pkts",
             "midstream_pickups", "not_reassembled", "rst_accepted", "rst_in_window", "rst_out_of_window",
             "rst_resumed", "role_swaps", "async_oneside", "max_sessions", "memcap", "get_used_eval",
             "get_used_eval_reject", "emerg_mode_entered", "emerg_mode_over"), 0)
        self.stream_events = dict.fromkeys((EV_DATA_OUT_OF_WINDOW, EV_FIN_OUT_OF_WINDOW), 0)
        self._init_caps(settings)
        self.reasm = ReassemblyContext(settings)
        self.reasm.reclaim = self._reclaim
        self.host_os = HostOsPolicy.from_settings(settings)
        # ``on_new_stream(flow, direction, stream)``: called when a direction starts being
        # reassembled, e.g. to attach an observer (streamdump); None costs nothing.
        self.on_new_stream = None
        # ``on_swap(flow)``: called after the roles swapped (a later SYN showed the other side is
        # the client), so rooms keeping per-direction state of their own swap it too
        self.on_swap = None
        self.wheel = TimingWheel()
        self._seq = 0  # sessions created: the high bits of the next flow_id

    def count_sessions_from(self, start: int) -> None:
        """The next session is number ``start + 1`` (its flow_id's high bits): a worker of several counts
        in a range of its own, so flow ids never collide between workers."""
        self._seq = start

    # -- the per-packet path --------------------------------------------------
    @cython.locals(pkt=Packet, f=Flow, proto=cython.int, sp=cython.int, dp=cython.int, fwd=cython.bint,
                   d=cython.int, fl=cython.int, ts=cython.double, flows=dict, order=ActivityOrder,
                   ports=cython.longlong)
    def process(self, pkt, events: list):
        """Find or create the packet's flow, update it; returns (flow, to_server)."""
        proto = pkt.proto
        src = pkt.src
        dst = pkt.dst
        if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            sp = dp = pkt.icmp_id if pkt.icmp_id >= 0 else 0
        else:
            sp = pkt.sport
            dp = pkt.dport
        ports = proto  # (a 64-bit integer: protocol and both ports are packed in it)
        if src < dst or (src == dst and sp <= dp):
            fwd = True
            ports = ((ports << 16 | sp) << 16) | dp
            key = flow_key(src, dst, ports)
        else:
            fwd = False
            ports = ((ports << 16 | dp) << 16) | sp
            key = flow_key(dst, src, ports)
        vlan = pkt.vlan_id
        if vlan:
            key = (key, vlan)
        flows = self.flows
        f = flows.get(key)
        ts = pkt.ts
        if f is None:
            f = self._new_flow(key, pkt, fwd, sp, dp, events)
        else:
            order = self.order
            order.touch(f)
            if proto == PROTO_TCP and pkt.flags & _SYN_ACK_RST == SYN \
                    and (f.tcp_state in REUSABLE or really_killed(f)) \
                    and pkt.seq != f.isn[0] and pkt.csum_ok is not False:
                f = self._reuse(f, key, pkt, fwd, sp, dp, events)
        d = 0 if fwd == f.lo_client else 1
        f.pkts[d] += 1
        f.bytes[d] += pkt.wirelen  # the frame's length (a tunnelled packet's own, the engine saw to it)
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
                d = tcp_packet(self, f, pkt, d, fl)
            else:
                established(self, f, pkt, d, fl)
        elif pkt.csum_ok is False:
            self.c["csum_bad_pkts"] += 1
        elif f.state == "new" and f.pkts[1 - d]:
            f.state = "established"
            set_tclass(self, f, T_ESTABLISHED)
        f.ttl[d] = pkt.ttl
        f.l2[d] = (pkt.src_mac, pkt.dst_mac, pkt.vlans)
        return f, d == 0

    # -- streams ----------------------------------------------------------------
    @cython.locals(f=Flow, s=Stream)
    def _stream(self, f: Flow, d: int, seq: int) -> Stream:
        """Direction d's stream, made when its first data arrives: it starts where the handshake
        said (``f.sseq``), else at ``seq``; what the receiver already acknowledged is applied.  None for a
        session no longer inspected (``Flow.stop_inspection``)."""
        if f.no_inspection:
            return None
        start = f.sseq[d]
        policy = self.host_os.lookup(f.server if d == 0 else f.client) if self.host_os else None
        s = Stream(self.reasm, seq if start is None else start, f.pkts[1 - d] == 0, policy)
        self.memuse += STREAM_BYTES
        if self.on_new_stream is not None:
            self.on_new_stream(f, d, s)
        ack = f.last_ack[1 - d]
        if ack is not None and f.pkts[1 - d]:
            s.ack(ack)
        return s

    def stop_streams(self, f: Flow) -> None:
        """``f`` is no longer inspected (``Flow.stop_inspection``): its streams deliver what they hold (their
        observers see the end) and go."""
        if f.proto == PROTO_TCP:
            for d in (0, 1):
                if f.streams[d] is not None:
                    f.streams[d].flush()
                    self._drop_stream(f, d)

    def _drop_stream(self, f: Flow, d: int) -> None:
        f.streams[d].detach()
        f.streams[d] = None
        self.memuse -= STREAM_BYTES

    def _reclaim(self) -> None:
        """Over ``stream.reassembly.memcap``: the least recently active sessions give up their
        buffered stream bytes (settled first, so observers still get them), then the oldest
        out-of-order data goes (``ReassemblyContext.shed_ooo``), until 10% is free: a reclaim
        walks the table at most once and is not needed again before 10% of the memcap came in."""
        r = self.reasm
        target = r.memcap - r.memcap * RECLAIM_FREE // 100
        freed = 0
        for f in self.order:  # least recently active first
            if r.buf_bytes + r.ooo_bytes <= target or not r.buf_bytes:
                break
            for s in f.streams:
                if s is not None and s.buf:
                    freed += s.release()
        r.stats["memcap_reclaims"] += 1
        r.stats["memcap_released_bytes"] += freed
        if r.buf_bytes + r.ooo_bytes > target:
            r.shed_ooo(target)

    # -- timeouts ---------------------------------------------------------------
    def timeout_of(self, f: Flow) -> float:
        """Seconds ``f`` may stay idle now (its protocol, state, and whether in emergency mode)."""
        return idle_timeout(self, f)

    def _refile(self, f: Flow) -> None:
        refile(self, f)

    def _on_kill(self, f: Flow) -> None:
        """A killed TCP session is over for its endpoints: it waits the closed timeout."""
        if f.proto == PROTO_TCP and not f.ended and really_killed(f):
            set_tclass(self, f, T_CLOSED)

    # -- creation, reuse, roles ---------------------------------------------
    @cython.locals(pkt=Packet, f=Flow, proto=cython.int, tcp=cython.bint, cost=cython.int, wheel=TimingWheel,
                   order=ActivityOrder, flows=dict, c=dict)
    def _new_flow(self, key, pkt, fwd: bool, sp: int, dp: int, events: list) -> Flow:
        proto = pkt.proto
        tcp = proto == PROTO_TCP
        cost = FLOW_BYTES_TCP if tcp else FLOW_BYTES_OTHER
        flows = self.flows
        if len(flows) >= self.max_sessions or self.memuse + cost > self.memcap:
            self._make_room(cost, pkt.ts, events)
        f = Flow()
        self._seq += 1
        # flow_id (EVE): positive, < 2**53, unique for 2**32 sessions: the counter in the high
        # bits, 21 bits of a hash of the key below (so ids look unrelated, as Suricata's do)
        f.flow_id = ((self._seq & 0xFFFFFFFF) << 21) | (zlib.crc32(pkt.src + pkt.dst, (sp << 16 | dp) ^ proto) & 0x1FFFFF)
        f.key = key
        f.proto = proto
        f.ipv = pkt.ipv
        f.vlan_id = pkt.vlan_id
        sender_client = _sender_is_client(pkt, sp, dp)
        f.lo_client = fwd == sender_client
        if sender_client:
            f.client, f.server, f.cport, f.sport = pkt.src, pkt.dst, sp, dp
        else:
            f.client, f.server, f.cport, f.sport = pkt.dst, pkt.src, dp, sp
        f.start = f.last_ts = pkt.ts
        f.pkts = [0, 0]
        f.bytes = [0, 0]
        f.l2 = [None, None]
        f.ttl = [None, None]
        f.state = "new"
        if tcp:
            f.tcp_state = "none"
            f.streams = [None, None]
            f.next_seq = [None, None]
            f.last_ack = [None, None]
            f.win = [None, None]
            f.isn = [None, None]
            f.wscale = [None, None]
            f.fin_seq = [None, None]
            f.sseq = [None, None]
            f.seg_len = [0, 0]
        else:  # TCP-only fields: nothing writes them, one shared (None, None) saves ~600 bytes a flow
            f.tcp_state = None
            f.streams = f.next_seq = f.last_ack = f.win = f.isn = f.wscale = f.fin_seq = f.sseq = _NONE2
            f.seg_len = _ZERO2
        f.tcp_flags_ts = f.tcp_flags_tc = 0
        f.alerted = f.reasm = f.split = f.rst_exact = f.midstream = f.ended = f.no_inspection = False
        f._killed = f.end_reason = f.det = f.app = f.kill = None
        f.kill_dry_run = False
        f.synack_pending = f.rst_prev = f.rst_by = f.bucket = None
        f.rst_talk = 0
        f.icmp_type = pkt.icmp_type
        f.icmp_code = pkt.icmp_code
        f.eps = ()
        f.action = None
        f.bypassed = False
        f.table = self
        f.tclass = T_NEW
        wheel = self.wheel
        wheel.file(f, pkt.ts + self._timeouts.get(proto, self._default_timeouts)[T_NEW])
        flows[key] = f
        order = self.order
        order.append(f)
        self._unanswered[f] = None
        self.memuse += cost
        c = self.c
        c["flows"] += 1
        c["tcp" if tcp else "udp" if proto == PROTO_UDP
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
        for v in (f.pkts, f.bytes, f.l2, f.ttl, f.next_seq, f.last_ack, f.win, f.isn, f.wscale, f.fin_seq,
                  f.sseq, f.seg_len, f.streams):
            v.reverse()
        f.tcp_flags_ts, f.tcp_flags_tc = f.tcp_flags_tc, f.tcp_flags_ts
        if f.rst_by is not None:
            f.rst_by = 1 - f.rst_by
        if self.on_swap is not None:
            self.on_swap(f)

    # -- time and the end of sessions -----------------------------------------
    @cython.locals(f=Flow, flows=dict, c=dict)
    def expire(self, now: float) -> list:
        """Flows whose deadline passed by packet time ``now``, removed (reason 'timeout')."""
        out = []
        flows = self.flows
        c = self.c
        for f in self.wheel.pop_due(now):
            if f.last_ts + idle_timeout(self, f) <= now:
                del flows[f.key]
                self._end(f, "timeout")
                c["timeout"] += 1
                out.append(f)
            else:
                self._refile(f)
        self._check_recovery(now)
        return out

    def flush_all(self) -> list:
        """End of capture: every flow, removed (reason 'shutdown')."""
        out = list(self.order)
        self.flows.clear()
        self._unanswered.clear()
        for f in out:
            self._end(f, "shutdown")
        self.wheel.clear()
        return out

    @cython.locals(f=Flow, s=Stream, wheel=TimingWheel, order=ActivityOrder)
    def _end(self, f: Flow, reason: str) -> None:
        """A flow leaves the table (the caller took it out of ``flows``): the wheel and the activity order
        forget it, its streams deliver everything they hold."""
        f.ended = True
        f.end_reason = reason
        wheel = self.wheel
        wheel.unfile(f)
        order = self.order
        order.remove(f)
        self._unanswered.pop(f, None)
        if f.proto == PROTO_TCP:
            self.memuse -= FLOW_BYTES_TCP
            for s in f.streams:  # kept on the flow: detect inspects what they still hold
                if s is not None:
                    s.flush()
                    s.detach()
                    self.memuse -= STREAM_BYTES
            if not f.reasm:
                self.c["not_reassembled"] += 1
        else:
            self.memuse -= FLOW_BYTES_OTHER

    def counters(self) -> dict:
        c = dict(self.c)
        c["active"] = len(self.flows)
        c["memuse"] = self.memuse
        c["emergency"] = self.emergency
        c["stream"] = dict(self.stream_events)
        c["reassembly"] = dict(self.reasm.stats, ooo_bytes_held=self.reasm.ooo_bytes)
        return c
