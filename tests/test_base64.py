"""base64_decode and base64_data (Suricata 7's detect-base64-decode.c, detect-base64-data.c,
util-base64.c): the decoder, the keywords' syntax, matching on crafted buffers, and rules on
an HTTP request body and a TCP stream through the real Engine."""

from __future__ import annotations

import base64

import pytest

from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.payload_b64 import decode_rfc4648
from mirrorwatch.core.detect.plan import compile_all
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, load_rules, parse_rule
from mirrorwatch.rules.matches import Base64Decode, Content
from test_detect import Conv, engine, run, sids


def parse(opts: str, header: str = "alert tcp any any -> any any"):
    return parse_rule(f"{header} ({opts} sid:1;)", RuleContext(Settings(), {}))


@pytest.mark.parametrize("src, want", [
    # util-base64.c's B64TestVectorsRFC4648
    (b"", b""), (b"Zg==", b"f"), (b"Zm8=", b"fo"), (b"Zm9v", b"foo"), (b"Zm9vYg==", b"foob"),
    (b"Zm9vYmE=", b"fooba"), (b"Zm9vYmFy", b"foobar"), (b"Zm 9v Ym Fy", b"f"), (b"Zm$9vYm.Fy", b"f"),
    (b"Y21Wd2IzSjBaVzFoYVd4bWNtRjFaRUJoZEc4dVoyOTJMbUYxOmpqcHh4b3Rhb2w%3D",
     b"cmVwb3J0ZW1haWxmcmF1ZEBhdG8uZ292LmF1:jjpxxotaol"),
    # '=' is padding wherever it stands, and decoding goes on after it
    (b"QQ==QUJD", b"AABC"), (b"Q=QQ", b"@\x04"), (b"====", b""),
    # a trailing block: cut by an invalid character 1, 1, 2 bytes; at the end 0, 1, 2
    (b"QUJDQ!", b"ABC@"), (b"QUJDQU!", b"ABCA"), (b"QUJDQUI!", b"ABCAB"),
    (b"QUJDQ", b"ABC"), (b"QUJDQU", b"ABCA"), (b"QUJDQUI", b"ABCAB"), (b"QUI=\r\n", b"AB"),
    (b"QQ=", b"A\x00"),  # a trailing block's '=' is not padding: 3 characters give 2 bytes
])
def test_decoder_is_suricatas_rfc4648_mode(src, want):
    assert decode_rfc4648(src) == want


@pytest.mark.parametrize("opts, want, warned", [
    ("base64_decode;", Base64Decode(65535), False),
    ("base64_decode:bytes 64, offset 0, relative;", Base64Decode(64, 0, True), False),
    ("base64_decode:bytes 0;", Base64Decode(65535), False),  # 0: BASE64_DECODE_MAX
    ("base64_decode:offset 4294967295;", Base64Decode(65535, 4294967295), False),
    ("base64_decode:bytes 30 offset 2 relative;", Base64Decode(30, 2, True), False),
    ("base64_decode:relative, bytes 10;", Base64Decode(65535, 0, True), True),  # Suricata ignores the bytes
])
def test_base64_decode_syntax(opts, want, warned):
    rule, warnings = parse(opts + " base64_data;")
    got = rule.matches[0]
    assert (got.nbytes, got.offset, got.relative, got.buffer) == (want.nbytes, want.offset, want.relative, "payload")
    assert bool(warnings) == warned


