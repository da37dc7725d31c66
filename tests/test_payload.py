"""detect/payload: payload keywords with Suricata's inspection semantics."""

from __future__ import annotations

import pytest

from mirrorwatch.core.detect.payload import compile_matches, match
from mirrorwatch.rules import RuleContext, parse_rule
from mirrorwatch.rules.matches import Content
from mirrorwatch.core.settings import Settings

CTX = RuleContext(Settings(), {})


def m(opts: str):
    """The payload keyword list of a rule with these options."""
    return parse_rule(f"alert tcp any any -> any any ({opts} sid:1;)", CTX)[0].matches


def hit(opts: str, buf: bytes, **kw) -> bool:
    return compile_matches(m(opts), **kw)(buf)


# -- content ---------------------------------------------------------------
def test_absolute_content_offset_depth_nocase():
    assert hit('content:"abc";', b"xxabc")
    assert not hit('content:"abc";', b"xxab")
    assert hit('content:"abc"; offset:2;', b"xxabc") and not hit('content:"abc"; offset:3;', b"xxabc")
    # depth counts from offset (Suricata)
    assert hit('content:"abc"; offset:2; depth:3;', b"xxabc")
    assert not hit('content:"abc"; offset:1; depth:3;', b"xxabc")
    assert hit('content:"ABC"; nocase;', b"xxaBc") and not hit('content:"ABC";', b"xxaBc")
    assert hit('content:"|00 ff|";', b"a\x00\xffb")
    assert hit("", b"anything")


def test_relative_distance_within():
    assert hit('content:"a"; content:"b"; distance:1; within:1;', b"axb")
    assert not hit('content:"a"; content:"b"; distance:1; within:1;', b"ab")
    assert not hit('content:"a"; content:"b"; distance:1; within:1;', b"axxb")
    assert hit('content:"ab"; content:"a"; distance:-2; within:1;', b"ab")
    # distance only: anywhere after the previous match
    assert hit('content:"a"; content:"b"; distance:0;', b"a----b")
    assert not hit('content:"a"; content:"b"; distance:0;', b"b----a")


def test_backtracking_retries_earlier_content():
    # the first 'abc' has no 'xyz' within 7, the second has: Suricata retries
    assert hit('content:"abc"; content:"xyz"; within:7;', b"abcdabcdxyz")
    assert hit('content:"a"; content:"b"; within:1;', b"a a a ab")
    # three levels
    assert hit('content:"1"; content:"2"; within:1; content:"3"; within:1;', b"12 12 1 123")
    assert not hit('content:"1"; content:"2"; within:1; content:"3"; within:1;', b"12 12 1 124")
    # pcre R re-run for the next occurrence of the anchor
    assert hit('content:"id="; pcre:"/^\\d+\\;/R";', b"id=x; id=42;")
    assert not hit('content:"id="; pcre:"/^\\d+\\;/R";', b"id=x; id=y;")


def test_a_negated_relative_content_retries_the_content_before_it():
    # detect-distance.c (since 4.0): a negated content with distance sets RELATIVE_NEXT on
    # the content before it, so its next occurrence is tried (UriTestSig21)
    opts = 'content:"a"; content:!"b"; distance:0;'
    assert hit(opts, b"a b a")
    assert not hit(opts, b"a b a b")
    assert hit(opts, b"a c")
    # with within the earlier content is retried too
    assert hit('content:"a"; content:!"b"; distance:0; within:2;', b"ab a")
    assert not hit('content:"a"; content:!"b"; distance:0; within:2;', b"ab ab")
    # three levels: the negated content makes "this" retry, "this"'s within makes "fix" retry
    uri = b"/we_need_to_fix_this_and_yes_fix_this_now"
    assert hit('content:"fix"; content:"this"; within:6; content:!"and"; distance:0;', uri)
    assert not hit('content:"fix"; content:"this"; within:6; content:!"and"; distance:0;', uri + b"and")


def test_negated_content():
    assert hit('content:!"evil";', b"good") and not hit('content:!"evil";', b"an evil one")
    assert hit('content:"GET"; depth:3; content:!"evil"; distance:0;', b"GET /good")
    assert not hit('content:"GET"; depth:3; content:!"evil"; distance:0;', b"GET /evil")
    # negated with depth: only inside the window
    assert hit('content:!"evil"; depth:4;', b"xx evil")
    assert not hit('content:!"evil"; depth:6;', b"xxevil")
    # negated content whose window is empty matches
    assert hit('content:"abc"; content:!"x"; distance:5;', b"abc12")


