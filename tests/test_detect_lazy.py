"""Detect's lazy build: a rule is compiled when it first becomes a candidate.

- a rule that never becomes a candidate is never compiled; one that does later is compiled
  then, and judges exactly as if every rule had been compiled at the start (real traffic);
- a start from the rule-set cache takes the detector's plan from it: no rule is unpickled
  or compiled before a packet wakes it, and the tables are those of a cold start;
- every rule detect cannot judge is still reported when the rules load, cold or cached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from mirrorwatch.cli.pipeline import fold_detect_skips
from mirrorwatch.core.detect import Detector
from mirrorwatch.core.detect.plan import compile_all
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, check_report, parse_rule
from mirrorwatch.rules.lazy import LazyRules
from mirrorwatch.rules.ruleset_cache import load_rules_cached
from mirrorwatch.sources.pcapfile import PcapFiles

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
HTTP_PCAP = CORPUS / "bench" / "http-tests-merged.pcap"
SIGNATURES = ROOT / "signatures"
RULES = """\
alert udp any any -> any 53 (msg:"dns"; content:"EXAMPLE"; nocase; sid:1;)
alert udp any any -> any 54 (msg:"other port"; content:"example"; sid:2;)
alert tcp any any -> any any (msg:"tcp"; content:"never"; sid:3;)
alert http any any -> any any (msg:"http"; http.uri; content:"/never"; sid:4;)
alert ip 203.0.113.0/24 any -> any any (msg:"ip-only"; sid:5;)
alert udp any any -> any any (msg:"header"; dsize:>1000; sid:6;)
"""
# loads, but detect cannot judge it (as ET Open's sid 2030547): a payload content beside a DNS buffer
BAD = 'alert dns any any -> any any (msg:"bad"; content:"|00 00 18 00 01|"; dns.query; pcre:"/^\\d/"; sid:7;)\n'
BAD_REASON = "payload keywords beside application-layer buffers"


def _frame(src: str, dport: int, data: bytes) -> bytes:
    return bytes(Ether() / IP(src=src, dst="192.0.2.53") / UDP(sport=40000, dport=dport) / data)


def _compiled_sids(det: Detector) -> set:
    return {cr.key[1] for cr in det.crules if cr is not None}


def _sids(events) -> list:
    return [e.rule.sid for e in events if isinstance(e, Alert)]


def test_a_rule_is_compiled_when_it_first_becomes_a_candidate():
    s = Settings()
    ctx = RuleContext(s, {})
    eng = Engine(s, [parse_rule(line, ctx)[0] for line in RULES.splitlines()], checksum_mode="none")
    det = eng.detector
    assert _compiled_sids(det) == set()
    # sid 1's literal, and the header rule sid 6 (every UDP packet): only they were candidates
    assert _sids(eng.process(1.0, 1, _frame("10.0.0.1", 53, b"..example.."))) == [1]
    assert _compiled_sids(det) == {1, 6}
    # a later packet wakes the ip-only rule: compiled now, and it alerts
    assert _sids(eng.process(2.0, 1, _frame("203.0.113.7", 53, b"x"))) == [5]
    assert _compiled_sids(det) == {1, 5, 6}
    assert det.counters()["rules"] == 6


def _alerts(eng: Engine, frames) -> list:
    out = []
    for ts, lt, frame, wirelen in frames:
        out.extend(eng.process(ts, lt, frame, wirelen))
    out.extend(eng.finish())
    return [(a.rule.sid, a.pkt.pcap_cnt, a.stream, a.kind, bytes(a.payload or b""),
             getattr(a.tx, "tx_id", None)) for a in out if isinstance(a, Alert)]


@pytest.mark.slow
def test_a_rule_compiled_late_judges_as_one_compiled_at_the_start(tmp_path):
    if not HTTP_PCAP.exists():
        pytest.skip("corpus http capture not found")
    frames = list(PcapFiles([HTTP_PCAP]))
    s = Settings({"detect.sgh-mpm-caching": "no", "detect.rule-set-caching": "no"})
    rs = load_rules_cached([str(SIGNATURES)], s)
    lazy, eager = Engine(s, rs), Engine(s, rs)
    det = eager.detector
    for n in range(len(det.crules)):
        det.crule(n)
    got = _alerts(lazy, frames)
    assert got and got == _alerts(eager, frames)
    assert None in lazy.detector.crules  # some rule never was a candidate


def test_a_late_compiled_rule_is_the_rule_compile_all_makes():
    s = Settings({"detect.sgh-mpm-caching": "no", "detect.rule-set-caching": "no"})
    rules = load_rules_cached([str(SIGNATURES)], s).rules
    det = Detector(rules, s)
    eager, _ = compile_all(rules)
    fields = ("key", "num", "order", "kind", "action", "protos", "ipv", "bidir", "established", "not_established",
              "to_server", "to_client", "needs_flow", "dsize", "flags", "fb_read", "fb_write", "noalert",
              "fp", "req_stream", "req_packet", "stream_only", "threshold", "dfilter", "app_proto")
    for n, cr in enumerate(eager):
        late = det.crule(n)
        assert late.rule is cr.rule
        assert [getattr(late, f) for f in fields] == [getattr(cr, f) for f in fields]
        assert len(late.hdr) == len(cr.hdr) and (late.tx is None) == (cr.tx is None)


def _load(path: Path, cache: Path):
    s = Settings({"detect.sgh-mpm-caching-path": str(cache)})
    return load_rules_cached([str(path)], s), s


def test_a_start_from_the_cache_unpickles_and_compiles_only_what_packets_wake(tmp_path):
    path = tmp_path / "local.rules"
    path.write_text(RULES + BAD)
    cache = tmp_path / "cache"
    cold_rs, s = _load(path, cache)
    cold = Detector(cold_rs, s)
    assert cold_rs.cache.plan == "miss"
    rs, s = _load(path, cache)
    assert isinstance(rs.rules, LazyRules) and rs.rules.decoded() == 0
    eng = Engine(s, rs, checksum_mode="none")
    det = eng.detector
    assert rs.cache.plan == "hit"
    assert rs.rules.decoded() == 1 and _compiled_sids(det) == set()  # the rule detect skipped, to report it
    for name in ("iponly", "pkt_any", "port_idx", "flags_tbl", "itype_tbl", "stream_nompm", "stream_rules",
                 "tx_always", "patterns", "tx_patterns", "lookback", "rule_index"):
        assert getattr(det, name) == getattr(cold, name), name
    assert _sids(eng.process(1.0, 1, _frame("10.0.0.1", 53, b"..example.."))) == [1]
    assert rs.rules.decoded() == 3 and _compiled_sids(det) == {1, 6}


@pytest.mark.parametrize("start", ["cold", "cached"])
def test_a_rule_detect_cannot_judge_is_reported_when_the_rules_load(tmp_path, start):
    path = tmp_path / "local.rules"
    path.write_text(RULES + BAD)
    cache = tmp_path / "cache"
    if start == "cached":
        rs, s = _load(path, cache)
        Detector(rs, s)
    rs, s = _load(path, cache)
    fold_detect_skips(rs, Detector(rs, s))
    assert [(sid, reason) for _, _, sid, reason in rs.skipped] == [(7, BAD_REASON)]
    assert len(rs.rules) == 6 and [r.sid for r in rs.rules] == [1, 2, 3, 4, 5, 6]
    assert BAD_REASON in check_report(rs)
