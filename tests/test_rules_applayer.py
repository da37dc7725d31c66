"""The application-layer rule language: protocols, sticky buffers, legacy modifiers,
transforms, urilen/bsize, pcre buffer flags and the TLS / DNS value keywords."""

from __future__ import annotations

import pytest

from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, parse_rule
from mirrorwatch.rules.buffers import BUFFERS, MODIFIERS, STICKY
from mirrorwatch.rules.classification import load_classification
from mirrorwatch.rules.matches import Bsize, ByteTest, IsDataAt, Pcre
from mirrorwatch.rules.model import AppCheck

CTX = RuleContext(Settings(), load_classification()[0])


def rule(opts: str, header: str = "alert tcp any any -> any any"):
    return parse_rule(f"{header} ({opts} sid:1;)", CTX)[0]


def reason(opts: str, header: str = "alert tcp any any -> any any") -> str:
    with pytest.raises(RuleError) as e:
        rule(opts, header)
    return str(e.value)


def where(r) -> list[tuple[str, str, tuple]]:
    return [(type(m).__name__, m.buffer, m.transforms) for m in r.matches]


def test_header_protocols_and_transports():
    r = rule('http.uri; content:"/a";', "alert http any any -> any any")
    assert (r.app_proto, r.proto, r.transport) == ("http", "tcp", ("tcp",))
    r = rule('dns.query; content:"evil";', "alert dns any any -> any 53")
    assert (r.app_proto, r.proto, r.transport) == ("dns", "ip", ("tcp", "udp"))
    r = rule('dns.query; content:"evil";', "alert udp any any -> any 53")  # implied by the buffer
    assert (r.app_proto, r.proto, r.transport) == ("dns", "udp", ("udp",))
    r = rule('http.uri; content:"/a";', "alert ip any any -> any any")
    assert (r.app_proto, r.proto, r.transport) == ("http", "tcp", ("tcp",))
    for word, app in (("smtp", "smtp"), ("ftp", "ftp"), ("smb", "smb"), ("ssh", "ssh"), ("dcerpc", "dcerpc")):
        assert rule('content:"x";', f"alert {word} any any -> any any").app_proto == app
    assert "cannot be used on a udp rule" in reason('http.uri; content:"a";', "alert udp any any -> any any")
    assert "cannot be used on a icmp rule" in reason('tls.sni; content:"a";', "alert icmp any any -> any any")
    assert "'tls.sni' is tls, the rule is http" in reason('tls.sni; content:"a";', "alert http any any -> any any")
    assert reason('content:"x";', "alert http2 any any -> any any") == "unsupported protocol 'http2'"


def test_every_sticky_spelling_records_the_canonical_buffer():
    fingerprint = ":".join(["4c"] * 20)
    for spelling, name in STICKY.items():
        r = rule(f'{spelling}; content:"{fingerprint if name == "tls.cert_fingerprint" else "x"}";')
        assert r.matches[0].buffer == name, spelling
        assert r.app_proto == BUFFERS[name].app_proto
    assert rule('http_accept; content:"x";').matches[0].buffer == "http.accept"
    assert rule('ja3_hash; content:"x";').matches[0].buffer == "ja3.hash"


def test_sticky_buffer_scope_and_pkt_data():
    r = rule('content:"a"; http.uri; content:"b"; pcre:"/c/R"; byte_test:1,=,1,0,relative; '
             'isdataat:1,relative; bsize:>3; pkt_data; content:"d"; isdataat:2; http.host; content:"e";')
    assert where(r) == [("Content", "payload", ()), ("Content", "http.uri", ()), ("Pcre", "http.uri", ()),
                        ("ByteTest", "http.uri", ()), ("IsDataAt", "http.uri", ()), ("Bsize", "http.uri", ()),
                        ("Content", "payload", ()), ("IsDataAt", "payload", ()), ("Content", "http.host", ())]
    assert reason('http.uri; http.host; content:"x";') == "sticky buffer 'http.uri' has no matches"
    assert reason('content:"x"; http.uri;') == "sticky buffer 'http.uri' has no matches"