def test_startswith_endswith():
    assert hit('content:"GET"; startswith;', b"GET /") and not hit('content:"GET"; startswith;', b" GET /")
    assert hit('content:"end"; endswith;', b"the end") and not hit('content:"end"; endswith;', b"end of")
    # endswith keeps looking for an occurrence at the very end
    assert hit('content:"ab"; endswith;', b"ab ab")
    assert hit('content:"x"; content:"ab"; distance:0; endswith;', b"x ab ab")


def test_pcre_relative_and_negated():
    assert hit('content:"user="; pcre:"/^[a-z]+\\r\\n/R";', b"user=bob\r\n")
    assert not hit('content:"user="; pcre:"/^[a-z]+\\r\\n/R";', b"user=B0B\r\n")
    # R anchors '^' at the cursor, not at the buffer start
    assert not hit('content:"x"; pcre:"/^x/R";', b"xy")
    assert hit('pcre:"/a.c/s";', b"a\nc") and not hit('pcre:"/a.c/";', b"a\nc")
    assert hit('pcre:!"/evil/i";', b"good") and not hit('pcre:!"/evil/i";', b"EVIL")
    # the cursor after pcre is the end of its match
    assert hit('pcre:"/a+/"; content:"b"; within:1;', b"aaab")
    assert hit('pcre:"/x/A";', b"xy") and not hit('pcre:"/y/A";', b"xy")


def test_isdataat():
    assert hit("isdataat:3;", b"abcd") and not hit("isdataat:4;", b"abcd")
    assert hit("isdataat:!4;", b"abcd") and not hit("isdataat:!3;", b"abcd")
    assert hit('content:"ab"; isdataat:2,relative;', b"abcd")
    # Suricata: relative is cursor + n <= len
    assert not hit('content:"ab"; isdataat:3,relative;', b"abcd")
    assert hit('content:"ab"; isdataat:!3,relative;', b"abcd")
    # a relative failure retries the earlier content
    assert hit('content:"ab"; isdataat:!1,relative;', b"ab ab")


def test_byte_test():
    assert hit("byte_test:2,=,0x0102,0;", b"\x01\x02")
    assert hit("byte_test:2,=,0x0201,0,little;", b"\x01\x02")
    assert hit("byte_test:1,>,5,1;", b"\x00\x06") and not hit("byte_test:1,>,6,1;", b"\x00\x06")
    assert hit("byte_test:1,!=,5,0;", b"\x06") and not hit("byte_test:1,!=,6,0;", b"\x06")
    assert hit("byte_test:1,&,0x80,0;", b"\x81") and not hit("byte_test:1,&,0x80,0;", b"\x7f")
    assert hit("byte_test:1,^,1,0;", b"\x03") and not hit("byte_test:1,^,3,0;", b"\x03")
    assert hit("byte_test:1,<=,3,0;", b"\x03") and hit("byte_test:1,>=,3,0;", b"\x03")
    assert hit("byte_test:3,=,123,0,string,dec;", b"123") and hit("byte_test:3,=,255,0,string,hex;", b"0ff")
    assert hit("byte_test:3,=,8,0,string,oct;", b"010")
    assert not hit("byte_test:3,=,1,0,string,dec;", b"abc")
    assert hit("byte_test:2,=,0x0a,0,bitmask 0x0ff0;", b"\x00\xa5")
    assert hit('content:"len"; byte_test:1,=,7,1,relative;', b"len:\x07")
    assert not hit("byte_test:4,=,0,2;", b"\x00\x00\x00")  # not enough data


def test_bitmask_applies_to_every_byte_keyword():
    # the mask ANDs the value, then shifts it right past the mask's trailing zero bits
    assert hit('byte_jump:1,0,bitmask 0x0f; content:"X"; within:1;', b"\xf2abX")  # jumps 2, not 242
    assert not hit('byte_jump:1,0; content:"X"; within:1;', b"\xf2abX")
    assert hit("byte_extract:1,0,n,bitmask 0xf0; byte_test:1,=,n,1;", b"\x30\x03")  # 0x30 -> 3
    assert not hit("byte_extract:1,0,n,bitmask 0xf0; byte_test:1,=,n,1;", b"\x30\x30")
    assert hit("byte_math:bytes 1,offset 0,oper +,rvalue 1,result r,bitmask 0xf0; byte_test:1,=,r,1;",
               b"\x20\x03")  # (0x20 masked and shifted = 2) + 1
    assert not hit("byte_math:bytes 1,offset 0,oper +,rvalue 1,result r,bitmask 0xf0; byte_test:1,=,r,1;",
                   b"\x20\x21")


