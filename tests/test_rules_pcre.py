"""pcre on PCRE2: Suricata's options, match limits counted as no match, the O flag,
and the matcher contract detect relies on (``guarded``: search/match(subject, pos))."""

from __future__ import annotations

import pytest

from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, parse_rule
from mirrorwatch.rules.pcre import (
    DEFAULT_MATCH_LIMIT,
    STATS,
    CompiledPcre,
    PcreError,
    PcreLimits,
    compile_pcre,
    guarded,
    parse_flags,
    split_pcre,
)

CTX = RuleContext(Settings(), {})
# catastrophic backtracking for a backtracking engine: every split of the words is tried
CATASTROPHIC = "^(\\w+\\s?)*$"
WORDS = b"an apple a day keeps the doctor away and more words here!"


def pcre(opts: str, ctx: RuleContext = CTX):
    return parse_rule(f"alert tcp any any -> any any ({opts} sid:1;)", ctx)[0].matches[-1]


def test_split_and_flags():
    assert split_pcre("/a\\/b/i") == ("a\\/b", "i")
    assert split_pcre("/a\\\\/smi") == ("a\\\\", "smi")  # an escaped backslash before the closing '/'
    assert split_pcre("/a/b/c/") == ("a/b/c", "")
    with pytest.raises(PcreError, match="must be /regex/flags"):
        split_pcre("m|a|")
    with pytest.raises(PcreError, match="no closing"):
        split_pcre("/abc")
    f = parse_flags("ismxEGAROB", "x")
    assert (f.anchored, f.relative, f.override_limits, f.rawbytes, f.buffer) == (True, True, True, True, None)


def test_suricata_options():
    assert pcre('pcre:"/get/i";').regex.search(b"GET")
    assert pcre('pcre:"/a.b/s";').regex.search(b"a\nb") and not pcre('pcre:"/a.b/";').regex.search(b"a\nb")
    assert pcre('pcre:"/^b/m";').regex.search(b"a\nb") and not pcre('pcre:"/^b/";').regex.search(b"a\nb")
    assert pcre('pcre:"/a b # comment/x";').regex.search(b"ab")
    assert pcre('pcre:"/a+/G";').regex.search(b"aaa").group(0) == b"a"
    assert not pcre('pcre:"/a$/E";').regex.search(b"a\n") and pcre('pcre:"/a$/";').regex.search(b"a\n")
    p = pcre('pcre:"/b/A";')
    assert p.anchored and p.regex.match(b"ab", 1) and not p.regex.match(b"ab", 0)
    assert pcre('pcre:"/(a)\\1/";').regex.search(b"xaa")  # back-reference: capturing groups after all
    assert pcre('pcre:"/(?<n>a)\\k<n>/";').regex.search(b"aa")
    assert pcre('pcre:"/\\x{41}/";').regex.search(b"A")  # PCRE's \x{..}, not the binding's ALT_BSUX
    with pytest.raises(RuleError, match="PCRE2 does not support"):
        pcre('pcre:"/\\u0041/";')  # Suricata's PCRE2 refuses \u (the binding's ALT_BSUX is off)


def test_match_limit_counts_as_no_match_and_is_counted():
    p = pcre(f'pcre:"/{CATASTROPHIC}/";')
    for rx in (p.regex, guarded(p.regex)):
        before = STATS.limit_hits
        assert rx.search(WORDS) is None
        assert STATS.limit_hits == before + 1
    # a plain search is untouched by the limit
    assert pcre('pcre:"/doctor/";').regex.search(WORDS * 100)
    assert STATS.as_dict()["pcre_limit_hits"] == STATS.limit_hits


def test_limits_are_deterministic_and_configurable_with_O():
    loose = RuleContext(Settings(), {})
    loose.pcre_limits = PcreLimits(match_limit=10_000_000, depth_limit=10_000_000)
    p_builtin = pcre(f'pcre:"/{CATASTROPHIC}/O";')  # O: the settings' limits, defaults equal to Suricata's
    assert b"LIMIT_MATCH=%d)" % DEFAULT_MATCH_LIMIT in p_builtin.regex.pattern
    p_loose = pcre(f'pcre:"/{CATASTROPHIC}/O";', loose)
    assert b"LIMIT_MATCH=10000000)" in p_loose.regex.pattern
    p_plain = pcre(f'pcre:"/{CATASTROPHIC}/";', loose)  # without O the built-in limits apply
    assert b"LIMIT_MATCH=%d)" % DEFAULT_MATCH_LIMIT in p_plain.regex.pattern
    short = WORDS[:24] + b"!"  # fails after more than 3500 steps, far fewer than 10 million
    before = STATS.limit_hits
    assert guarded(p_loose.regex).search(short) is None and STATS.limit_hits == before
    assert guarded(p_plain.regex).search(short) is None and STATS.limit_hits == before + 1
    results = {pcre(f'pcre:"/{CATASTROPHIC}/";').regex.search(WORDS) for _ in range(3)}
    assert results == {None}


def test_rule_limits_cannot_be_raised_from_inside_the_regex():
    p = pcre(f'pcre:"/(*LIMIT_MATCH=99999999){CATASTROPHIC}/";')
    assert p.regex.pattern.startswith(b"(*LIMIT_MATCH=99999999)(*LIMIT_MATCH=3500)")
    before = STATS.limit_hits
    assert p.regex.search(WORDS) is None and STATS.limit_hits == before + 1


def test_match_errors_are_no_match():
    p = pcre('pcre:"/(*UTF)a/";')
    before = STATS.match_errors
    assert p.regex.search(b"\xff a") is None and STATS.match_errors == before + 1
    assert p.regex.search(b"a") is not None


def test_guarded_contract():
    """detect.payload calls guarded(p.regex) once, then search/match(subject, pos) on
    bytes, bytearray or memoryview, reading start()/end() of the result."""
    p = pcre('pcre:"/b+/";')
    rx = guarded(p.regex)
    assert isinstance(rx, CompiledPcre) and guarded(rx) is rx
    for subject in (b"abbc", bytearray(b"abbc"), memoryview(b"abbc")):
        m = rx.search(subject, 0)
        assert (m.start(), m.end()) == (1, 3)
        assert rx.search(subject, 2).start() == 2 and rx.search(subject, 3) is None
        assert rx.match(subject, 1).end() == 3 and rx.match(subject, 0) is None


def test_compile_errors_name_the_offset_in_the_rule():
    with pytest.raises(PcreError, match=r"missing closing parenthesis \(offset 4\)"):
        compile_pcre("ab(c", parse_flags("", ""))
    with pytest.raises(RuleError, match="unsupported keyword 'pcre variable capture'"):
        pcre('pcre:"/(?P<flow_x>a)/";')
    with pytest.raises(RuleError, match="unsupported keyword 'pcre variable capture'"):
        pcre('pcre:"/(a)/, flow:x";')