def test_legacy_modifier_moves_the_last_payload_content():
    r = rule('content:"GET"; http_method; content:"/x"; http_uri; content:"y"; distance:0; http_uri; '
             'content:"pay"; byte_test:1,=,1,0,relative;')
    assert where(r) == [("Content", "http.method", ()), ("Content", "http.uri", ()), ("Content", "http.uri", ()),
                        ("Content", "payload", ()), ("ByteTest", "payload", ())]
    # distance/within stay on the moved content: relative to the previous http.uri content
    assert r.matches[2].pattern == b"y" and r.matches[2].distance == 0
    # the move takes the last *payload* content, whatever came after it, to the list's tail
    r = rule('content:"a"; content:"b"; http_uri; pcre:"/c/"; content:"d"; http_header; http_uri;')
    assert [(type(m).__name__, m.buffer, getattr(m, "pattern", None)) for m in r.matches] == [
        ("Content", "http.uri", b"b"), ("Pcre", "payload", None), ("Content", "http.header", b"d"),
        ("Content", "http.uri", b"a")]
    # a relative byte keyword after a moved content joins that content's buffer (Suricata)
    r = rule('content:"a"; http_uri; byte_test:1,=,1,0,relative; isdataat:!2,relative;')
    assert where(r)[1:] == [("ByteTest", "http.uri", ()), ("IsDataAt", "http.uri", ())]
    assert rule('uricontent:"/x";').matches[0].buffer == "http.uri"
    for keyword, name in MODIFIERS.items():
        assert rule(f'content:"x"; {keyword};').matches[0].buffer == name
    assert "while sticky buffer 'http.uri' is set" in reason('http.uri; content:"a"; content:"b"; http_header;')
    assert "needs a preceding content" in reason("http_uri;")
    assert "cannot be used with rawbytes" in reason('content:"a"; rawbytes; http_uri;')
    assert "'http_uri' is http, the rule is dns" in reason('content:"a"; http_uri;', "alert dns any any -> any any")


def test_transforms():
    r = rule('http.uri; to_lowercase; dotprefix; content:".php"; content:"x"; http.host; content:"a";')
    assert where(r) == [("Content", "http.uri", ("to_lowercase", "dotprefix")),
                        ("Content", "http.uri", ("to_lowercase", "dotprefix")), ("Content", "http.host", ())]
    r = rule('tls.sni; content:"a"; compress_whitespace; content:"b";')  # Suricata: a new transformed list
    assert where(r) == [("Content", "tls.sni", ()), ("Content", "tls.sni", ("compress_whitespace",))]
    r = rule('http.request_body; xor:"0D0AC8FF"; strip_whitespace; url_decode; content:"x"; bsize:<9;')
    assert r.matches[0].transforms == ("xor:0d0ac8ff", "strip_whitespace", "url_decode")
    assert r.matches[1].transforms == r.matches[0].transforms  # bsize of the transformed buffer
    assert reason('dotprefix; content:"a";') == "transform 'dotprefix' needs a sticky buffer before it"
    assert "must directly follow a sticky buffer" in reason('dns.query; dotprefix; content:"a"; to_uppercase; '
                                                            'content:"b"; to_lowercase;')
    assert "not followed by a match" in reason('http.uri; dotprefix; http.host; content:"a";')
    assert "not followed by a match" in reason('content:"x"; http.uri; dotprefix;')
    assert "xor: key must be hex" in reason('http.uri; xor:"0d0"; content:"a";')
    assert reason('http.uri; from_base64; content:"a";') == "unsupported keyword 'from_base64'"


def test_urilen_bsize_startswith_endswith_isdataat():
    r = rule("urilen:>10; urilen:5<>20,raw;")
    assert [(m.buffer, m.op, m.lo, m.hi) for m in r.matches] == [("http.uri", ">", 10, None),
                                                                 ("http.uri.raw", "<>", 5, 20)]
    assert r.app_proto == "http" and isinstance(r.matches[0], Bsize) and r.matches[0].test(11)
    assert "no value lies strictly between" in reason("urilen:7<>8;")
    assert "option must be raw or norm" in reason("urilen:5,both;")
    r = rule('dns.query; content:"evil"; startswith; content:".com"; endswith; bsize:>8; isdataat:!1,relative;')
    a, b, bs, ida = r.matches
    assert a.startswith and b.endswith and bs.buffer == "dns.query" and isinstance(ida, IsDataAt)
    assert reason("bsize:10;") == "bsize needs a sticky buffer"


def test_pcre_buffer_flags():
    r = rule('content:"a"; pcre:"/x/U"; pcre:"/Mozilla/V"; pcre:"/y/UR";')
    assert where(r) == [("Content", "payload", ()), ("Pcre", "http.uri", ()), ("Pcre", "http.user_agent", ()),
                        ("Pcre", "http.uri", ())]
    assert r.app_proto == "http"
    assert rule('http.uri; content:"a"; pcre:"/b/UR";').matches[1].buffer == "http.uri"
    assert rule('http.response_body; content:"a"; pcre:"/b/Q";').matches[1].buffer == "http.response_body"
    assert "while sticky buffer 'http.uri' is set" in reason('http.uri; content:"a"; pcre:"/b/H";')
    assert "needs a preceding content or pcre in the same buffer" in reason('content:"a"; pcre:"/b/UR";')
    assert "only one modifier may choose the buffer" in reason('pcre:"/b/UH";')
    assert "inconsistent with 'B'" in reason('pcre:"/b/BU";')
    assert "upper case" in reason('pcre:"/Evil\\.com/W";')
    assert rule('pcre:"/Evil\\x2ecom/Wi";').matches[0].buffer == "http.host"
    assert "unknown modifier 'K'" in reason('pcre:"/b/K";')


