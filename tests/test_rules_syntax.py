"""Rule syntax as Suricata splits it, and two properties over generated rules:
a rule built from a small grammar parses back to the fields it was built from,
and a rule damaged at its seams (a lost ';', a lost '"', a ':' turned into
something else) is refused or parses to exactly the same fields, never to
another meaning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, RuleSet, load_text, parse_rule
from mirrorwatch.rules.classification import load_classification
from mirrorwatch.rules.matches import Content, Pcre
from mirrorwatch.rules.options import split_options

CTX = RuleContext(Settings(), load_classification()[0])
HEAD = "alert tcp any any -> any 80 "


def parse(text: str):
    return parse_rule(text, CTX)[0]


def reason(text: str) -> str:
    with pytest.raises(RuleError) as e:
        parse(text)
    return str(e.value)


def test_a_value_that_runs_into_the_next_option_is_refused_with_file_and_line():
    rs = RuleSet()
    load_text(HEAD + '(msg:"broken" content:"abc"; sid:1;)\n' + HEAD + '(msg:"fine"; content:"abc"; sid:2;)\n',
              "t.rules", CTX, rs)
    assert [r.sid for r in rs.rules] == [2]
    assert rs.skip_lines() == ["t.rules:1: sid 1: 'msg' value holds an unescaped '\"' (missing ';'?)"]


@pytest.mark.parametrize("opts, why", [
    ('msg:"x"; content:"abc" nocase; sid:1;', "'content' value is not closed by '\"'"),
    ('msg:"x"; content:abc; sid:1;', "'content' needs a double-quoted value"),
    ('msg:x; sid:1;', "'msg' needs a double-quoted value"),
    ('msg:"x"; sid:"1";', "'sid' does not take a quoted value"),
    ('msg:"x"; sid:1"; rev:1;', "'sid' value holds a '\"'"),
    ('msg:"x\\"; sid:1;', "'msg' value is not closed by '\"'"),
    ('msg:"x"; sid:1 rev:2;', "'sid' value runs into 'rev:'"),
    ('msg:"x"; metadata:a b rev:2; sid:1;', "'metadata' value runs into 'rev:'"),
    ('msg:"x"; metadata:a b:rev:2; sid:1;', "'metadata' value runs into 'rev:'"),
    ('msg:"x"; nocase depth:3; sid:1;', "bad keyword 'nocase depth'"),
    ('msg:"x"; content:"a"; nocase:1; sid:1;', "'nocase' takes no value"),
    ('msg:"x"; content; sid:1;', "'content' needs a value"),
    ('msg:"x"; content:""; sid:1;', "'content' has an empty value"),
    ('msg:"x"; content:!; sid:1;', "'content' needs a value after '!'"),
    ('msg:"x"; sid:1', "has no terminating ';'"),
    ('msg:"x"; sid:0x10;', "sid: not a decimal number"),
    ('msg:"x"; sid:1; sid:2;', "more than one 'sid'"),
    ('msg:"x"; rev:0; sid:1;', "rev: 0 out of range"),
    ('msg:"x"; classtype:bad name; sid:1;', "classtype: bad name"),
    ('msg:"x"; pcre:"/a/i" content:"/b/"; sid:1;', "'pcre' value runs into 'content:'"),
    ('msg:"x"; pcre:/a/ content:"/b/"; sid:1;', "'pcre' value runs into 'content:'"),
    ('msg:"x"; pcre:"/a/i x"; sid:1;', "unknown modifier ' '"),
    ('msg:"x"; content:"a|4|"; sid:1;', "bad hex"),
    ('msg:"x"; content:"a\\x"; sid:1;', "invalid escape"),
])
def test_malformed_options_are_refused(opts, why):
    assert why in reason(HEAD + "(" + opts + ")")


def test_suricata_splitting():
    assert split_options('msg:"a\\;b"; content:"|3b|"; nocase; fast_pattern:only;') == [
        ("msg", '"a\\;b"'), ("content", '"|3b|"'), ("nocase", None), ("fast_pattern", "only")]
    r = parse(HEAD + '( msg : "semi\\; colon\\: quote\\" back\\\\" ; content:"a\\;b|3a 2c,3b|"; sid : 7 ; )')
    assert r.msg == 'semi; colon: quote" back\\' and r.matches[0].pattern == b"a;b:,;" and r.sid == 7
    r = parse(HEAD + '(msg:"x"; reference:url,"example.com/a?b=1"; metadata:k v, lonely, k2  v2 v3; sid:1;)')
    assert r.references == ["url,example.com/a?b=1"] and r.metadata == ["k v", "k2 v2 v3"]
    assert parse(HEAD + '(msg:"(paren)"; pcre:"/(%22|")x/"; sid:1;)').msg == "(paren)"  # a bare quote in a regex


# -- the grammar ----------------------------------------------------------------
_MSG_CHARS = st.sampled_from(list("abcXYZ019 -_.,()") + ['"', ";", "\\", ":"])
_BYTES = st.sampled_from(list(b"abcXYZ0189 -_./") + [0x00, 0x3B, 0x22, 0x7C, 0x5C, 0x3A, 0xFF, 0x80])
_REGEXES = ["a+b", "^GET\\s", "[0-9]{2,4}", "x(?:y|z)", "\\x41\\x42", "(a)\\1"]


def _msg_text(m: str) -> str:
    return "".join("\\" + c if c in '";\\' else c for c in m)


def _content_text(b: bytes) -> str:
    out = []
    for c in b:
        ch = chr(c)
        if ch in '";\\:':
            out.append("\\" + ch)
        elif ch == "|" or not 0x20 <= c < 0x7F:
            out.append(f"|{c:02x}|")
        else:
            out.append(ch)
    return "".join(out)


@st.composite
def contents(draw):
    pattern = bytes(draw(st.lists(_BYTES, min_size=1, max_size=8)))
    mode = draw(st.sampled_from(["none", "abs", "rel"]))
    c = {"pattern": pattern, "negated": draw(st.booleans()), "nocase": draw(st.booleans()),
         "offset": None, "depth": None, "distance": None, "within": None}
    if mode == "abs":
        c["offset"] = draw(st.none() | st.integers(0, 50))
        c["depth"] = draw(st.none() | st.integers(len(pattern), 60))
    elif mode == "rel":
        c["distance"] = draw(st.none() | st.integers(-5, 50))
        c["within"] = draw(st.none() | st.integers(len(pattern), 60))
    return c


@st.composite
def rules(draw):
    """-> (fields, [(text, kind)]): the rule as its expected fields and as pieces,
    each piece tagged with what damaging it means."""
    f = {"msg": "".join(draw(st.lists(_MSG_CHARS, min_size=1, max_size=12))),
         "sid": draw(st.integers(1, 10**6)), "rev": draw(st.integers(1, 99)),
         "flow": draw(st.sampled_from([None, "established,to_server", "to_client"])),
         "contents": draw(st.lists(contents(), min_size=1, max_size=3)),
         "pcre": draw(st.none() | st.tuples(st.sampled_from(_REGEXES), st.sampled_from(["", "i", "s", "R", "smi"]))),
         "metadata": draw(st.lists(st.tuples(st.sampled_from(["created_at", "former_category", "tag"]),
                                             st.sampled_from(["2020_01_01", "MALWARE", "web client"])),
                                   max_size=2))}
    opts = [("msg", '"' + _msg_text(f["msg"]) + '"')]
    if f["flow"]:
        opts.append(("flow", f["flow"]))
    for c in f["contents"]:
        opts.append(("content", ("!" if c["negated"] else "") + '"' + _content_text(c["pattern"]) + '"'))
        if c["nocase"]:
            opts.append(("nocase", None))
        for mod in ("offset", "depth", "distance", "within"):
            if c[mod] is not None:
                opts.append((mod, str(c[mod])))
    if f["pcre"]:
        opts.append(("pcre", f'"/{f["pcre"][0]}/{f["pcre"][1]}"'))
    if f["metadata"]:
        opts.append(("metadata", ", ".join(f"{k} {v}" for k, v in f["metadata"])))
    opts += [("sid", str(f["sid"])), ("rev", str(f["rev"]))]
    return f, opts


def _render(opts) -> str:
    return HEAD + "(" + " ".join(f"{k}:{v};" if v is not None else f"{k};" for k, v in opts) + ")"


def _fields(r) -> tuple:
    cs = [(m.pattern, m.negated, m.nocase, m.offset, m.depth, m.distance, m.within)
          for m in r.matches if isinstance(m, Content)]
    ps = [(m.source, m.flags) for m in r.matches if isinstance(m, Pcre)]
    flow = None if r.flow is None else (r.flow.established, r.flow.direction)
    return (r.msg, r.sid, r.rev, flow, cs, ps, r.metadata)


def _expected(f) -> tuple:
    cs = [(c["pattern"], c["negated"], c["nocase"], c["offset"], c["depth"], c["distance"], c["within"])
          for c in f["contents"]]
    flow = None if f["flow"] is None else ("established" in f["flow"],
                                          "to_server" if "to_server" in f["flow"] else "to_client")
    ps = [f["pcre"]] if f["pcre"] else []
    return (f["msg"], f["sid"], f["rev"], flow, cs, ps, [f"{k} {v}" for k, v in f["metadata"]])


@hsettings(max_examples=300, deadline=None)
@given(rules())
def test_generated_rules_round_trip(rule):
    fields, opts = rule
    assert _fields(parse(_render(opts))) == _expected(fields)


def _damage(text: str, kind: str, n: int) -> str | None:
    """The n-th seam of that kind damaged, or None when the rule has fewer."""
    body_start = text.index("(") + 1
    seams, in_quote, i = [], False, body_start
    while i < len(text) - 1:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
            if kind == "quote":
                seams.append((i, ""))
        elif not in_quote and c == ";" and kind in ("semicolon", "semi_colon"):
            seams.append((i, "" if kind == "semicolon" else ":"))
        elif not in_quote and c == ":" and kind in ("colon_semi", "colon_space") and text[i - 1].isalpha():
            seams.append((i, ";" if kind == "colon_semi" else " "))
        i += 1
    if not seams:
        return None
    pos, new = seams[n % len(seams)]
    return text[:pos] + new + text[pos + 1:]


@pytest.mark.slow
@hsettings(max_examples=600, deadline=None)
@given(rules(), st.sampled_from(["semicolon", "semi_colon", "quote", "colon_semi", "colon_space"]),
       st.integers(0, 60))
def test_damaged_rules_are_refused_never_misread(rule, kind, n):
    fields, opts = rule
    damaged = _damage(_render(opts), kind, n)
    if damaged is None:
        return
    try:
        r = parse(damaged)
    except RuleError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert _fields(r) == _expected(fields), damaged
