"""detect-engine-build's plan: which rule goes where in the detector's tables, as plain data.

``make_plan(rules)`` compiles every rule once (``compile_rule``; a rule detect cannot
judge is skipped here, at load, with its reason), sorts them in Suricata's order
(``CRule.order``) and files each one where the per-packet path will find it:
ip-only rules in address indexes, rules decided by header values in value tables
and port dicts, rules with a fast-pattern literal in one literal set per transport
and direction (block mode) and one per direction for stream data (stream mode),
application-layer rules in one literal set per (protocol, side, buffer).  What it
returns holds nothing but tuples, dicts, frozensets, numbers, text and bytes
(``PLAN_KEYS``): the rule-set cache keeps it beside the rule set
(``rules.ruleset_cache.PlanCache``), so a start from the cache builds the
detector's tables (``build.BuildMixin``) without compiling, or even unpickling,
a single rule.  The detector compiles a rule with
``compile_rule`` again, the same way, the first time the rule becomes a candidate.
"""

from __future__ import annotations

import hyperscan as hs

from mirrorwatch.core.detect.compile import CRule, Unsupported, port_values
from mirrorwatch.core.detect.decode_event import rule_event
from mirrorwatch.core.detect.groups import AddrIndex, choose_side, port_gate, port_split, value_table
from mirrorwatch.core.detect.headers import compile_check
from mirrorwatch.core.detect.hsdb import LiteralSet
from mirrorwatch.core.detect.txrule import compile_cr

TCP, UDP = 6, 17
ADDED = -1  # literal set for TCP packets whose data went into a stream
SIDES = (0, 1)  # a packet's or stream's direction: to server, to client
PLAN_KEYS = frozenset((
    "index", "skipped", "iponly", "ipo", "flags_tbl", "itype_tbl", "pkt_any", "port_idx", "stream_nompm",
    "block", "stream", "stream_rules", "lookback", "patterns", "tx_pref", "tx_always", "tx_patterns", "events"))


def compile_rule(rule, addr_cache: dict, idx: int) -> CRule:
    """Rule number ``idx`` of the rule set compiled for judging; Unsupported when detect cannot
    judge it.  ``addr_cache``: address matchers shared by the rules compiled with it."""
    cr = CRule(rule, addr_cache)
    if cr.tx is not None:
        compile_cr(cr)
    cr.hdr = [compile_check(h) for h in cr.hdr]
    if cr.kind == "iponly" and (rule.src_negated or rule.dst_negated):
        # Suricata's SIG_TYPE_LIKE_IPONLY: judged on every packet, not once per direction
        cr.kind = "pkt"
    cr.order = cr.order + (idx,)
    return cr


def compile_all(rules) -> tuple[list, list]:
    """(compiled rules in Suricata's order, numbered; [(rule position, reason)] of the skipped)."""
    addr_cache: dict = {}
    crules = []
    skipped = []
    for idx, rule in enumerate(rules):
        try:
            crules.append(compile_rule(rule, addr_cache, idx))
        except Unsupported as e:
            skipped.append((idx, str(e)))
    crules.sort(key=lambda c: c.order)
    for i, cr in enumerate(crules):
        cr.num = i
    return crules, skipped


def make_plan(rules) -> dict:
    """The plan of the tables for ``rules`` (see the module docstring)."""
    crules, skipped = compile_all(rules)
    # a decode-event rule is filed under its event alone (``decode_event``), in no other table
    events = tuple((event, cr.num) for cr in crules if cr.kind != "tx"
                   for event in (rule_event(cr.rule),) if event is not None)
    filed = {num for _, num in events}
    packet = [cr for cr in crules if cr.kind != "tx" and cr.num not in filed]
    port_keys = _port_keys(packet)
    plan = {"index": tuple(cr.order[-1] for cr in crules), "skipped": tuple(skipped), "events": events}
    plan.update(_iponly(packet))
    plan.update(_literals(packet, port_keys))
    plan.update(_header_decided(packet, port_keys))
    plan.update(_tx_literals([cr for cr in crules if cr.kind == "tx"]))
    return plan


def _transport_classes(cr) -> tuple:
    if cr.protos is None:
        return (0, TCP, UDP)
    return tuple(sorted({p if p in (TCP, UDP) else 0 for p in cr.protos}))


def _port_keys(crules) -> dict:
    """{rule number: ('d', ports) / ('s', ports)} for rules bound to a few ports (``port_split``)."""
    keys = {}
    for cr in crules:
        if cr.kind == "iponly" or cr.bidir:
            continue
        dports = port_values(cr.rule.dport)
        if dports is not None:
            keys[cr.num] = ("d", dports)
            continue
        sports = port_values(cr.rule.sport)
        if sports is not None:
            keys[cr.num] = ("s", sports)
    return keys


def _iponly(crules) -> dict:
    """IP-only rules: per transport class those for any address, the others in address indexes."""
    iponly: dict[int, list] = {0: [], TCP: [], UDP: []}
    src, dst = AddrIndex(), AddrIndex()
    for cr in crules:
        if cr.kind != "iponly":
            continue
        side = choose_side(cr)
        if side is None:
            for k in _transport_classes(cr):
                iponly[k].append(cr.num)
            continue
        aset = cr.rule.src if side == "src" else cr.rule.dst
        (src if side == "src" else dst).add(aset, cr.num)
        if cr.bidir:
            (dst if side == "src" else src).add(aset, cr.num)
    return {"iponly": {k: tuple(v) for k, v in iponly.items()},
            "ipo": (src.build().segments(), dst.build().segments())}


