"""Detection: compiled rules judged against packets and reassembled TCP streams.

Theory of operation
-------------------
``Detector(ruleset, settings)`` sorts the rules in Suricata's order (action,
flowbits set-before-read, flowint likewise, hostbits and xbits, priority, load order) and files
them in its tables (``plan``, ``build``); a rule's position is its number, and alerts on one packet
come out in that order.  Every rule is compiled once (``compile.CRule``) to make
the plan, which the rule-set cache keeps; the detector itself compiles a rule
the first time it is a candidate (``crule``).

A flow's detect state (``flow.det``, a ``state.FlowDet``) is attached when the
flow first needs it (``Detector.attach``): its first stream, a transaction, the
session established (``flow:established`` must hold after it closes), a rule
that left flowbits, flowints, a per-flow threshold or a pass in it.  A bare SYN, a scan
probe or a one-packet UDP session is judged without one and costs its flow
record only.

Per packet, candidates are gathered cheaply, then judged in rule order:

- IP-only rules (addresses/ports only) on the first packet of each flow
  direction, found through an address index (``groups.AddrIndex``); those
  with a negated address are judged on every packet, as Suricata's
  like-ip-only rules;
- rules without a prefilter literal, by TCP flags / ICMP type value tables
  and dicts keyed by protocol and port;
- rules whose fast-pattern literal occurs in the packet payload: one
  hyperscan block scan per packet with payload, one database per transport
  and direction, as Suricata's toserver/toclient signature groups (for a TCP
  packet whose data went into a stream, only the rules that also inspect
  single packets); each literal wakes only the rules of the packet's ports;
- for TCP, rules whose literal occurs in newly inspectable stream data: one
  hyperscan stream per direction (``hsdb.LiteralStream``), with the literals
  of the rules that can match in that direction, scans each stream byte once,
  when it becomes inspectable, and remembers where each literal last ended,
  so a literal split across segments is found and a window reaching back
  knows the literals in its old bytes.

Stream data is inspected the way Suricata does in IDS mode: bytes become
inspectable once settled (ACKed, see ``reassembly``) and are inspected in
chunks (``stream.reassembly.toserver-chunk-size``), at once when the session
is closing or the depth is reached, and what is left when the flow ends (the
alert then carries ``kind = 'flow-timeout'``).  Each chunk is verified on its
own (copied out of the stream buffer only when a rule is to be verified on
it); bytes a gap would discard are kept by a reassembly observer and inspected
as a separate piece (the hyperscan stream starts over after a gap).  With
``stream.inline`` new in-order bytes are inspected on the packet that brought them, in a window of
one chunk reaching back (Suricata's inline window).  A stream match counts
once: a rule alerts again only for a match ending past the bytes it already
alerted on, whether that alert came from the stream or from the packet that
carried them.  A packet whose data went into a stream is not inspected on its
own by stream-only rules (Suricata's PKT_STREAM_ADD rule).

A candidate is verified with header/flow checks first, flowbits and flowint conditions,
then ``payload``'s compiled matcher; flowbits, flowint and xbits writes happen at match
time (later rules see them); then noalert, threshold/detection_filter, at most one alert
per sid per packet and ``detect.packet-alert-max``.  A pass rule stops the
packet's remaining rules, and silences the flow when it is ip-only or
matched stream data.  Packets with a bad checksum are not inspected.
"""

from __future__ import annotations

import cython

from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.detect.build import BuildMixin
from mirrorwatch.core.detect.decode_event import EventMixin
from mirrorwatch.core.detect.hsdb import BlockScanner
from mirrorwatch.core.detect.flowint import FlowInts
from mirrorwatch.core.detect.judge import Judging, judge_all
from mirrorwatch.core.detect.plan import ADDED, TCP, UDP
from mirrorwatch.core.detect.state import FlowDet, HeaderTable
from mirrorwatch.core.detect.stream import (
    CLOSING,
    StreamMixin,
    data_added,
    expand,
    release,
    stream_chunk,
)
from mirrorwatch.core.detect.tables import PacketTables, header_table
from mirrorwatch.core.detect.threshold import Thresholds
from mirrorwatch.core.detect.tx import TxMixin
from mirrorwatch.core.flows.flow import Flow
from mirrorwatch.core.reassembly.stream import Stream
from mirrorwatch.core.detect.xbits import XbitStore

EMPTY: frozenset = frozenset()  # no packet candidates (a flow-end inspection)