def test_byte_jump():
    # jump over a length field and find a marker right there
    assert hit('byte_jump:1,0; content:"X"; within:1;', b"\x02abX")
    assert not hit('byte_jump:1,0; content:"X"; within:1;', b"\x01abX")
    assert hit('byte_jump:1,0,multiplier 2; content:"X"; within:1;', b"\x01abX")
    assert hit('byte_jump:1,0,align; content:"X"; within:1;', b"\x01abcdX")
    assert hit('byte_jump:1,0,post_offset -1; content:"bX"; within:2;', b"\x02abX")
    assert hit('byte_jump:1,0,from_beginning; content:"X"; within:1;', b"\x02aXb")
    assert hit('byte_jump:0,0,from_end,post_offset -2; content:"yz"; within:2;', b"abcxyz")
    assert hit('byte_jump:2,0,string,dec; content:"X"; within:1;', b"02abX")
    assert not hit("byte_jump:1,0;", b"\x09abc")  # beyond the end
    assert hit("byte_jump:1,0;", b"\x02ab")  # exactly at the end is allowed
    # a jump before the start is clamped to the start
    assert hit('byte_jump:1,0,from_beginning,post_offset -5; content:"|00|"; within:1;', b"\x00abc")


def test_byte_extract_variables():
    # a length-prefixed string: the length bounds the next content
    rule = 'byte_extract:1,0,n; content:"abc"; offset:1; depth:n;'
    assert hit(rule, b"\x03abc") and not hit(rule, b"\x02abc")
    rule = 'content:"L="; byte_extract:1,0,n,relative; content:"Z"; distance:n; within:1;'
    assert hit(rule, b"L=\x02abZ") and not hit(rule, b"L=\x01abZ")
    assert hit("byte_extract:1,0,v; byte_test:1,=,v,1;", b"\x05\x05")
    assert not hit("byte_extract:1,0,v; byte_test:1,=,v,1;", b"\x05\x06")
    assert hit("byte_extract:1,0,v,multiplier 4; byte_test:1,=,v,1;", b"\x02\x08")
    assert hit("byte_extract:1,0,v,align 4; byte_test:1,=,v,1;", b"\x05\x08")
    assert hit("byte_extract:2,0,v,string,dec; byte_test:1,=,v,2;", b"12\x0c")
    # isdataat with a variable
    assert hit("byte_extract:1,0,v; isdataat:v;", b"\x02ab") and not hit("byte_extract:1,0,v; isdataat:v;", b"\x03ab")
    ctx: dict = {}
    assert compile_matches(m('content:"k"; byte_extract:1,0,v,relative;'))(b"k\x09", ctx)
    assert ctx == {"end": 2, "vars": {"v": 9}}


def test_byte_math():
    assert hit("byte_math:bytes 1, offset 0, oper +, rvalue 2, result r; byte_test:1,=,r,1;", b"\x03\x05")
    assert hit("byte_math:bytes 1, offset 0, oper <<, rvalue 1, result r; byte_test:1,=,r,1;", b"\x03\x06")
    assert not hit("byte_math:bytes 1, offset 0, oper /, rvalue 0, result r;", b"\x03")


@pytest.mark.parametrize("oper, value, rvalue, result", [
    ("+", 200, 100, 300), ("-", 3, 5, (3 - 5) & (2**64 - 1)), ("*", 7, 6, 42), ("/", 7, 2, 3),
    ("<<", 3, 4, 48), (">>", 200, 3, 25)])
def test_byte_math_operators_wrap_to_64_bits(oper, value, rvalue, result):
    ctx: dict = {}
    matches = m(f"byte_math:bytes 1, offset 0, oper {oper}, rvalue {rvalue}, result r;")
    assert compile_matches(matches)(bytes([value]), ctx)
    assert ctx["vars"] == {"r": result}


def test_bsize_and_dsize_helpers():
    assert hit("file.data; bsize:4;", b"abcd") and not hit("file.data; bsize:4;", b"abc")
    assert hit("file.data; bsize:2<>5;", b"abc") and not hit("file.data; bsize:2<>5;", b"abcde")


def test_recursion_limit_is_a_no_match():
    opts = 'content:"a"; content:"b"; within:1;'
    buf = b"a " * 200 + b"ab"
    assert hit(opts, buf)
    assert not hit(opts, buf, recursion_limit=50)
    # pathological: many anchors, nothing completes — still terminates quickly
    assert not hit('content:"a"; content:"a"; within:5; content:"b"; within:1;', b"a" * 5000)


