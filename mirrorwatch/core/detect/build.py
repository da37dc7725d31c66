"""detect-engine-build: rules compiled into the tables the per-packet path reads.

``BuildMixin._build`` sorts the compiled rules in Suricata's order and files each
one where the packet path will find it: ip-only rules in address indexes, rules
decided by header values in value tables and port dicts, and rules with a
fast-pattern literal in one hyperscan database per transport (block mode) and
one for stream data (stream mode).
"""

from __future__ import annotations

import hyperscan as hs

from mirrorwatch.core.detect.compile import (
    CRule,
    Unsupported,
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
from mirrorwatch.core.detect.hsdb import BlockScanner, LiteralSet, StreamScanner
from mirrorwatch.core.detect.txrule import compile_cr
from mirrorwatch.rules.cache import collector_paused

TCP, UDP = 6, 17
ADDED = -1  # literal set for TCP packets whose data went into a stream


def _transport_class(proto: int) -> int:
    return proto if proto in (TCP, UDP) else 0


class BuildMixin:
    """The Detector's compilation step (see ``core.detect.Detector``)."""

    def _build(self, rules) -> None:
        with collector_paused():
            self._build_tables(rules)

    def _build_tables(self, rules) -> None:
        addr_cache: dict = {}
        crules = []
        for idx, rule in enumerate(rules):
            try:
                cr = CRule(rule, addr_cache)
                if cr.tx is not None:
                    compile_cr(cr)
                cr.hdr = [compile_check(h) for h in cr.hdr]
                if cr.kind == "iponly" and (rule.src_negated or rule.dst_negated):
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
        tx_rules = []
        for cr in crules:
            if cr.kind == "tx":
                tx_rules.append(cr)
                continue
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
            db = ls.compile(hs.HS_MODE_BLOCK, self.mpm_cache)
            if db is not None:
                split = port_split(ls.rule_tuples(), port_keys)
                self.block[k] = (BlockScanner(db), split, port_gate(split))
            else:
                self.block[k] = None
        # whether a TCP packet whose data went into a stream is scanned with other literals
        self._added_differs = self.block[ADDED] is not self.block[TCP]
        db = stream_lits.compile(hs.HS_MODE_STREAM, self.mpm_cache)
        self.stream_scan = StreamScanner(db) if db is not None else None
        self.stream_rules = port_split(stream_lits.rule_tuples(), port_keys)
        self.stream_gate = port_gate(self.stream_rules)
        self.has_stream = db is not None or bool(self.stream_nompm)
        self.lookback = max((len(lit) for lit, _ in stream_lits.ids), default=1) - 1
        self.patterns = sum(len(ls) for k, ls in pkt_lits.items() if k != ADDED) + len(stream_lits)
        self._build_tx(tx_rules)