@pytest.mark.parametrize("opts, why", [
    ("base64_decode:bytes 65536;", "base64_decode: bytes 65536 is above 65535"),
    ("base64_decode:offset 4294967296;", "base64_decode: offset 4294967296 is above 4294967295"),
    ("base64_decode:bytes 10, rel;", "base64_decode: unknown option 'rel'"),
    ("base64_decode:offset 1, bytes 2;", "base64_decode: unknown option 'bytes'"),
    ("base64_decode:,;", "base64_decode: ',' is not"),
    ("base64_data; content:\"x\";", "'base64_data' needs a base64_decode before it"),
    ("base64_decode; base64_data:1;", "base64_data"),
    ("base64_decode; base64_data; to_lowercase;", "transform 'to_lowercase' cannot apply to base64_data"),
    ("base64_decode; base64_data; content:\"x\"; http_uri;", "sticky buffer 'base64_data'"),
    ("base64_decode; base64_data; content:\"x\"; pkt_data; base64_decode;", "decoding decoded data"),
])
def test_base64_bad_syntax_is_one_line(opts, why):
    with pytest.raises(RuleError, match=why) as e:
        parse(opts)
    assert "\n" not in str(e.value)


def test_a_bad_base64_decode_is_reported_with_its_file_line_and_sid(tmp_path):
    f = tmp_path / "t.rules"
    f.write_text('alert tcp any any -> any any (content:"a"; base64_decode:bytes 99999; sid:7;)\n')
    assert load_rules([f], Settings()).skip_lines() == [f"{f}:1: sid 7: base64_decode: bytes 99999 is above 65535"]


def test_base64_data_keywords_stay_out_of_the_buffers_lists():
    rule, _ = parse('http.request_body; content:"a="; base64_decode:relative; base64_data; content:"secret"; '
                    'fast_pattern; http.uri; content:"/u";', "alert http any any -> any any")
    assert [(type(m).__name__, m.buffer) for m in rule.matches] == [
        ("Content", "http.request_body"), ("Base64Decode", "http.request_body"), ("Content", "http.uri")]
    assert rule.matches[1].data == [Content(b"secret", fast_pattern=True, buffer="base64_data")]
    # without a sticky buffer base64_decode joins the buffer of the last content (moved by http_uri)
    rule, _ = parse('content:"p"; content:"a="; http_uri; base64_decode:relative; base64_data; content:"x";')
    assert [m.buffer for m in rule.matches] == ["payload", "http.uri", "http.uri"]
    # the fast pattern comes from the buffers' contents, never from base64_data (no prefilter there)
    crules, _ = compile_all([parse('content:"ab"; base64_decode; base64_data; content:"longer-one";')[0]])
    assert crules[0].fp == (b"ab", False)


def match(opts: str, buf: bytes, ctx: dict | None = None) -> bool:
    return compile_matches(parse(opts)[0].matches)(buf, ctx)


ENC = base64.b64encode(b"hello secret world")  # aGVsbG8gc2VjcmV0IHdvcmxk


def test_decode_from_the_cursor_offset_and_bytes():
    buf = b"xx k=" + ENC + b" tail"
    assert match('content:"k="; base64_decode:relative; base64_data; content:"secret";', buf)
    assert not match('content:"k="; base64_decode; base64_data; content:"secret";', buf)  # from 0: 'xx' is invalid
    assert match('base64_decode:offset 5; base64_data; content:"secret"; content:"world"; distance:0;', buf)
    assert not match('base64_decode:bytes 8, offset 5; base64_data; content:"secret";', buf)  # 8 chars: 6 bytes
    assert match('base64_decode:bytes 8, offset 5; base64_data; content:"hello"; startswith;', buf)
    assert match('content:"k="; base64_decode:offset 8,relative; base64_data; content:"secret"; startswith;', buf)
    assert not match('content:"k="; base64_decode:offset 99,relative; base64_data; content:"h";', buf)
    assert match('content:"k="; base64_decode:relative; base64_data; content:"SECRET"; nocase; '
                 'content:"WORLD"; nocase; within:6;', buf)
    ctx: dict = {}
    assert match('content:"k="; base64_decode:bytes 12, relative; base64_data; content:"hello";', buf, ctx)
    assert ctx["end"] == 5 + 12  # the match ends where the decoded input ended


