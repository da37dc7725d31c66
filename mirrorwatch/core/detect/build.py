"""detect-engine-build: the plan of the detector's tables (``plan``) made into the tables the
per-packet path reads, and rules compiled when they are first needed.

``BuildMixin._build`` takes the plan from the rule-set cache when it holds one for this
rule set and this code (``rules.ruleset_cache.PlanCache``), else makes it from the
rules (``plan.make_plan``, which compiles every rule and so reports every rule detect
cannot judge) and stores it there.  It then makes the hyperscan databases (through
the cache of databases), the address indexes and the prefilter buffers.  A rule's
compiled form (``CRule``: its matchers, header checks, transaction spec) is made by
``crule(num)`` the first time the rule is a candidate, as ``make_plan`` made it: a
start from the cache unpickles and compiles only the rules its packets wake.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import hyperscan as hs

from mirrorwatch.core.detect.decode_event import event_index
from mirrorwatch.core.detect.groups import AddrIndex, port_gate
from mirrorwatch.core.detect.hsdb import BlockScanner, StreamScanner, database
from mirrorwatch.core.detect.plan import ADDED, PLAN_KEYS, TCP, compile_rule, make_plan
from mirrorwatch.core.detect.xbits import header_check
from mirrorwatch.rules.cache import collector_paused

_DETECT_ROOM = Path(__file__).resolve().parent
_fingerprint: list = []  # the detect room's code, hashed once per process


def code_fingerprint() -> bytes:
    """SHA-256 of the detect room's source: a plan made by other code is another cache entry."""
    if not _fingerprint:
        h = hashlib.sha256()
        for p in sorted(_DETECT_ROOM.glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        _fingerprint.append(h.digest())
    return _fingerprint[0]


def _valid(plan, nrules: int) -> bool:
    """A plan of a rule set of ``nrules`` rules, with every table (the cache is authenticated
    and keyed by this code: this only guards against an entry of another layout)."""
    if not isinstance(plan, dict) or plan.keys() != PLAN_KEYS:
        return False
    try:
        positions = list(plan["index"]) + [i for i, _ in plan["skipped"]]
    except (TypeError, ValueError):
        return False
    return len(positions) == nrules and all(type(i) is int and 0 <= i < nrules for i in positions)


class BuildMixin:
    """The Detector's build step (see ``core.detect.Detector``)."""

    def _build(self, rules, plan_cache) -> None:
        with collector_paused():
            plan = self._plan(rules, plan_cache)
            self._install(plan, rules)

    @staticmethod
    def _plan(rules, plan_cache) -> dict:
        """The plan from the cache, else made from ``rules`` (and stored there)."""
        fingerprint = code_fingerprint()
        plan = plan_cache.load(fingerprint) if plan_cache is not None else None
        if plan is not None and not _valid(plan, len(rules)):
            plan_cache.reject(fingerprint, "is not a plan of this rule set")
            plan = None
        if plan is None:
            plan = make_plan(rules)
            if plan_cache is not None:
                plan_cache.save(fingerprint, plan)
        return plan

    def _install(self, plan: dict, rules) -> None:
        self._rules = rules
        self._addr_cache: dict = {}
        self.rule_index = plan["index"]  # rule number -> position in ``rules``
        self.crules: list = [None] * len(self.rule_index)  # compiled on first use (``crule``)
        self.skipped.extend((rules[i], reason) for i, reason in plan["skipped"])
        self.iponly = plan["iponly"]
        self.ipo_src = AddrIndex.restore(plan["ipo"][0])
        self.ipo_dst = AddrIndex.restore(plan["ipo"][1])
        self.flags_tbl = plan["flags_tbl"]
        self.itype_tbl = plan["itype_tbl"]
        self.pkt_any = plan["pkt_any"]
        self.event_rules = event_index(plan["events"])
        self.pkt_any_ip = self.pkt_any.get(None, ())
        # per packet: rules of its protocol plus 'ip' rules in one tuple; port dicts per protocol
        self.pkt_always = {p: tuple(sorted(set(v) | set(self.pkt_any_ip)))
                           for p, v in self.pkt_any.items() if p is not None}
        self.port_idx = plan["port_idx"]
        # every port a header-decided candidate depends on (``_static_cands``)
        self._dports = frozenset(pt for m in self.port_idx.values() for pt in m[0]) | frozenset(
            pt for e in (self.flags_tbl or ()) if e[1] is not None for pt in e[1])
        self._sports = frozenset(pt for m in self.port_idx.values() for pt in m[1]) | frozenset(
            pt for e in (self.flags_tbl or ()) if e[2] is not None for pt in e[2])
        self.stream_nompm = plan["stream_nompm"]
        self._install_literals(plan)
        self._install_tx(plan)

    def _install_literals(self, plan: dict) -> None:
        """The literal databases of packets (per transport class) and stream data, each one per
        direction (``plan._literals``): a (scanner, rules per literal, port gate) or None.  The two
        directions' literals are often the same (``plan._per_side``): one database serves both."""
        dbs: dict = {}
        self.block: dict[int, tuple] = {k: tuple(self._block_entry(e, dbs) for e in entries)
                                        for k, entries in plan["block"].items()}
        # whether a TCP packet whose data went into a stream is scanned with other literals
        self._added_differs = any(a is not t for a, t in zip(self.block[ADDED], self.block[TCP]))
        self.stream_scan = tuple(None if e is None else StreamScanner(self._database(hs.HS_MODE_STREAM, *e, dbs))
                                 for e in plan["stream"])
        self.stream_rules = plan["stream_rules"]
        self.stream_gate = tuple(port_gate(split) for split in self.stream_rules)
        self.has_stream = any(s is not None for s in self.stream_scan) or bool(self.stream_nompm)
        self.lookback = plan["lookback"]
        self.patterns = plan["patterns"]

    def _block_entry(self, entry, dbs: dict):
        if entry is None:
            return None
        exprs, flags, split, gate = entry
        return BlockScanner(self._database(hs.HS_MODE_BLOCK, exprs, flags, dbs)), split, gate

    def _database(self, mode: int, exprs, flags, dbs: dict):
        """The database of these literals, made (or taken from the rule cache) once per build:
        the plan gives two directions with the same literals the same expression list."""
        key = (mode, id(exprs), id(flags))
        db = dbs.get(key)
        if db is None:
            db = dbs[key] = database(mode, exprs, flags, self.mpm_cache)
        return db

    def crule(self, num: int):
        """Rule number ``num`` compiled (``plan.compile_rule``), the first time it is asked for."""
        cr = self.crules[num]
        if cr is None:
            idx = self.rule_index[num]
            cr = compile_rule(self._rules[idx], self._addr_cache, idx)
            cr.num = num
            if cr.xb_read is not None:  # judged with the header checks: no cost to rules without
                cr.hdr.append(header_check(self, cr.xb_read))
            self.crules[num] = cr
        return cr