def _literal_entry(ls: LiteralSet, mode: int, port_keys: dict):
    """(expressions, flags, rules per literal split by port, port gate) of a literal set, or None."""
    if not len(ls):
        return None
    split = port_split(ls.rule_tuples(), port_keys)
    return (*ls.patterns(mode), split, port_gate(split))


def _per_side(sets: tuple, mode: int, port_keys: dict) -> tuple:
    """The entries of the two directions' literal sets; when both hold the same literals they share
    their expressions and flags (the same objects, in the cache too: one database serves both)."""
    a, b = (_literal_entry(ls, mode, port_keys) for ls in sets)
    if a is not None and b is not None and a[:2] == b[:2]:
        b = (*a[:2], *b[2:])
    return a, b


def _sides(cr) -> tuple:
    """The directions (0: to server, 1: to client) a rule can match in: the one its flow keyword
    names (such a rule needs a flow, so a packet without one, direction 0, meets neither), else both."""
    return (1,) if cr.to_client else (0,) if cr.to_server else SIDES


def _literals(crules, port_keys: dict) -> dict:
    """Rules with a fast-pattern literal, per direction as Suricata's toserver/toclient signature
    groups: one literal set per transport class for packets (ADDED: TCP packets whose data went
    into a stream, where only rules that also inspect single packets apply) and one for stream
    data.  A response is then not scanned for the literals of request-only rules."""
    pkt_lits = {k: (LiteralSet(), LiteralSet()) for k in (0, TCP, UDP, ADDED)}
    stream_lits = (LiteralSet(), LiteralSet())
    for cr in crules:
        if cr.kind != "mpm":
            continue
        lit, nocase = cr.fp
        sides = _sides(cr)
        if not cr.stream_only:
            classes = _transport_classes(cr)
            if cr.req_packet and TCP in classes:
                classes += (ADDED,)
            for k in classes:
                for d in sides:
                    pkt_lits[k][d].add(lit, nocase, cr.num)
        if cr.req_stream:
            for d in sides:
                stream_lits[d].add(lit, nocase, cr.num)
    stream = _per_side(stream_lits, hs.HS_MODE_STREAM, port_keys)
    distinct = [set(a.ids) | set(b.ids) for k, (a, b) in pkt_lits.items() if k != ADDED]
    return {"block": {k: _per_side(pair, hs.HS_MODE_BLOCK, port_keys) for k, pair in pkt_lits.items()},
            "stream": tuple(e[:2] if e is not None else None for e in stream),
            "stream_rules": tuple(e[2] if e is not None else () for e in stream),
            "lookback": max((len(lit) for ls in stream_lits for lit, _ in ls.ids), default=1) - 1,
            "patterns": sum(map(len, distinct)) + len(set(stream_lits[0].ids) | set(stream_lits[1].ids))}


def _header_decided(crules, port_keys: dict) -> dict:
    """Rules without a literal ('pkt'): by TCP flags / ICMP type value, else by protocol and port;
    those inspecting stream payload also per stream chunk."""
    pkt_any: dict = {}
    port_idx: dict = {}  # proto -> ({dst port: rules}, {src port: rules})
    stream_nompm, flag_tests, itype_tests = [], [], []
    for cr in crules:
        if cr.kind != "pkt":
            continue
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
        for p in _ip_protos(cr):
            if (dports is not None or sports is not None) and p is not None:
                by_port = port_idx.setdefault(p, ({}, {}))[0 if dports is not None else 1]
                for port in dports if dports is not None else sports:
                    by_port.setdefault(port, []).append(cr.num)
            else:
                pkt_any.setdefault(p, []).append(cr.num)
    flags_tbl = value_table(flag_tests)
    return {"flags_tbl": port_split(flags_tbl, port_keys) if flags_tbl is not None else None,
            "itype_tbl": value_table(itype_tests),
            "pkt_any": {k: tuple(v) for k, v in pkt_any.items()},
            "port_idx": {p: tuple({port: tuple(v) for port, v in m.items()} for m in maps)
                         for p, maps in port_idx.items()},
            "stream_nompm": tuple(stream_nompm)}


def _ip_protos(cr) -> tuple:
    """The IP protocols a header-decided rule is filed under (None: any, an 'ip' rule)."""
    if cr.protos is not None:
        return cr.protos
    ipp = next((h for h in cr.rule.header_checks if h.keyword == "ip_proto" and h.op == "="), None)
    return (ipp.value,) if ipp is not None and isinstance(ipp.value, int) else (None,)


def _tx_literals(crules) -> dict:
    """Application-layer rules: per (protocol, side), one literal set per buffer holding some
    rule's fast pattern; rules without one are candidates for every transaction."""
    prefilter: dict = {}  # (proto, side) -> {group key: LiteralSet}
    always: dict = {}
    for cr in crules:
        spec = cr.tx
        for side in spec.sides:
            k = (spec.proto, side)
            fp = spec.fps[side]
            if fp is None:
                always.setdefault(k, []).append(cr.num)
                continue
            per = prefilter.setdefault(k, {})
            if fp[0] not in per:
                per[fp[0]] = LiteralSet()
            per[fp[0]].add(fp[1][0], fp[1][1], cr.num)
    return {"tx_pref": {k: tuple((key, *ls.patterns(hs.HS_MODE_BLOCK), ls.rule_tuples()) for key, ls in per.items())
                        for k, per in prefilter.items()},
            "tx_always": {k: tuple(v) for k, v in always.items()},
            "tx_patterns": sum(len(ls) for per in prefilter.values() for ls in per.values())}