def test_buffer_validation_and_directions():
    assert "http.host is lower case" in reason('http.host; content:"Evil.com";')
    assert "http.host is lower case" in reason('http.host; content:"evil.com"; nocase;')
    assert rule('http.host; to_lowercase; content:"Evil";').matches[0].pattern == b"Evil"  # transformed: no check
    assert "leading or trailing space" in reason('http.method; content:"GET ";')
    assert "http.protocol content with a space" in reason('http.protocol; content:"HTTP/1.1 ";')
    assert "59 characters" in reason('tls.cert_fingerprint; content:"ab:cd";')
    assert "without ':' delimiters" in reason('tls.cert_serial; content:"0102030405";')
    assert "mixes to_server buffers (http.uri) and to_client buffers (http.stat_code)" in reason(
        'http.uri; content:"a"; http.stat_code; content:"200";')
    assert "flow:to_client contradicts http.uri" in reason('flow:established,to_client; http.uri; content:"a";')
    assert rule('flow:to_client; http.header; content:"a"; file.data; content:"b";').app_proto == "http"
    assert "dsize (packet keyword) cannot be combined with http.uri" in reason('dsize:>5; http.uri; content:"a";')
    assert "file.data' cannot be used with protocol tls" in reason('tls.sni; content:"a"; file.data; content:"b";')
    assert rule('file.data; content:"MZ";', "alert smtp any any -> any any").matches[0].buffer == "file.data"
    assert rule('file_data; content:"MZ";').app_proto is None  # file.data spans several protocols


def test_app_value_keywords():
    checks = rule("tls.version:1.2; ssl_version:!sslv2,sslv3; ssl_state:client_hello|!server_hello; "
                  'tls_cert_expired; tls.subject:!"CN=evil";', "alert tls any any -> any 443").app_checks
    assert checks == [AppCheck("tls.version", 0x0303), AppCheck("ssl_version", frozenset({"sslv2", "sslv3"}),
                                                               negated=True),
                      AppCheck("ssl_state", frozenset({"client_hello", "server_hello"}),
                               value2=frozenset({"server_hello"})),
                      AppCheck("tls_cert_expired"), AppCheck("tls.subject", "CN=evil", negated=True)]
    assert rule("tls.version:0x7f1c;").app_checks[0].value == 0x7F1C
    r = rule("dns.opcode:!4; dns.rrtype:<16;", "alert dns any any -> any any")
    assert [(c.keyword, c.op, c.value) for c in r.app_checks] == [("dns.opcode", "!=", 4), ("dns.rrtype", "<", 16)]
    assert r.app_checks[0].test(0) and not r.app_checks[0].test(4)
    r = rule("app-layer-protocol:!http1,to_server;")
    assert r.app_checks == [AppCheck("app-layer-protocol", "http", negated=True, mode="to_server")]
    assert r.app_proto is None
    assert "already names its protocol" in reason("app-layer-protocol:tls;", "alert http any any -> any any")
    assert "unknown protocol 'nope'" in reason("app-layer-protocol:nope;")
    assert "dns.opcode: 16 out of range" in reason("dns.opcode:16;")
    assert "ssl_state: unknown state" in reason("ssl_state:client_bye;")
    assert "tls.version: expected" in reason("tls.version:2.0;")
    assert "'tls.version' is tls, the rule is http" in reason("tls.version:1.2;", "alert http any any -> any any")


def test_plain_rules_stay_plain():
    r = rule('flow:established,to_server; content:"x"; byte_test:1,>,2,0,relative;')
    assert r.app_proto is None and r.transport == () and r.app_checks == []
    assert [(m.buffer, m.transforms) for m in r.matches] == [("payload", ()), ("payload", ())]
    assert (r.flow.established, r.flow.direction) == (True, "to_server")
    assert isinstance(r.matches[1], ByteTest) and not isinstance(r.matches[0], Pcre)


def test_address_negation_is_recorded():
    s = Settings()
    s.apply("vars.address-groups.NOT_LOCAL=[!10.0.0.0/8]")
    s.apply("vars.address-groups.VIA=[$NOT_LOCAL,192.0.2.1]")
    ctx = RuleContext(s, {})
    r, _ = parse_rule('alert ip $VIA any -> !1.2.3.4 any (msg:"x"; sid:1;)', ctx)
    assert r.src_negated and r.dst_negated
    r, _ = parse_rule('alert ip $HOME_NET any -> [1.2.3.4,5.6.7.8] any (msg:"x"; sid:1;)', ctx)
    assert not r.src_negated and not r.dst_negated
