"""Real rule sets: ET Open, Snort community, every suricata-verify test.rules."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from mirrorwatch.rules import RuleContext, RuleSet, check_report, load_rules, load_text
from mirrorwatch.rules.classification import load_classification
from mirrorwatch.core.settings import Settings

SKIP_LINE = re.compile(r"^.+:\d+: sid (\d+|\?): .+$")
L4 = ("tcp", "udp", "icmp", "ip", "tcp-pkt", "tcp-stream", "icmpv6", "ipv4", "ipv6")
_HEADER = re.compile(r"^\s*\S+\s+(\S+)\s")


def _assert_skips_well_formed(rs: RuleSet) -> None:
    for line in rs.skip_lines():
        assert SKIP_LINE.match(line), line
        assert "cannot parse" not in line, line  # an unexpected exception inside the parser


def _l4_rate(rs: RuleSet) -> float:
    """Loaded share of rules whose protocol the engine inspects (tcp/udp/icmp/ip)."""
    skipped_l4 = sum(1 for s in rs.skipped if not s[3].startswith(("unsupported protocol", "unknown protocol")))
    return len(rs.rules) / (len(rs.rules) + skipped_l4)


def test_et_open_loads(corpus):
    rs = load_rules([corpus / "rules" / "et-open"], Settings())
    assert not rs.errors
    # measured: 3572 loaded of 24827 (21255 app-layer http/dns/tls/... headers), 10023 disabled
    assert len(rs.rules) >= 3500
    assert rs.disabled >= 10000
    assert _l4_rate(rs) >= 0.99
    _assert_skips_well_formed(rs)
    reasons = Counter(s[3] for s in rs.skipped)
    assert reasons["unsupported protocol 'http'"] > 10000
    # classtypes of ET Open all exist in the bundled classification.config
    assert not [w for w in rs.warnings if "classtype" in w]
    assert all(r.sid and r.msg for r in rs.rules)
    assert "top skip reasons" in check_report(rs)


def test_snort_community_loads(corpus):
    rs = load_rules([corpus / "rules" / "snort-community" / "community.rules"], Settings())
    assert not rs.errors
    # measured: 162 of 561 active rules; the rest use http_* buffers / file_data
    assert len(rs.rules) >= 155
    _assert_skips_well_formed(rs)
    assert all(s[3].startswith("unsupported keyword") for s in rs.skipped)


def test_disabled_rules_parse_without_crashing(corpus):
    """Uncomment every disabled rule of both sets: more syntax, same guarantees."""
    c = RuleContext(Settings(), load_classification()[0])
    rs = RuleSet()
    files = sorted((corpus / "rules" / "et-open").glob("*.rules")) + [corpus / "rules" / "snort-community" / "community.rules"]
    for f in files:
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        text = re.sub(r"(?m)^#+ ?(?=(alert|drop|pass|reject)\s)", "", text)
        load_text(text, str(f), c, rs)
    # measured: 7667 of 38863 load; the rest name an unsupported keyword or
    # protocol, a duplicate sid (rules present enabled and disabled), or an
    # undefined variable ($SIP_SERVERS, 9 rules)
    assert len(rs.rules) >= 7500
    other = [s for s in rs.skipped if not s[3].startswith(("unsupported ", "duplicate sid"))]
    assert len(other) <= 20, other[:5]
    _assert_skips_well_formed(rs)


def _verify_cases(corpus):
    index = json.loads((corpus / "suricata-verify" / "index.json").read_text())
    return [(t, corpus / "suricata-verify" / t["rules"]) for t in index["tests"]]


def test_suricata_verify_rules(corpus):
    """No test.rules crashes the parser; in the core tiers every rule loads."""
    checked = 0
    for case, path in _verify_cases(corpus):
        if not path.exists():
            continue
        rs = load_rules([path], Settings())
        assert not rs.errors, (case["name"], rs.errors)
        _assert_skips_well_formed(rs)
        if case["tier"] in ("core", "core+threshold", "core+ext", "core+threshold+ext"):
            assert not rs.skipped, (case["name"], rs.skip_lines())
            assert rs.rules, case["name"]
            checked += 1
        else:
            # the http tier: skipped for a named reason, never a parse failure
            for s in rs.skipped:
                assert s[3].startswith(("unsupported keyword", "unsupported protocol")), (case["name"], s)
    assert checked >= 50