def test_match_wrapper_caches_and_accepts_bytearray_and_memoryview():
    ms = m('content:"x"; pcre:"/y/R";')
    assert match(ms, bytearray(b"axy")) and match(ms, memoryview(b"axy")) and not match(ms, b"ayx")
    with pytest.raises(ValueError):
        compile_matches([object()])
    assert compile_matches([Content(pattern=b"q")])(b"q")


def test_pcre_search_is_bounded():
    """A pcre that backtracks without end on crafted input stops at PCRE2's match limit
    (Suricata's match-limit): no match, counted, and the same on any machine."""
    from mirrorwatch.rules.pcre import STATS

    before = STATS.limit_hits
    assert not hit('pcre:"/^(\\w+\\s?)*$/";', b"an ordinary sentence with enough words to explode!" * 2)
    assert STATS.limit_hits == before + 1
    # ET 2102599 finishes quickly under PCRE2 and is not cut
    assert hit('pcre:"/sname\\s*:=/";', b"x" * 4096 + b"sname :=")
    assert STATS.limit_hits == before + 1


# -- property: content chains against a brute-force search --------------------
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402


def _brute(first, rest, buf: bytes) -> bool:
    """Exhaustive search over occurrences: the meaning of a chain whose relative
    contents all carry ``within`` (Suricata retries every earlier occurrence)."""
    pat, off, depth = first
    end = len(buf) if depth is None else min(len(buf), off + depth)

    def chain(i: int, cur: int) -> bool:
        if i == len(rest):
            return True
        p, dist, within = rest[i]
        lo = max(0, cur + dist)
        hi = min(len(buf), cur + dist + within)
        return any(buf.startswith(p, s) and chain(i + 1, s + len(p)) for s in range(lo, hi - len(p) + 1))

    return any(buf.startswith(pat, s) and chain(0, s + len(pat)) for s in range(off, end - len(pat) + 1))


_pat = st.binary(min_size=1, max_size=3).map(lambda b: bytes(0x61 + x % 2 for x in b))


@hsettings(max_examples=300, deadline=None)
@given(first=st.tuples(_pat, st.integers(0, 4), st.one_of(st.none(), st.integers(3, 12))),
       rest=st.lists(st.tuples(_pat, st.integers(-3, 3), st.integers(3, 8)), min_size=1, max_size=3),
       buf=st.binary(max_size=40).map(lambda b: bytes(0x61 + x % 2 for x in b)))
def test_content_chain_matches_brute_force(first, rest, buf):
    pat, off, depth = first
    if depth is not None and depth < len(pat):
        depth = len(pat)
    opts = f'content:"{pat.decode()}"; offset:{off};' + (f" depth:{depth};" if depth is not None else "")
    for p, dist, within in rest:
        within = max(within, len(p))
        opts += f' content:"{p.decode()}"; distance:{dist}; within:{within};'
    rest = [(p, d, max(w, len(p))) for p, d, w in rest]
    assert hit(opts, buf) == _brute((pat, off, depth), rest, buf), opts


def test_byte_test_string_of_zero_bytes_reads_the_rest_of_the_buffer():
    """ET's http.content_len rules: byte_test:0,>,N,0,string,dec reads every digit (Suricata 7)."""
    assert hit("http.content_len; byte_test:0,>,100000,0,string,dec;", b"1048576")
    assert not hit("http.content_len; byte_test:0,>,100000,0,string,dec;", b"512")
    assert not hit("http.content_len; byte_test:0,>,1,0,string,dec;", b"abc")


def test_content_positions_from_huge_variables():
    # a byte_extract value past any buffer (here past 64 bits with the multiplier) as a content's
    # offset, depth, distance or within: the content cannot be there; negated, it is absent
    big = b"\xff" * 8
    assert not hit('byte_extract:8,0,v,multiplier 16; content:"x"; offset:v;', big + b"x")
    assert hit('byte_extract:8,0,v,multiplier 16; content:!"x"; offset:v;', big + b"x")
    assert not hit('byte_extract:8,0,v,multiplier 16; content:"x"; distance:v;', big + b"x")
    assert hit('byte_extract:8,0,v; content:"x"; depth:v;', big + b"x")
    assert hit('byte_extract:8,0,v; content:"x"; within:v;', big + b"x")
    # the same keywords with a small value find the content where it is
    assert hit('byte_extract:8,0,v; content:"x"; offset:v;', b"\x00" * 7 + b"\x08x")
    assert not hit('byte_extract:8,0,v; content:"x"; offset:v;', b"\x00" * 7 + b"\x09x")