class Detector(BuildMixin, StreamMixin, TxMixin, EventMixin):
    """All rules of one rule set; ``inspect`` per packet, ``flow_end`` per session.

    ``previous`` is the Detector this one replaces on a rule reload (its
    threshold counters carry over).  Rules detect cannot judge faithfully are
    listed in ``skipped`` as (rule, reason) once it is built.  ``crules[num]``:
    rule number ``num`` compiled, or None until ``crule(num)`` first compiles it.  ``tables``:
    what the per-packet steps read, typed (``tables.PacketTables``), made once it is built;
    ``judging``: what judging reads and counts, typed (``judge.Judging``).
    """

    def __init__(self, ruleset, settings, previous=None):
        self.settings = settings
        self.alert_max = settings["detect.packet-alert-max"]
        self.guess_tx = settings["detect.guess-applayer-tx"]
        self.guess_limit = settings["detect.stream-tx-log-limit"]
        self.inline = bool(settings["stream.inline"])
        self.chunk = (settings.get("stream.reassembly.toserver-chunk-size", 2560),
                      settings.get("stream.reassembly.toclient-chunk-size", 2560))
        self.thresholds = Thresholds(settings.get("detect.threshold-entries", 100_000))
        self.xbits = XbitStore(settings)
        self.flowints = FlowInts(settings)
        self.skipped: list[tuple[object, str]] = []
        # candidates, alerts, alerts_dropped_max, passed_flows and tx_inspected are counted by
        # ``judging`` (and suppressed by ``thresholds``): their values here are their places in the stats
        self.c = dict.fromkeys(("packets", "inspected", "csum_skipped", "scans", "stream_scans",
                                "stream_bytes", "stream_lost_bytes", "candidates", "alerts",
                                "alerts_dropped_max", "suppressed", "passed_flows", "errors",
                                "tx_scans", "tx_inspected"), 0)
        self.last_error: str | None = None
        self.recursion_limit = settings.get("detect.inspection-recursion-limit", 3000)
        rules = ruleset.rules if hasattr(ruleset, "rules") else list(ruleset)
        # the rule cache a loaded rule set brings (``rules.ruleset_cache``): hyperscan databases
        # are looked up there before they are compiled
        self.mpm_cache = getattr(ruleset, "mpm_cache", None)
        self._build(rules, getattr(ruleset, "plan_cache", None))
        self.tables = PacketTables(self)  # what the per-packet steps read, typed
        if previous is not None:
            # threshold counters and host / IP pair bits outlive a reload, as Suricata's host table does
            self.thresholds = previous.thresholds
            self.xbits = previous.xbits
            self.flowints = previous.flowints  # the values live in the flows; its count goes on
        self.judging = Judging(self)

    # -- compilation ----------------------------------------------------------

    # -- per packet -------------------------------------------------------------
    def inspect(self, pkt, flow, to_server) -> list:
        """Alerts for one decoded packet (after flows/reassembly have seen it).

        Never raises: an internal error on one packet is counted
        (``errors``, ``last_error``) and that packet yields no alert.
        """
        try:
            return self.inspect_unguarded(pkt, flow, to_server)
        except Exception as e:  # noqa: BLE001 - the core must go on with the next packet
            self.count_error(e, pkt)
            return []

    def count_error(self, e: Exception, pkt) -> None:
        """An internal error while inspecting ``pkt``: counted, the last one kept as text."""
        self.c["errors"] += 1
        self.last_error = f"packet {getattr(pkt, 'pcap_cnt', '?')}: {type(e).__name__}: {e}"

    @cython.locals(pkt=Packet, flow=Flow, st=Stream, fd=FlowDet, proto=cython.int, v=cython.int, first=cython.bint,
                   d=cython.int, dp=cython.int, sp=cython.int, fin=cython.longlong, avail=cython.longlong, c=dict,
                   blk=tuple, gate=tuple, scanner=BlockScanner, hits=list, t=PacketTables, chunk_d=cython.longlong)
    def inspect_unguarded(self, pkt, flow, to_server) -> list:
        """``inspect`` without its guard: may raise.  For a caller that guards every packet
        itself (``Engine.process``: one Python call less per packet)."""
        t = self.tables
        c = t.c
        c["packets"] += 1
        if pkt.csum_ok is False:
            c["csum_skipped"] += 1
            if flow is not None and flow.det is None:  # its direction's first judged packet is still to come
                self.attach(flow, FlowDet(), 0 if to_server else 1, pkt.dport, pkt.sport, False)
            return []
        if not pkt.ipv:  # a frame that failed below the IP layer: only the decode-event rules apply
            return self.inspect_no_ip(pkt)
        proto = pkt.proto
        # rules decided by header values alone (protocol, TCP flags / ICMP type, ports): per
        # (protocol, ports) a shared table of header value -> candidates, which a flow keeps per
        # direction (its ports do not change); the direction's first packet also gets the
        # ip-only rules
        v = pkt.flags if proto == TCP else (pkt.icmp_type if proto == 1 or proto == 58 else 0)
        first = False
        if flow is not None:
            d = 0 if to_server else 1
            fd = flow.det
            if flow.action is not None:  # an exception policy passed the flow: no rule inspects it any more
                if fd is not None and proto == TCP:
                    release(flow)
                return []
            if fd is None and (flow.app is not None and flow.app.parser is not None
                               or proto == TCP and flow.state == "established"):
                # transactions, or an established session (flow:established must still hold
                # once it closes): the flow gets its detect state now (a stream got it already)
                fd = self.attach(flow, FlowDet(), d, pkt.dport, pkt.sport, False)
        else:
            fd = None
            d = 0
        if fd is None:
            # no detect state (a bare SYN, a scan probe, no flow): the header table is looked up;
            # a direction's first packet is its first counted one (see ``attach``)
            table = header_table(t, proto, pkt.dport, pkt.sport)
            first = flow is None or flow.pkts[d] == 1
        else:
            if fd.passed:
                if proto == TCP:
                    release(flow)
                return []
            fd.est = fd.est_after
            if flow.state == "established":
                fd.est_after = True
            table = fd.hdr1 if d else fd.hdr0
            if table is None:
                table = header_table(t, proto, pkt.dport, pkt.sport)
                if d:
                    fd.hdr1 = table
                else:
                    fd.hdr0 = table
                first = True
        static = table.get(v)
        if static is None:
            static = self._static_cands(table, v)
        pc = None  # rules to judge on this packet: ``static``, or a set once more are added
        if first:
            pc = set(static)
            pc.update(t.iponly[proto if proto == TCP or proto == UDP else 0])
            if t.ipo_src is not None:
                pc.update(t.ipo_src.lookup(pkt.src))
            if t.ipo_dst is not None:
                pc.update(t.ipo_dst.lookup(pkt.dst))
        payload = pkt.payload
        if payload:
            if proto == TCP:
                blk = t.blk_tcp[d]
                if t.added_differs and fd is not None and data_added(flow, d, pkt):
                    blk = t.blk_added[d]  # the stream rules see these bytes in the stream
            else:
                blk = (t.blk_udp if proto == UDP else t.blk_other)[d]
            if blk is not None:
                dp = pkt.dport
                sp = pkt.sport
                gate = blk[2]
                if gate is None or dp in gate[0] or sp in gate[1]:
                    c["scans"] += 1
                    scanner = blk[0]
                    hits = scanner.scan(payload)
                    if hits:
                        if pc is None:
                            pc = set(static)
                        expand(hits, blk[1], dp, sp, pc.update)
        if pc is None:
            pc = static
        if pkt.events:  # the decode-event rules, filed by event (``decode_event``)
            pc = pc | self.event_cands(pkt.events)
        chunk = None
        sc: set | None = None  # rules to judge on the stream bytes inspected now
        if proto == TCP and fd is not None:
            if t.has_stream:
                st = flow.streams[d]
                # cheap pre-check (a superset of stream_chunk's triggers) before the call
                if st is not None:
                    fin = st.final if st.final < st.end else st.end
                    avail = fin - fd.prog[d]
                    chunk_d = t.chunk[d]
                    if not (t.inline or fd.held is not None or avail >= chunk_d
                            or avail > 0 and (st.depth_reached or flow.tcp_state in CLOSING)):
                        st = None
                if st is not None:
                    sc = set()
                    chunk = stream_chunk(t, fd, st, d, flow, sc, False)
            else:
                release(flow)
        tc = self._tx_cands(flow, fd, d) if t.has_tx and fd is not None and flow.app is not None else None
        if not pc and not sc and not tc:
            return []
        c["inspected"] += 1
        if fd is None and flow is not None:
            # judged with scratch state, which the flow keeps only if a rule left some in it
            fd = FlowDet()
            alerts = judge_all(self.judging, pc, sc, pkt, flow, fd, d, to_server, chunk, False, tc)
            if (fd.passed or fd.bits is not None or fd.ints is not None or fd.thr is not None
                    or fd.alerted_upto is not None):
                self.attach(flow, fd, d, pkt.dport, pkt.sport, True)
            return alerts
        return judge_all(self.judging, pc, sc, pkt, flow, fd, d, to_server, chunk, False, tc)

    @cython.locals(flow=Flow, fd=FlowDet, d=cython.int, dport=cython.int, sport=cython.int, judged=cython.bint,
                   t=PacketTables)
    def attach(self, flow, fd, d: int, dport: int, sport: int, judged: bool) -> FlowDet:
        """Give ``flow`` its detect state ``fd`` when it first needs one (a stream, a transaction,
        an established session, a rule that left state), not on its first packet.

        Until then every packet of the flow was judged (a bad checksum attaches at once),
        so a direction's first packet is its first counted one; here each direction whose
        first packet was judged gets its header table, so it is not taken for its first
        again.  ``dport``/``sport``: the ports of direction ``d``'s packets; ``judged``:
        the packet being processed (direction ``d``) was judged already.
        """
        proto = flow.proto
        t = self.tables
        if flow.pkts[d] > (0 if judged else 1):
            table = header_table(t, proto, dport, sport)
            if d:
                fd.hdr1 = table
            else:
                fd.hdr0 = table
        if flow.pkts[1 - d]:
            table = header_table(t, proto, sport, dport)
            if d:
                fd.hdr0 = table
            else:
                fd.hdr1 = table
        flow.det = fd
        return fd

    def _static_cands(self, table: dict, v: int) -> frozenset:
        """Rules a packet is a candidate for whatever its payload, by its header value ``v``
        (TCP flags or ICMP type) and the protocol and ports ``table`` is for; kept in ``table``."""
        proto, dport, sport = table.key
        out = set(self.pkt_always.get(proto, self.pkt_any_ip))
        if proto == TCP:
            if self.flags_tbl is not None:
                expand((v,), self.flags_tbl, dport, sport, out.update)
        elif (proto == 1 or proto == 58) and self.itype_tbl is not None and 0 <= v < 256:
            out.update(self.itype_tbl[v])
        ports = self.port_idx.get(proto)
        if ports is not None:
            out.update(ports[0].get(dport, ()))
            out.update(ports[1].get(sport, ()))
        r = table[v] = frozenset(out)
        return r

    # -- stream data ----------------------------------------------------------



    # -- judging ----------------------------------------------------------------
    def inspect_no_ip(self, pkt) -> list:
        """Alerts for a packet without an IP layer: only the decode-event rules apply (no flow)."""
        pc = self.event_cands(pkt.events) if pkt.events else EMPTY
        if not pc:
            return []
        self.c["inspected"] += 1
        return judge_all(self.judging, pc, None, pkt, None, None, 0, None, None, False, None)

    # -- flow end / shutdown ----------------------------------------------------
    @staticmethod
    def holds_state(flow) -> bool:
        """The session carries state later packets' rules may need (flowbits or flowints set,
        per-flow threshold counters): the flow table ends it last when it must make room."""
        fd = flow.det
        return fd is not None and bool(fd.bits or fd.ints or fd.thr)

    def flow_end(self, flow, events: list) -> None:
        """A session is leaving the table: inspect what its streams still hold, release state.
        A session no longer inspected (killed: ``Flow.no_inspection``; passed by an exception policy:
        ``Flow.action``) only releases it."""
        fd = flow.det
        if fd is None:
            return
        try:
            if flow.no_inspection or flow.action is not None:  # killed, or an exception policy passed it
                return
            if not fd.passed and flow.proto == TCP and self.has_stream and getattr(flow, "streams", None):
                for d in (0, 1):
                    st = flow.streams[d]
                    if st is None:
                        continue
                    cands: set = set()
                    chunk = stream_chunk(self.tables, fd, st, d, flow, cands, True)
                    if chunk is None or not cands:
                        continue
                    pkt = _pseudo_packet(flow, d)
                    events.extend(judge_all(self.judging, EMPTY, cands, pkt, flow, fd, d, d == 0, chunk, True, None))
            if not fd.passed and self.has_tx and flow.app is not None:
                for d in (0, 1):  # transactions still pending a direction's inspection
                    tc = self._tx_cands(flow, fd, d)
                    if tc:
                        pkt = _pseudo_packet(flow, d)
                        events.extend(judge_all(self.judging, EMPTY, None, pkt, flow, fd, d, d == 0, None, True, tc))
        except Exception as e:  # noqa: BLE001 - never let one session stop the engine
            self.count_error(e, flow)
        finally:
            if fd.thr:
                self.thresholds.release(fd.thr)
            fd.close()

    def counters(self) -> dict:
        out = dict(self.c)
        out.update(self.judging.counters())
        out.update(self.thresholds.counters())
        out.update(self.xbits.counters())
        out.update(self.flowints.counters())
        out["rules"] = len(self.crules)
        out["rules_skipped"] = len(self.skipped)
        out["patterns"] = self.patterns + self.tx_patterns
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def _pseudo_packet(flow, d: int) -> Packet:
    """Suricata's flow-end pseudo packet for direction d: no frame, pcap_cnt 0."""
    p = Packet(flow.last_ts, 0)
    p.ipv = flow.ipv
    p.proto = flow.proto
    p.vlan_id = flow.vlan_id
    if d == 0:
        p.src, p.dst, p.sport, p.dport = flow.client, flow.server, flow.cport, flow.sport
    else:
        p.src, p.dst, p.sport, p.dport = flow.server, flow.client, flow.sport, flow.cport
    l2 = getattr(flow, "l2", None)
    if l2 and l2[d]:
        p.src_mac, p.dst_mac, p.vlans = l2[d]
    return p
