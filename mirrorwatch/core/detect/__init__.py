"""Detection: compiled rules judged against packets and reassembled TCP streams.

Theory of operation
-------------------
``Detector(ruleset, settings)`` compiles every rule once (``compile.CRule``)
and sorts them in Suricata's order (action, flowbits set-before-read,
priority, load order); a rule's position is its number, and alerts on one
packet come out in that order.

Per packet, candidates are gathered cheaply, then judged in rule order:

- IP-only rules (addresses/ports only) on the first packet of each flow
  direction, found through an address index (``groups.AddrIndex``); those
  with a negated address are judged on every packet, as Suricata's
  like-ip-only rules;
- rules without a prefilter literal, by TCP flags / ICMP type value tables
  and dicts keyed by protocol and port;
- rules whose fast-pattern literal occurs in the packet payload: one
  hyperscan block scan per packet with payload, one database per transport
  (for a TCP packet whose data went into a stream, only the rules that also
  inspect single packets); each literal wakes only the rules of the
  packet's ports;
- for TCP, rules whose literal occurs in newly inspectable stream data: one
  hyperscan stream per direction (``hsdb.LiteralStream``) scans each stream
  byte once, when it becomes inspectable, and remembers where each literal
  last ended, so a literal split across segments is found and a window
  reaching back knows the literals in its old bytes.

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

A candidate is verified with header/flow checks first, flowbits, then
``payload``'s compiled matcher; flowbits writes happen at match time (later
rules see them); then noalert, threshold/detection_filter, at most one alert
per sid per packet and ``detect.packet-alert-max``.  A pass rule stops the
packet's remaining rules, and silences the flow when it is ip-only or
matched stream data.  Packets with a bad checksum are not inspected.
"""

from __future__ import annotations

import hyperscan as hs

from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.detect.compile import (
    CRule,
    Unsupported,
    negated_addresses,
    port_values,
)
from mirrorwatch.core.detect.groups import (
    AddrIndex,
    choose_side,
    port_gate,
    port_split,
    value_table,
)
from mirrorwatch.core.detect.headers import compile_check
from mirrorwatch.core.detect.hsdb import (
    BlockScanner,
    LiteralSet,
    LiteralStream,
    StreamScanner,
)
from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.threshold import Thresholds
from mirrorwatch.core.events import Alert

TCP, UDP = 6, 17
ADDED = -1  # literal set for TCP packets whose data went into a stream
SYN = 0x02
# Suricata inspects raw stream data at once when ssn->state > TCP_TIME_WAIT
_CLOSING = frozenset(("last_ack", "close_wait", "closing", "closed"))


class FlowDet:
    """Detect's per-flow scratch (``flow.det``)."""

    __slots__ = ("hdr0", "hdr1", "bits", "passed", "est", "prog", "held", "gaps", "thr", "alerted_upto",
                 "piece_offs", "lits")

    def __init__(self) -> None:
        self.est = False  # the session has been seen established (stays so while it closes)
        # per direction: Detector's header-value table for the direction's protocol and ports
        # (None until the direction's first packet, which also gets the ip-only inspection)
        self.hdr0: dict | None = None
        self.hdr1: dict | None = None
        self.bits: set | None = None
        self.passed = False
        self.prog = [0, 0]  # stream offset up to which each direction was inspected
        # containers below stay None/empty until used: most sessions never need them
        self.held: list | None = None  # per direction: (offset, bytes, gap after) kept from before a gap
        self.gaps: tuple | list = ()  # gap lengths between the pieces of the current inspection
        self.thr: dict | None = None  # by_flow threshold counters
        # (direction, rule) -> stream offset up to which the rule already alerted
        # (a stream match, or a packet alert on bytes that went into the stream)
        self.alerted_upto: dict | None = None
        self.piece_offs: tuple | list = ()  # stream offset of each piece of the current inspection
        self.lits: list | None = None  # per direction: its hsdb.LiteralStream (stream-mode prefilter)

    def swap(self) -> None:
        """The flows room swapped client and server: every per-direction field follows."""
        self.hdr0, self.hdr1 = self.hdr1, self.hdr0
        self.prog.reverse()
        for per_dir in (self.held, self.lits):
            if per_dir is not None:
                per_dir.reverse()
        if self.alerted_upto:
            self.alerted_upto = {(1 - d, num): upto for (d, num), upto in self.alerted_upto.items()}

    def close(self) -> None:
        """The flow ends: buffers go, hyperscan streams are closed (they hold native state)."""
        self.held = None
        if self.lits is not None:
            for ls in self.lits:
                if ls is not None:
                    ls.close()
            self.lits = None