def test_base64_data_is_a_terminal_list_and_nothing_decoded_is_no_match():
    buf = b"k=" + ENC + b" tail"
    # keywords after base64_decode in its own buffer are never evaluated
    assert match('content:"k="; base64_decode:relative; content:"never-there"; base64_data; content:"secret";', buf)
    # without base64_data a base64_decode never matches; nor when it decodes nothing
    assert not match('content:"k="; base64_decode:relative;', buf)
    assert not match('content:"tail"; base64_decode:relative; base64_data; content:"h";', buf)
    # a failing base64_data ends the inspection: the content is not tried at its next 'k='
    assert not match('content:"k="; base64_decode:relative; base64_data; content:"secret";', b"k=!! k=" + ENC)
    # a pcre in base64_data sees the decoded bytes only
    assert match('content:"k="; base64_decode:relative; base64_data; pcre:"/^hello s/";', buf)


def test_http_request_body_rule_like_et_open_alerts_once():
    eng = engine("""
alert http any any -> any any (msg:"b64 body"; flow:established,to_server; http.method; content:"POST"; http.request_body; content:"SAMLResponse="; startswith; fast_pattern; base64_decode:offset 0, relative; base64_data; content:"getRuntime()"; sid:1;)
alert http any any -> any any (msg:"not there"; flow:established,to_server; http.request_body; content:"SAMLResponse="; base64_decode:offset 0, relative; base64_data; content:"exec("; sid:2;)
""")
    body = b"SAMLResponse=" + base64.b64encode(b"<x>java.lang.Runtime.getRuntime().run</x>")
    req = b"POST /sso HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    conv = Conv()
    frames = conv.handshake() + [conv.client(req), conv.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]
    assert sids(run(eng, frames + conv.close())) == [1]


def test_stream_rule_like_et_open_smtp_decodes_after_the_headers():
    eng = engine("""
alert tcp any any -> any 25 (msg:"b64 part"; content:"Content-Transfer-Encoding|3a| base64"; content:"|0d 0a 0d 0a|"; distance:0; base64_decode:offset 0,relative; base64_data; content:"IPM.Task"; sid:1;)
""")
    part = base64.b64encode(b"\x78\x9f\x3e\x22 IPM.Task \\\\host\\x")
    conv = Conv(dport=25)
    frames = conv.handshake() + [conv.client(b"Content-Transfer-Encoding: base64\r\n\r\n" + part[:20]),
                                 conv.client(part[20:] + b"\r\n.\r\n"), conv.ack_from_server()]
    alerts = run(eng, frames + conv.close())
    assert [(a.rule.sid, a.stream) for a in alerts] == [(1, 1)]


@pytest.mark.slow
def test_et_open_base64_and_flowint_rules_load(et_open_rules):
    rs = et_open_rules
    users = [r for r in rs.rules if r.flowints or any(isinstance(m, Base64Decode) for m in r.matches)]
    # measured: 18 base64_decode and 8 flowint rules, all skipped before; 24767 -> 24793 loaded
    assert len(users) == 26 and not [s for s in rs.skipped if "base64" in s[3] or "flowint" in s[3]]
    crules, skipped = compile_all(users)
    assert not skipped
    for cr in crules:  # every matcher compiles
        if cr.matches:
            compile_matches(cr.matches)
        for groups in (cr.tx.groups.values() if cr.tx is not None else ()):
            for g in groups:
                compile_matches(g.matches)


def test_replay_twice_the_second_time_from_the_rule_cache(tmp_path):
    from test_xbits import A, B, T0, alerts, datagram, replay

    rules = """
alert udp any any -> any any (msg:"b64"; content:"k="; base64_decode:bytes 24, relative; base64_data; content:"secret"; content:"world"; distance:0; flowint:seen,+,1; sid:1;)
alert udp any any -> any any (msg:"second"; content:"k="; flowint:seen,==,2; sid:2;)
"""
    frames = [p for i in range(3) for p in datagram(T0 + i, A, B, b"k=" + ENC)]
    want = [(1, A, 0.0), (1, A, 1.0), (2, A, 1.0), (1, A, 2.0)]
    assert alerts(replay(tmp_path, rules, frames)) == want
    assert alerts(replay(tmp_path, rules, frames)) == want  # the rules unpickled from the rule cache
