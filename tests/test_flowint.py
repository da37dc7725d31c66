"""flowint (Suricata 7's detect-flowint.c, flow-var.c): the keyword's syntax, its semantics on
crafted flows through the real Engine, and a replay where a rule counts across packets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mirrorwatch.core.detect.flowint import TYPE_READ, TYPE_SET, TYPE_SET_READ, FlowInts, compile_flowints, holds
from mirrorwatch.core.detect.plan import compile_all
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, load_rules, parse_rule
from mirrorwatch.rules.model import FlowInt
from test_xbits import A, B, T0, alerts, datagram, replay, stats

HDR = "alert udp any any -> any any"


def parse(opts: str, header: str = HDR):
    return parse_rule(f"{header} ({opts} sid:1;)", RuleContext(Settings(), {}))[0]


@pytest.mark.parametrize("text, want", [
    ("flowint: ET.infostealer.dll.download, +, 1;", [FlowInt("ET.infostealer.dll.download", "+", 1)]),
    ("flowint:cnt,=,4294967295;", [FlowInt("cnt", "=", 4294967295)]),
    ("flowint:cnt,-,other;", [FlowInt("cnt", "-", "other")]),
    ("flowint:cnt,>=5;", [FlowInt("cnt", ">=", 5)]),  # the comma before the value may be left out
    ("flowint:cnt,<=,5; flowint:cnt,<,5; flowint:cnt,!=,5;",
     [FlowInt("cnt", "<=", 5), FlowInt("cnt", "<", 5), FlowInt("cnt", "!=", 5)]),
    ("flowint:a/b.c,isset;", [FlowInt("a/b.c", "isset")]),
    ("flowint:cnt,notset; flowint:cnt,isnotset,1;", [FlowInt("cnt", "isnotset"), FlowInt("cnt", "isnotset")]),
])
def test_flowint_syntax(text, want):
    assert parse(text).flowints == want


@pytest.mark.parametrize("text, why", [
    ("flowint:a,+,1;", "is not <name>,<op>"),  # a name of one character
    ("flowint:cnt,+=,1;", "is not <name>,<op>"),
    ("flowint:cnt,==,x;", "is not <name>,<op>"),  # a variable of one character
    ("flowint:cnt,==,a.b;", "is not <name>,<op>"),  # no dot in a variable operand
    ("flowint:cnt,==,12345678901;", "is not <name>,<op>"),  # more than 10 digits
    ("flowint:cnt,==,4294967296;", "above 4294967295"),
    ("flowint:cnt,+;", "needs a value"),
    ("flowint:cnt;", "is not <name>,<op>"),
])
def test_flowint_bad_syntax_is_one_line_naming_the_keyword(text, why):
    with pytest.raises(RuleError, match=why) as e:
        parse(text)
    assert str(e.value).startswith("flowint") and "\n" not in str(e.value)


def test_a_bad_flowint_is_reported_with_its_file_line_and_sid(tmp_path):
    f = tmp_path / "t.rules"
    f.write_text(f'{HDR} (msg:"ok"; flowint:cnt,+,1; sid:1;)\n{HDR} (msg:"bad"; flowint:cnt,~,1; sid:2;)\n')
    rs = load_rules([f], Settings())
    assert [r.sid for r in rs.rules] == [1]
    assert rs.skip_lines() == [f"{f}:2: sid 2: flowint: 'cnt,~,1' is not <name>,<op>[,<value>] (name: a letter "
                               "and at least one more character; op: =, +, -, ==, !=, <, <=, >, >=, isset, isnotset "
                               "or notset)"]


def test_compiled_conditions_modifiers_order_and_kind():
    reads, writes, kind = compile_flowints(parse("flowint:nn,>,2; flowint:nn,==,3; flowint:nn,+,mm; "
                                                 "flowint:mm,isset;").flowints)
    assert reads == ((">", "nn", 2, None), ("=", "nn", 3, None), ("isset", "mm", None, None))
    assert writes == (("+", "nn", None, "mm"),)
    assert kind == TYPE_SET_READ
    assert compile_flowints([FlowInt("n", "=", 1)])[2] == TYPE_SET
    assert compile_flowints([FlowInt("n", "==", 1)])[2] == TYPE_READ
    crules, _ = compile_all([parse("flowint:nn,==,1;"), parse("flowint:nn,+,1;"), parse('content:"x";'),
                             parse("flowint:nn,+,1; flowint:nn,>,1;"),
                             parse("flowint:nn,+,1;", "alert ip any any -> any any")])
    # Suricata's order: set only, set and read, read only, then without flowint; never ip-only
    assert [(c.kind, c.fi_read is not None, c.fi_write is not None) for c in crules] == [
        ("pkt", False, True), ("pkt", False, True), ("pkt", True, True), ("pkt", True, False), ("mpm", False, False)]
    assert [c.needs_flow for c in crules] == [False, False, True, True, False]


def test_conditions_as_suricata():
    ints = {"n": 5, "m": 7}
    assert holds((("=", "n", 5, None), ("<", "n", None, "m"), ("isset", "m", None, None)), ints)
    assert holds((("!=", "n", None, "zz"),), ints)  # a variable not set counts as 0
    assert not holds((("!=", "zz", 5, None),), ints)  # a comparison of a flowint not set is false
    assert not holds((("=", "n", 5, None),), None)
    assert holds((("isnotset", "n", None, None),), None) and not holds((("isset", "n", None, None),), None)


def test_modifiers_wrap_around_and_subtract_only_from_a_set_flowint():
    fi = FlowInts(Settings())
    fd = SimpleNamespace(ints=None)
    fi.write((("-", "n", 1, None), ("+", "m", 4294967295, None), ("+", "m", 2, None)), fd)
    assert fd.ints == {"m": 1}  # '-' of a flowint not set leaves it unset; '+' sets it, then wraps
    fi.write((("=", "n", None, "m"), ("-", "n", 2, None), ("=", "k", None, "absent")), fd)
    assert fd.ints == {"m": 1, "n": 4294967295, "k": 0}
    assert fi.counters() == {"flowint.refused": 0}
    assert FlowInts(Settings()).counters() == {}  # no flowint changed: the stats are as before


def _engine(text: str, **overrides) -> Engine:
    s = Settings(overrides)
    ctx = RuleContext(s, {})
    return Engine(s, [parse_rule(line, ctx)[0] for line in text.strip().splitlines()], checksum_mode="none")


def _run(eng: Engine, frames) -> list:
    out = []
    for i, f in enumerate(frames):
        out.extend(eng.process(T0 + i, 1, bytes(f)))
    return [(e.rule.sid, i) for e in out if isinstance(e, Alert) for i in [round(e.ts - T0)]]


COUNT = f"""
{HDR} (content:"hit"; flowint:cnt,+,1; noalert; sid:1;)
{HDR} (content:"hit"; flowint:cnt,==,3; sid:2;)
{HDR} (content:"hit"; flowint:cnt,isnotset; sid:3;)
{HDR} (content:"reset"; flowint:cnt,isset; flowint:cnt,=,0; sid:4;)
{HDR} (content:"miss-me"; flowint:cnt,+,100; sid:5;)
"""


def test_a_flowint_counts_per_flow_and_changes_only_when_its_rule_matches():
    eng = _engine(COUNT)
    frames = [datagram(T0, A, B, p)[0] for p in (b"hit", b"hit", b"hit", b"reset", b"hit", b"hit", b"hit", b"hit")]
    other = datagram(T0, B, A, b"hit", 9999, 9999)[0]  # another flow: its own count
    got = _run(eng, frames[:3] + [other] + frames[3:])
    # rule 1 (set only) runs before rule 2 and 3 (read only): on the first 'hit' the count is 1 already
    assert got == [(2, 2), (4, 4), (2, 7)]


def test_max_per_flow_bounds_the_flowints_of_a_flow_and_counts_refusals():
    eng = _engine(f'{HDR} (content:"x"; flowint:a1,=,1; flowint:a2,=,2; noalert; sid:1;)\n'
                  f'{HDR} (content:"x"; flowint:a2,isnotset; flowint:a1,==,1; sid:2;)',
                  **{"detect.flowint.max-per-flow": 1})
    assert _run(eng, datagram(T0, A, B, b"x") * 2) == [(2, 0), (2, 1)]
    assert eng.detector.counters()["flowint.refused"] == 2


def test_replay_counts_across_packets_and_alerts_from_the_third(tmp_path):
    rules = f"""
{HDR} (msg:"count"; content:"GET"; flowint:gets,+,1; noalert; sid:1;)
{HDR} (msg:"third and later"; content:"GET"; flowint:gets,>=,3; sid:2;)
"""
    frames = [p for i in range(5) for p in datagram(T0 + i, A, B, b"GET /")]
    records = replay(tmp_path, rules, frames)
    assert alerts(records) == [(2, A, 2.0), (2, A, 3.0), (2, A, 4.0)]
    assert stats(records)["flowint"] == {"refused": 0}