class _GapKeeper:
    """Reassembly observer: when a gap is declared, saves the not yet inspected
    bytes before it (the stream is about to drop them) for the next inspection."""

    __slots__ = ("fd", "d", "inner", "wants_data")

    def __init__(self, fd: FlowDet, d: int, inner) -> None:
        self.fd, self.d, self.inner = fd, d, inner
        # settled bytes matter only to a wrapped observer: without one the stream makes no
        # ``data`` calls (and keeps its fast paths)
        self.wants_data = inner is not None and getattr(inner, "wants_data", True)

    def data(self, stream, offset: int, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data(stream, offset, data)

    def gap(self, stream, offset: int, length: int) -> None:
        fd, d = self.fd, self.d
        start = fd.prog[d] if fd.prog[d] > stream.buf_base else stream.buf_base
        if stream.end > start:
            if fd.held is None:
                fd.held = [[], []]
            fd.held[d].append((start, bytes(stream.buf[start - stream.buf_base:]), length))
        fd.prog[d] = offset + length
        if self.inner is not None:
            self.inner.gap(stream, offset, length)

    def end(self, stream) -> None:
        if self.inner is not None:
            self.inner.end(stream)


class _HeaderTable(dict):
    """Header value (TCP flags / ICMP type) -> candidate rules, for one (protocol, ports) ``key``."""

    __slots__ = ("key",)


def _transport_class(proto: int) -> int:
    return proto if proto in (TCP, UDP) else 0


class Detector:
    """All rules of one rule set, compiled; ``inspect`` per packet, ``flow_end`` per session.

    ``previous`` is the Detector this one replaces on a rule reload (its
    threshold counters carry over).  Rules detect cannot judge faithfully are
    listed in ``skipped`` as (rule, reason).
    """

    def __init__(self, ruleset, settings, previous=None):
        self.settings = settings
        self.alert_max = settings["detect.packet-alert-max"]
        self.inline = bool(settings["stream.inline"])
        self.chunk = (settings.get("stream.reassembly.toserver-chunk-size", 2560),
                      settings.get("stream.reassembly.toclient-chunk-size", 2560))
        self.thresholds = Thresholds(settings.get("detect.threshold-entries", 100_000))
        self.skipped: list[tuple[object, str]] = []
        self.c = dict.fromkeys(("packets", "inspected", "csum_skipped", "scans", "stream_scans",
                                "stream_bytes", "stream_lost_bytes", "candidates", "alerts",
                                "alerts_dropped_max", "suppressed", "passed_flows", "errors"), 0)
        self.last_error: str | None = None
        self.recursion_limit = settings.get("detect.inspection-recursion-limit", 3000)
        self.pcre_timeout = settings.get("detect.pcre-timeout", 0.1)
        self._match_end = 0  # stream offset where the last stream match ended (set by _judge)
        self._matchers: dict[int, object] = {}
        self._static: dict[tuple, dict] = {}  # (proto, ports) -> header value -> candidates (``_header_table``)
        rules = ruleset.rules if hasattr(ruleset, "rules") else list(ruleset)
        self._build(rules)
        if previous is not None:
            # threshold/detection_filter counters outlive a reload, as Suricata's host table does
            self.thresholds = previous.thresholds

    # -- compilation ----------------------------------------------------------
    def _build(self, rules) -> None:
        addr_cache: dict = {}
        crules = []
        for idx, rule in enumerate(rules):
            try:
                cr = CRule(rule, addr_cache)
                cr.hdr = [compile_check(h) for h in cr.hdr]
                if cr.kind == "iponly" and negated_addresses(rule, self.settings.address_groups):
                    # Suricata's SIG_TYPE_LIKE_IPONLY: judged on every packet, not once per direction
                    cr.kind = "pkt"
            except Unsupported as e:
                self.skipped.append((rule, str(e)))
                continue
            cr.order = cr.order + (idx,)
            crules.append(cr)
        crules.sort(key=lambda c: c.order)
        for i, cr in enumerate(crules):
            cr.num = i
        self.crules = crules

        # IP-only rules per transport; rules without literal per protocol and port
        pkt_any: dict[int | None, list] = {}
        port_idx: dict[int, tuple[dict, dict]] = {}  # proto -> ({dst port: rules}, {src port: rules})
        stream_nompm: list[int] = []
        # per transport class; ADDED: TCP packets whose data went into a stream, where
        # only rules that also inspect single packets (depth/offset, dsize...) apply
        pkt_lits = {0: LiteralSet(), TCP: LiteralSet(), UDP: LiteralSet(), ADDED: LiteralSet()}
        stream_lits = LiteralSet()
        iponly: dict[int, list] = {0: [], TCP: [], UDP: []}
        ipo_src, ipo_dst = AddrIndex(), AddrIndex()
        flag_tests: list = []
        itype_tests: list = []
        port_keys: dict[int, tuple] = {}
        for cr in crules:
            classes = (0, TCP, UDP) if cr.protos is None else sorted({_transport_class(p) for p in cr.protos})
            if cr.kind != "iponly" and not cr.bidir:
                dports = port_values(cr.rule.dport)
                sports = port_values(cr.rule.sport) if dports is None else None
                if dports is not None:
                    port_keys[cr.num] = ("d", dports)
                elif sports is not None:
                    port_keys[cr.num] = ("s", sports)
            if cr.kind == "iponly":
                side = choose_side(cr)
                if side is None:
                    for k in classes:
                        iponly[k].append(cr.num)
                    continue
                aset = cr.rule.src if side == "src" else cr.rule.dst
                (ipo_src if side == "src" else ipo_dst).add(aset, cr.num)
                if cr.bidir:
                    (ipo_dst if side == "src" else ipo_src).add(aset, cr.num)
                continue
            if cr.kind == "mpm":
                lit, nocase = cr.fp
                if not cr.stream_only:
                    for k in classes:
                        pkt_lits[k].add(lit, nocase, cr.num)
                    if cr.req_packet and TCP in classes:
                        pkt_lits[ADDED].add(lit, nocase, cr.num)
                if cr.req_stream:
                    stream_lits.add(lit, nocase, cr.num)
                continue
            # kind 'pkt': judged per packet (and per stream chunk for stream payload rules)
            if cr.matches and cr.req_stream:
                stream_nompm.append(cr.num)
                if cr.stream_only:
                    continue
            if cr.protos == (TCP,) and cr.flags is not None:
                flag_tests.append((cr.num, cr.flags.test))
                continue
            itype = next((h for h in cr.rule.header_checks if h.keyword == "itype"), None)
            if itype is not None and cr.protos is not None and set(cr.protos) <= {1, 58}:
                itype_tests.append((cr.num, itype.test))
                continue
            dports = port_values(cr.rule.dport) if not cr.bidir else None
            sports = port_values(cr.rule.sport) if not cr.bidir else None
            protos = cr.protos
            if protos is None:
                ipp = next((h for h in cr.rule.header_checks if h.keyword == "ip_proto" and h.op == "="), None)
                protos = (ipp.value,) if ipp is not None and isinstance(ipp.value, int) else (None,)
            for p in protos:
                if (dports is not None or sports is not None) and p is not None:
                    by_port = port_idx.setdefault(p, ({}, {}))[0 if dports is not None else 1]
                    for port in dports if dports is not None else sports:
                        by_port.setdefault(port, []).append(cr.num)
                else:
                    pkt_any.setdefault(p, []).append(cr.num)
        self.iponly = {k: tuple(v) for k, v in iponly.items()}
        self.ipo_src = ipo_src.build() or None
        self.ipo_dst = ipo_dst.build() or None
        flags_tbl = value_table(flag_tests)
        # per TCP flags value, the rules split by port like literal hits
        self.flags_tbl = port_split(flags_tbl, port_keys) if flags_tbl is not None else None
        self.itype_tbl = value_table(itype_tests)
        self.pkt_any = {k: tuple(v) for k, v in pkt_any.items()}
        self.pkt_any_ip = self.pkt_any.get(None, ())
        # per packet: rules of its protocol plus 'ip' rules in one tuple; port dicts per protocol
        self.pkt_always = {p: tuple(sorted(set(v) | set(self.pkt_any_ip)))
                           for p, v in self.pkt_any.items() if p is not None}
        self.port_idx = {p: tuple({port: tuple(v) for port, v in m.items()} for m in maps)
                         for p, maps in port_idx.items()}
        # every port a header-decided candidate depends on (``_static_cands``)
        self._dports = frozenset(pt for m in self.port_idx.values() for pt in m[0]) | frozenset(
            pt for e in (self.flags_tbl or ()) if e[1] is not None for pt in e[1])
        self._sports = frozenset(pt for m in self.port_idx.values() for pt in m[1]) | frozenset(
            pt for e in (self.flags_tbl or ()) if e[2] is not None for pt in e[2])
        self.stream_nompm = tuple(stream_nompm)
        self.block: dict[int, tuple] = {}
        for k, ls in pkt_lits.items():
            db = ls.compile(hs.HS_MODE_BLOCK)
            if db is not None:
                split = port_split(ls.rule_tuples(), port_keys)
                self.block[k] = (BlockScanner(db), split, port_gate(split))
            else:
                self.block[k] = None
        # whether a TCP packet whose data went into a stream is scanned with other literals
        self._added_differs = self.block[ADDED] is not self.block[TCP]
        db = stream_lits.compile(hs.HS_MODE_STREAM)
        self.stream_scan = StreamScanner(db) if db is not None else None
        self.stream_rules = port_split(stream_lits.rule_tuples(), port_keys)
        self.stream_gate = port_gate(self.stream_rules)
        self.has_stream = db is not None or bool(self.stream_nompm)
        self.lookback = max((len(lit) for lit, _ in stream_lits.ids), default=1) - 1
        self.patterns = sum(len(ls) for k, ls in pkt_lits.items() if k != ADDED) + len(stream_lits)

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

    def inspect_unguarded(self, pkt, flow, to_server) -> list:
        """``inspect`` without its guard: may raise.  For a caller that guards every packet
        itself (``Engine.process``: one Python call less per packet)."""
        c = self.c
        c["packets"] += 1
        if pkt.csum_ok is False:
            c["csum_skipped"] += 1
            return []
        proto = pkt.proto
        # rules decided by header values alone (protocol, TCP flags / ICMP type, ports): per
        # (protocol, ports) a shared table of header value -> candidates, which a flow keeps per
        # direction (its ports do not change); the direction's first packet also gets the
        # ip-only rules
        v = pkt.flags if proto == TCP else (pkt.icmp_type if proto == 1 or proto == 58 else 0)
        first = False
        if flow is not None:
            fd = flow.det
            if fd is None:
                fd = flow.det = FlowDet()
            elif fd.passed:
                if proto == TCP:
                    _release(flow)
                return []
            if not fd.est and flow.state == "established":
                fd.est = True
            d = 0 if to_server else 1
            table = fd.hdr1 if d else fd.hdr0
            if table is None:
                table = self._header_table(proto, pkt.dport, pkt.sport)
                if d:
                    fd.hdr1 = table
                else:
                    fd.hdr0 = table
                first = True
        else:
            fd = None
            d = 0
            table = self._header_table(proto, pkt.dport, pkt.sport)
            first = True
        static = table.get(v)
        if static is None:
            static = self._static_cands(table, v)
        pc = None  # rules to judge on this packet: ``static``, or a set once more are added
        if first:
            pc = set(static)
            pc.update(self.iponly[proto if proto == TCP or proto == UDP else 0])
            if self.ipo_src is not None:
                pc.update(self.ipo_src.lookup(pkt.src))
            if self.ipo_dst is not None:
                pc.update(self.ipo_dst.lookup(pkt.dst))
        payload = pkt.payload
        if payload:
            if proto == TCP:
                blk = self.block[TCP]
                if self._added_differs and fd is not None and _added(flow, d, pkt):
                    blk = self.block[ADDED]  # the stream rules see these bytes in the stream
            else:
                blk = self.block[proto if proto == UDP else 0]
            if blk is not None:
                dp = pkt.dport
                sp = pkt.sport
                if blk[2] is None or dp in blk[2][0] or sp in blk[2][1]:
                    c["scans"] += 1
                    hits = blk[0].scan(payload)
                    if hits:
                        if pc is None:
                            pc = set(static)
                        _expand(hits, blk[1], dp, sp, pc.update)
        if pc is None:
            pc = static
        chunk = None
        sc: set | None = None  # rules to judge on the stream bytes inspected now
        if proto == TCP and fd is not None:
            if self.has_stream:
                st = flow.streams[d]
                # cheap pre-check (a superset of _stream_chunk's triggers) before the call
                if st is not None:
                    fin = st.final if st.final < st.end else st.end
                    avail = fin - fd.prog[d]
                    if not (self.inline or fd.held is not None or avail >= self.chunk[d]
                            or avail > 0 and (st.depth_reached or flow.tcp_state in _CLOSING)):
                        st = None
                if st is not None:
                    sc = set()
                    chunk = self._stream_chunk(fd, st, d, flow, sc, False)
            else:
                _release(flow)
        if not pc and not sc:
            return []
        c["inspected"] += 1
        return self._judge_all(pc, sc, pkt, flow, fd, d, to_server, chunk, False)

    def _header_table(self, proto: int, dport: int, sport: int) -> dict:
        """The shared header value -> candidates table of packets with this protocol and ports
        (ports no header-decided rule names share one: ephemeral ports do not grow the tables)."""
        key = (proto, dport if dport in self._dports else -1, sport if sport in self._sports else -1)
        table = self._static.get(key)
        if table is None:
            if len(self._static) >= 4096:
                self._static.clear()
            table = self._static[key] = _HeaderTable()
            table.key = key
        return table

    def _static_cands(self, table: dict, v: int) -> frozenset:
        """Rules a packet is a candidate for whatever its payload, by its header value ``v``
        (TCP flags or ICMP type) and the protocol and ports ``table`` is for; kept in ``table``."""
        proto, dport, sport = table.key
        out = set(self.pkt_always.get(proto, self.pkt_any_ip))
        if proto == TCP:
            if self.flags_tbl is not None:
                _expand((v,), self.flags_tbl, dport, sport, out.update)
        elif (proto == 1 or proto == 58) and self.itype_tbl is not None and 0 <= v < 256:
            out.update(self.itype_tbl[v])
        ports = self.port_idx.get(proto)
        if ports is not None:
            out.update(ports[0].get(dport, ()))
            out.update(ports[1].get(sport, ()))
        r = table[v] = frozenset(out)
        return r

    # -- stream data ----------------------------------------------------------
    def on_swap(self, flow) -> None:
        """FlowTable hook: the session's roles swapped; detect's per-direction state follows."""
        fd = flow.det
        if fd is None:
            return
        fd.swap()
        for d, st in enumerate(flow.streams):  # the streams moved too: their gap keepers follow
            obs = st.observer if st is not None else None
            if type(obs) is _GapKeeper and obs.fd is fd:
                obs.d = d

    def on_new_stream(self, flow, d: int, stream) -> None:
        """FlowTable hook: keep the bytes a gap would discard before detect saw them."""
        fd = flow.det
        if fd is None:
            fd = flow.det = FlowDet()
        stream.observer = _GapKeeper(fd, d, stream.observer)

    def _stream_chunk(self, fd: FlowDet, st, d: int, flow, cands: set, at_end: bool):
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
        if start < base:
            if not held:
                self.c["stream_lost_bytes"] += base - start
            start = base
        if at_end or self.inline:
            end = st.end
        else:
            end = st.final if st.final < st.end else st.end
        n = end - start
        if n <= 0 and not held:
            return None
        if not (at_end or self.inline or held or n >= self.chunk[d] or st.depth_reached
                or flow.tcp_state in _CLOSING):
            return None
        c = self.c
        c["stream_scans"] += 1
        scanner = self.stream_scan
        if scanner is not None:
            # the stream of direction d flows between the same ports as its packets
            if d == 0:
                dport, sport = flow.sport, flow.cport
            else:
                dport, sport = flow.cport, flow.sport
            gate = self.stream_gate
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
            fd.gaps = [g for _, _, g in held]
            held.clear()
        back = 0
        if n > 0:
            fd.prog[d] = end
            if self.inline:
                # verify over a window reaching back (Suricata's inline window: a chunk
                # ending with the new bytes), so a match that started in earlier
                # segments is seen; only the new bytes are scanned
                back = max(self.lookback, self.chunk[d])
                w = min(start - self.lookback, end - back)
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
                _expand(hit, self.stream_rules, dport, sport, cands.update)
            if st.fin_off is not None and end >= st.fin_off:
                ls.close()  # the direction ended with its FIN: its hyperscan state can go now
        cands.update(self.stream_nompm)
        if n > 0:
            if cands:
                with memoryview(st.buf) as mv:  # one copy, not a bytearray slice and then bytes
                    pieces.append(bytes(mv[lo - base:end - base]))
                offs.append(lo)
            keep = end - back
            if keep > st.buf_base:
                st.trim(keep)
        return pieces

    # -- judging ----------------------------------------------------------------
    def _judge_all(self, pc: set, sc, pkt, flow, fd, d: int, to_server, chunk, pseudo: bool) -> list:
        """Judge the packet candidates ``pc`` and stream candidates ``sc`` in rule order."""
        crules = self.crules
        payload = pkt.payload
        # Suricata's PKT_STREAM_ADD: the packet's data went into its direction's stream,
        # which the flows room does once the session left 'new' (or for data on a SYN)
        added = pkt.proto == TCP and flow is not None and _added(flow, d, pkt)
        alerts: list = []
        seen: set = set()
        spayload = None
        c = self.c
        nums = pc | sc if sc else pc
        c["candidates"] += len(nums)
        for num in sorted(nums):
            cr = crules[num]
            mode = (1 if num in pc else 0) | (2 if sc and num in sc else 0)
            stream = self._judge(cr, mode, pkt, flow, fd, d, chunk, payload, added, pseudo)
            if stream is None:
                continue
            if cr.fb_write and fd is not None:
                bits = fd.bits
                if bits is None:
                    bits = fd.bits = set()
                for op, names in cr.fb_write:
                    for nm in names:
                        if op == "set":
                            bits.add(nm)
                        elif op == "unset":
                            bits.discard(nm)
                        elif nm in bits:
                            bits.discard(nm)
                        else:
                            bits.add(nm)
            if cr.action == "pass":
                # Suricata: ip-only rules and stream matches pass the whole flow,
                # packet rules only this packet
                if fd is not None and (cr.kind == "iponly" or stream):
                    fd.passed = True
                    c["passed_flows"] += 1
                break
            if cr.noalert or cr.key in seen:
                continue
            ts = pkt.ts
            if cr.threshold is not None and not self.thresholds.allow(cr.threshold, cr.key, pkt, fd, ts):
                continue
            if cr.dfilter is not None and not self.thresholds.allow(cr.dfilter, cr.key, pkt, fd, ts):
                continue
            seen.add(cr.key)
            if cr.req_stream and fd is not None and (stream or added):
                # stream bytes this alert covered: the rule does not alert on them again
                if fd.alerted_upto is None:
                    fd.alerted_upto = {}
                fd.alerted_upto[(d, cr.num)] = self._match_end if stream else flow.streams[d].off
            if len(alerts) >= self.alert_max:
                c["alerts_dropped_max"] += 1
                continue
            if stream and spayload is None:
                spayload = _with_gaps(chunk, fd)
            a = Alert(pkt, flow, to_server, cr.rule, stream, spayload if stream else payload,
                      "flow-timeout" if pseudo else "packet")
            alerts.append(a)
        if alerts:
            c["alerts"] += len(alerts)
            if flow is not None:
                flow.alerted = True
        return alerts

    def _judge(self, cr: CRule, mode: int, pkt, flow, fd, d: int, chunk, payload, added: bool, pseudo: bool):
        """None when the rule does not match, else the alert's stream flag (0/1)."""
        if cr.protos is not None and pkt.proto not in cr.protos:
            return None
        if cr.ipv and pkt.ipv != cr.ipv:
            return None
        src, dst, sp, dp = cr.src, cr.dst, cr.sport, cr.dport
        if src is not None or dst is not None or sp is not None or dp is not None:
            # ports first: a set lookup, cheaper than an address range search
            fwd = ((sp is None or sp(pkt.sport)) and (dp is None or dp(pkt.dport))
                   and (src is None or src(pkt.src)) and (dst is None or dst(pkt.dst)))
            if not fwd and not (cr.bidir and (sp is None or sp(pkt.dport)) and (dp is None or dp(pkt.sport))
                                and (src is None or src(pkt.dst)) and (dst is None or dst(pkt.src))):
                return None
        if cr.needs_flow and flow is None:
            return None  # Suricata's SIG_MASK_REQUIRE_FLOW: flow (not stateless) and flowbits keywords
        if cr.flowspec is not None and flow is not None:
            if cr.to_server and d != 0 or cr.to_client and d != 1:
                return None
            est = flow.state == "established" or fd.est
            if cr.established and not est or cr.not_established and est:
                return None
        if cr.dsize is not None and (pseudo or not cr.dsize.test(len(payload))
                                     or cr.dsize_needs_payload and not payload):
            return None
        if cr.flags is not None and (pseudo or pkt.proto != TCP or not cr.flags.test(pkt.flags)):
            return None
        for check in cr.hdr:
            if not check(pkt, flow, d):
                return None
        if cr.fb_read:
            bits = fd.bits
            for op, names in cr.fb_read:
                if not _flowbits_test(op, names, bits):
                    return None
        if cr.matches is None:
            return 0
        m = self._matchers.get(cr.num)
        if m is None:
            m = self._matcher(cr)
        if mode & 2 and chunk is not None:
            # a stream match counts once: its end must lie past the bytes this rule
            # already alerted on (an earlier stream match, or the packet carrying them)
            upto = fd.alerted_upto.get((d, cr.num), -1) if fd.alerted_upto else -1
            ctx: dict = {}
            for piece, off in zip(chunk, fd.piece_offs):
                if not m(piece, ctx):
                    continue
                end = off + ctx["end"]
                if end <= upto:  # the first match is old: look again just before the new bytes
                    cut = upto - off - self.lookback
                    if cut <= 0 or not m(piece[cut:], ctx):
                        continue
                    end = off + cut + ctx["end"]
                    if end <= upto:
                        continue
                self._match_end = end
                return 1
        if pseudo or not mode & 1 or cr.stream_only or not payload:
            return None
        if added and cr.req_stream and not cr.req_packet:
            return None
        if m(payload):
            return 0
        return None

    def _matcher(self, cr: CRule):
        """payload.compile_matches for a rule, built on its first candidate packet."""
        try:
            m = compile_matches(cr.matches, self.recursion_limit, self.pcre_timeout)
        except ValueError as e:
            self.skipped.append((cr.rule, f"payload: {e}"))
            m = _never
        self._matchers[cr.num] = m
        return m

    # -- flow end / shutdown ----------------------------------------------------
    def flow_end(self, flow, events: list) -> None:
        """A session is leaving the table: inspect what its streams still hold, release state."""
        fd = flow.det
        if fd is None:
            return
        try:
            if not fd.passed and flow.proto == TCP and self.has_stream and getattr(flow, "streams", None):
                for d in (0, 1):
                    st = flow.streams[d]
                    if st is None:
                        continue
                    cands: set = set()
                    chunk = self._stream_chunk(fd, st, d, flow, cands, True)
                    if chunk is None or not cands:
                        continue
                    pkt = _pseudo_packet(flow, d)
                    events.extend(self._judge_all(_NONE, cands, pkt, flow, fd, d, d == 0, chunk, True))
        except Exception as e:  # noqa: BLE001 - never let one session stop the engine
            self.count_error(e, flow)
        finally:
            fd.close()

    def flush(self, events: list) -> None:
        """End of capture: nothing is buffered outside flows (the engine ends each flow)."""

    def counters(self) -> dict:
        out = dict(self.c)
        out["suppressed"] = self.thresholds.suppressed
        out["rules"] = len(self.crules)
        out["rules_skipped"] = len(self.skipped)
        out["patterns"] = self.patterns
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def _with_gaps(pieces: list, fd) -> bytes:
    """Stream alert payload: the inspected pieces joined with Suricata's gap marker."""
    if len(pieces) == 1:
        return pieces[0]
    gaps = fd.gaps if fd is not None else []
    out = bytearray(pieces[0])
    for i, p in enumerate(pieces[1:]):
        out += b"[%d bytes missing]" % (gaps[i] if i < len(gaps) else 0)
        out += p
    return bytes(out)


def _never(buf, ctx=None) -> bool:
    return False


def _added(flow, d: int, pkt) -> bool:
    """Suricata's PKT_STREAM_ADD: this TCP packet's data went into its direction's stream.

    The flows room adds data once the session left 'new' (or data on a SYN);
    past ``stream.reassembly.depth`` nothing is added, so those packets are
    inspected on their own again, as in Suricata.
    """
    st = flow.streams[d]
    if st is None or (flow.state == "new" and not pkt.flags & SYN):
        return False
    return not st.depth_reached or st.offset_of(pkt.seq) < st.end


_NONE: frozenset = frozenset()


def _expand(ids, split, dport: int, sport: int, add) -> None:
    """Literal ids -> their rules (``groups.port_split``: any-port, by dst port, by src port)."""
    for i in ids:
        anys, dmap, smap = split[i]
        add(anys)
        if dmap is not None:
            add(dmap.get(dport, ()))
        if smap is not None:
            add(smap.get(sport, ()))


def _release(flow) -> None:
    """Nothing will inspect this session's stream bytes: let reassembly drop the settled ones."""
    for st in flow.streams:
        if st is not None and st.final > st.buf_base:
            st.trim(st.final)


def _flowbits_test(op: str, names, bits) -> bool:
    if op == "isset":
        return bits is not None and all(n in bits for n in names)
    if op == "isnotset":
        return bits is None or not any(n in bits for n in names)
    if op == "isset_any":
        return bits is not None and any(n in bits for n in names)
    # isnotset_any: at least one of them is not set
    return bits is None or not all(n in bits for n in names)


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
