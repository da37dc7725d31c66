"""Rule parser: header expressions, options, tricky syntax, skip reasons."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import (
    RuleContext,
    RuleError,
    RuleSet,
    check_report,
    load_rules,
    load_text,
    parse_rule,
)
from mirrorwatch.rules.classification import load_classification, parse_classification
from mirrorwatch.rules.matches import ByteExtract, ByteJump, ByteMath, ByteTest, IsDataAt, Pcre
from mirrorwatch.rules.model import TagSpec, TcpFlags

SKIP_LINE = re.compile(r"^.+:\d+: sid (\d+|\?): .+$")


def ctx(settings: Settings | None = None) -> RuleContext:
    return RuleContext(settings or Settings(), load_classification()[0])


def rule(opts: str, header: str = "alert tcp any any -> any any", settings: Settings | None = None):
    r, _ = parse_rule(f"{header} ({opts} sid:1;)", ctx(settings))
    return r


def reason(opts: str, header: str = "alert tcp any any -> any any") -> str:
    with pytest.raises(RuleError) as e:
        rule(opts, header)
    return str(e.value)


def ip_in(addrset, ip: str) -> bool:
    a = ipaddress.ip_address(ip)
    ranges = addrset.v4 if a.version == 4 else addrset.v6
    return any(lo <= int(a) <= hi for lo, hi in ranges)


def port_in(portset, p: int) -> bool:
    return any(lo <= p <= hi for lo, hi in portset.include)


# -- header ----------------------------------------------------------------
def test_address_lists_negation_and_variables():
    r = rule("msg:\"x\";", "alert tcp $EXTERNAL_NET any -> [10.0.0.0/8,![10.1.0.0/16,10.2.3.4]] any")
    assert not ip_in(r.src, "192.168.1.1") and ip_in(r.src, "8.8.8.8") and ip_in(r.src, "2001:db8::1")
    assert ip_in(r.dst, "10.9.9.9") and not ip_in(r.dst, "10.1.2.3") and not ip_in(r.dst, "10.2.3.4")
    assert not ip_in(r.dst, "11.0.0.1") and not r.dst.any and r.dst.exclude == []
    assert ipaddress.ip_network("10.128.0.0/9") in r.dst.include
    r = rule("msg:\"x\";", "alert ip [2001:db8::/32,!2001:db8::1] any -> !1.2.3.4 any")
    assert ip_in(r.src, "2001:db8::2") and not ip_in(r.src, "2001:db8::1") and not ip_in(r.src, "1.1.1.1")
    assert ip_in(r.dst, "1.2.3.5") and not ip_in(r.dst, "1.2.3.4") and ip_in(r.dst, "::1")
    assert rule("msg:\"x\";").src.any


def test_address_variable_override_and_errors():
    s = Settings()
    s.apply("vars.address-groups.HOME_NET=[198.51.100.0/24]")
    r = rule("msg:\"x\";", "alert tcp $HOME_NET any -> $EXTERNAL_NET any", settings=s)
    assert ip_in(r.src, "198.51.100.7") and not ip_in(r.src, "10.0.0.1")
    assert ip_in(r.dst, "10.0.0.1") and not ip_in(r.dst, "198.51.100.7")
    s.apply("vars.address-groups.A=[$B,1.1.1.1]")
    s.apply("vars.address-groups.B=$A")
    with pytest.raises(RuleError, match="refers to itself"):
        rule("msg:\"x\";", "alert tcp $A any -> any any", settings=s)
    assert "unknown address variable $NOPE" in reason("msg:\"x\";", "alert tcp $NOPE any -> any any")
    assert "matches no address" in reason("msg:\"x\";", "alert tcp [1.2.3.4,!1.2.3.4] any -> any any")
    assert "bad address" in reason("msg:\"x\";", "alert tcp 1.2.3.400 any -> any any")


def test_ports():
    r = rule("msg:\"x\";", "alert tcp any [1024:,!2000,:80] -> any $HTTP_PORTS")
    assert port_in(r.sport, 1024) and port_in(r.sport, 65535) and not port_in(r.sport, 2000)
    assert port_in(r.sport, 0) and port_in(r.sport, 80) and not port_in(r.sport, 81)
    assert r.dport.include == [(80, 80)]
    r = rule("msg:\"x\";", "alert tcp any !$HTTP_PORTS -> any [1:3,[5,7:8]]")
    assert not port_in(r.sport, 80) and port_in(r.sport, 81)
    assert r.dport.include == [(1, 3), (5, 5), (7, 8)]
    assert "bad port" in reason("msg:\"x\";", "alert tcp any 70000 -> any any")
    assert "start above end" in reason("msg:\"x\";", "alert tcp any 90:80 -> any any")


def test_protocols_actions_and_direction():
    assert rule("msg:\"x\";", "drop tcp-pkt any any <> any any").tcp_scope == "packet"
    r = rule("msg:\"x\";", "rejectboth tcp-stream any any -> any any")
    assert (r.action, r.proto, r.tcp_scope) == ("rejectboth", "tcp", "stream")
    r = rule("msg:\"x\";", "pass ipv6 any any -> any any")
    assert (r.proto, r.ipv) == ("ip", 6)
    assert rule("msg:\"x\";", "alert icmpv6 any any -> any any").ipv == 6
    assert rule("msg:\"x\";", "alert ipv4 any any <> any any").direction == "<>"
    r = rule("msg:\"x\";", "alert http1 any any -> any any")
    assert (r.app_proto, r.proto, r.transport) == ("http", "tcp", ("tcp",))
    r = rule("msg:\"x\";", "alert dns any any -> any any")
    assert (r.app_proto, r.proto, r.transport) == ("dns", "ip", ("tcp", "udp"))
    assert rule("msg:\"x\";", "alert ssl any any -> any any").app_proto == "tls"
    assert rule("msg:\"x\";").app_proto is None and rule("msg:\"x\";").transport == ()
    assert reason("msg:\"x\";", "alert http2 any any -> any any") == "unsupported protocol 'http2'"
    assert reason("msg:\"x\";", "alert ftp-data any any -> any any") == "unsupported protocol 'ftp-data'"
    assert "unknown protocol" in reason("msg:\"x\";", "alert foo any any -> any any")
    assert "unknown action" in reason("msg:\"x\";", "warn tcp any any -> any any")
    assert "bad direction" in reason("msg:\"x\";", "alert tcp any any <- any any")


# -- options ---------------------------------------------------------------
def test_msg_metadata_reference_classtype():
    r = rule('msg:"a \\"quoted\\" \\; semi \\\\ back"; rev:3; gid:2; reference:url,example.com/a; '
             'reference:cve,2020-1; metadata:created_at 2010_01_01, former_category  MALWARE;'
             ' classtype:trojan-activity;')
    assert r.msg == 'a "quoted" ; semi \\ back'
    assert (r.rev, r.gid, r.key) == (3, 2, (2, 1))
    assert r.references == ["url,example.com/a", "cve,2020-1"]
    assert r.metadata == ["created_at 2010_01_01", "former_category MALWARE"]
    assert (r.classtype, r.category, r.priority) == ("trojan-activity", "A Network Trojan was detected", 1)
    # explicit priority wins regardless of order
    assert rule("priority:4; classtype:trojan-activity;").priority == 4
    assert rule("classtype:trojan-activity; priority:4;").priority == 4
    r, warnings = parse_rule("alert tcp any any -> any any (classtype:made-up; sid:9;)", ctx())
    assert r.priority == 3 and r.category == "" and "unknown classtype 'made-up'" in warnings[0]


def test_content_escapes_hex_and_modifiers():
    r = rule('content:"A|42 43|\\"\\;\\\\|0d0a|"; nocase; offset:1; depth:20; fast_pattern:only; '
             'content:!"x"; distance:-2; within:5; rawbytes; content:"yz"; fast_pattern:0,1; endswith;'
             ' content:"GET"; startswith;')
    c1, c2, c3, c4 = r.matches
    assert c1.pattern == b'ABC";\\\r\n' and c1.nocase and (c1.offset, c1.depth) == (1, 20)
    assert c1.fast_pattern and c1.fast_pattern_only
    assert c2.negated and (c2.distance, c2.within) == (-2, 5) and c2.rawbytes
    assert c3.fast_pattern_chop == (0, 1) and c3.endswith
    assert c4.startswith
    assert "invalid escape" in reason('content:"a\\x";')
    assert "unterminated |hex|" in reason('content:"a|41";')
    assert "bad hex" in reason('content:"|4g|";')
    assert "needs a preceding content" in reason("nocase;")
    assert "mixes absolute" in reason('content:"a"; content:"b"; offset:1; distance:0;')
    assert "more than one 'depth'" in reason('content:"a"; depth:4; depth:5;')
    assert "smaller than the content length" in reason('content:"abcd"; depth:2;')
    assert "smaller than the content length" in reason('content:"a"; content:"abcd"; within:2;')
    assert "outside the content" in reason('content:"ab"; fast_pattern:1,5;')


def test_multiline_comments_disabled_and_bad_rules_do_not_stop_others(tmp_path):
    f = tmp_path / "t.rules"
    f.write_text(
        "# a comment\n"
        "\n"
        "alert tcp any any -> any any (msg:\"one\"; \\\n"
        "    content:\"abc\"; \\\n"
        "    sid:1;)\n"
        "# alert tcp any any -> any any (msg:\"disabled\"; sid:2;)\n"
        "alert tcp any any -> any any (msg:\"bad\"; asn1:oversize_length 10; sid:3;)\n"
        "alert tcp any any -> any any (msg:\"nosid\";)\n"
        "alert tcp any any -> any any msg:\"noparen\"; sid:5;\n"
        "alert tcp any any -> any any (msg:\"four\"; content:\"zz\"; sid:4;)\n"
    )
    rs = load_rules([tmp_path], Settings())
    assert [r.sid for r in rs.rules] == [1, 4]
    assert rs.rules[0].line == 3 and rs.rules[0].matches[0].pattern == b"abc"
    assert rs.disabled == 1
    lines = rs.skip_lines()
    assert lines[0] == f"{f}:7: sid 3: unsupported keyword 'asn1'"
    assert lines[1] == f"{f}:8: sid ?: rule has no sid"
    assert "no option block" in lines[2]
    assert all(SKIP_LINE.match(x) for x in lines)
    report = check_report(rs)
    assert "2 loaded" in report and "3 skipped" in report and "unsupported keyword 'asn1'" in report


def test_missing_paths_are_errors_not_exceptions(tmp_path):
    rs = load_rules([tmp_path / "nope.rules", tmp_path], Settings())
    assert rs.rules == [] and len(rs.errors) == 2
    assert "no such rule file" in rs.errors[0] and "no *.rules" in rs.errors[1]


def test_duplicate_sid_keeps_highest_rev():
    rs = RuleSet()
    c = ctx()
    load_text(
        "alert tcp any any -> any any (msg:\"old\"; sid:7; rev:1;)\n"
        "alert tcp any any -> any any (msg:\"new\"; sid:7; rev:2;)\n"
        "alert tcp any any -> any any (msg:\"same\"; sid:7; rev:2;)\n"
        "alert tcp any any -> any any (msg:\"other gid\"; sid:7; gid:3;)\n",
        "d.rules", c, rs,
    )
    assert [(r.msg, r.gid) for r in rs.rules] == [("new", 1), ("other gid", 3)]
    assert len(rs.skipped) == 2 and all("duplicate sid 7" in s[3] for s in rs.skipped)
    assert {s[1] for s in rs.skipped} == {1, 3}
    assert len(rs.warnings) == 2


def test_unsupported_keywords_are_named():
    assert reason('content:"a"; ftpbounce;') == "unsupported keyword 'ftpbounce'"
    assert reason('pcre:"/(?P<pkt_name>a)/";') == "unsupported keyword 'pcre variable capture'"
    assert reason('content:"a"; byte_test:4,>,1,0,relative,dce;') == "unsupported keyword 'dce'"
    assert reason("app-layer-protocol:rdp;") == "unsupported protocol 'rdp'"
    assert reason("dce_iface:4b324fc8-1670-01d3-1278-5a47bf6ee188;") == "unsupported keyword 'dce_iface'"


def test_flow_dsize_flags():
    r = rule("flow:established,from_client,only_stream; dsize:>=10; flags:SA+,12;")
    assert (r.flow.established, r.flow.direction, r.flow.only_stream) == (True, "to_server", True)
    assert (r.dsize.op, r.dsize.lo) == (">=", 10) and r.dsize.test(10) and not r.dsize.test(9)
    assert r.flags == TcpFlags("+", 0x12, 0xC0)
    assert r.flags.test(0x12) and r.flags.test(0x12 | 0x08) and not r.flags.test(0x10)
    d = rule("dsize:10<>20;").dsize
    assert d.test(11) and not d.test(10) and not d.test(20)
    f = rule("flags:S;").flags
    assert f.test(0x02) and not f.test(0x12)
    f = rule("tcp.flags:!R;").flags
    assert f.test(0x10) and not f.test(0x14)
    f = rule("flags:*SF;").flags
    assert f.test(0x01) and f.test(0x02) and not f.test(0x10)
    f = rule("flags:0;").flags
    assert f.test(0) and not f.test(0x10)
    assert rule("flags:S,CE;").flags.test(0x02 | 0x80 | 0x40)
    assert rule("flags:A+;").flags.mode == "+"
    assert "both to_server and to_client" in reason("flow:to_server,to_client;")
    assert "unknown flag" in reason("flags:SX;")
    assert "flags on a udp rule" in reason("flags:S;", "alert udp any any -> any any")


def test_flowbits_threshold_detection_filter():
    r = rule("flowbits:set,a; flowbits:isset,b|c; flowbits:isnotset,d&e; flowbits:noalert;")
    assert r.flowbits == [("set", ["a"]), ("isset_any", ["b", "c"]), ("isnotset", ["d", "e"]), ("noalert", [])]
    assert r.noalert
    t = rule("threshold: type limit, track by_src, count 1, seconds 60;").threshold
    assert (t.type, t.track, t.count, t.seconds) == ("limit", "by_src", 1, 60.0)
    t = rule("threshold:type backoff, track by_flow, count 3, multiplier 2;").threshold
    assert (t.type, t.count, t.multiplier) == ("backoff", 3, 2)
    d = rule("detection_filter: track by_dst, count 5, seconds 2, unique_on dst_port;").detection_filter
    assert (d.type, d.track, d.count, d.unique_on) == ("detection_filter", "by_dst", 5, "dst_port")
    assert "track must be" in reason("threshold: type limit, track by_nobody, count 1, seconds 6;")
    assert "cannot mix" in reason("flowbits:isset,a|b&c;")


def test_byte_keywords_and_isdataat():
    r = rule('content:"x"; byte_extract:2,0,len,relative,little,multiplier 2,align 4; '
             'byte_test:4,!&,len,len,relative,string,hex,bitmask 0xff00; '
             'byte_jump:len,1,relative,post_offset -3,from_end,align; isdataat:!len,relative,rawbytes; '
             'byte_math:bytes 2, offset 0, oper <<, rvalue len, result m, relative, endian little; '
             'byte_test:1,=,m,0;')
    _, be, bt, bj, ida, bm, bt2 = r.matches
    assert be == ByteExtract(2, 0, "len", True, "little", None, 2, 4, None)
    assert isinstance(bt, ByteTest) and (bt.op, bt.negate, bt.value, bt.offset) == ("&", True, "len", "len")
    assert (bt.string, bt.bitmask) == ("hex", 0xFF00)
    assert isinstance(bj, ByteJump) and (bj.nbytes, bj.post_offset, bj.from_end, bj.align) == ("len", -3, True, True)
    assert isinstance(ida, IsDataAt) and (ida.offset, ida.negated, ida.relative, ida.rawbytes) == ("len", True, True, True)
    assert isinstance(bm, ByteMath) and (bm.oper, bm.rvalue, bm.endian, bm.relative) == ("<<", "len", "little", True)
    assert bt2.value == "m"
    assert "unknown byte_extract variable" in reason("byte_test:1,=,nope,0;")
    assert "unknown operator" in reason("byte_test:1,~,1,0;")
    assert "without 'string'" in reason("byte_jump:2,0,hex;")
    assert "nbytes must be" in reason("byte_test:9,=,1,0;")


def test_header_keywords():
    r = rule("ttl:<5; itype:3<>9; icode:!0; ip_proto:TCP; window:!1024; id:3; seq:1; ack:2; tos:0x10; "
             "sameip; fragbits:M+; ipopts:lsrr; stream_size:server,>,100; tcp.mss:<536;",
             "alert ip any any -> any any")
    checks = {h.keyword: h for h in r.header_checks}
    assert checks["ttl"].test(4) and not checks["ttl"].test(5)
    assert checks["itype"].test(4) and not checks["itype"].test(3)
    assert not checks["icode"].test(0) and checks["icode"].test(1)
    assert checks["ip_proto"].value == 6 and checks["window"].op == "!="
    assert checks["tos"].value == 0x10 and checks["sameip"].value is True
    assert checks["fragbits"].value == TcpFlags("+", 0x1, 0)
    assert checks["ipopts"].value == "lsrr"
    assert checks["stream_size"].value == ("server", ">", 100)
    assert checks["tcp.mss"].test(500)
    assert "out of range" in reason("ttl:300;")


def test_pcre_is_pcre2():
    def rx(p):
        return rule(f'pcre:"{p}";').matches[0]

    p = rx("/(?<word>ab)\\k<word>\\Z/i")
    assert isinstance(p, Pcre) and p.regex.search(b"xABab\n") and not p.regex.search(b"abab\nx")
    assert rx("/a\\z/").regex.search(b"a") and not rx("/a\\z/").regex.search(b"a\n")
    assert rx("/^(?>a+)b/").regex.search(b"aaab") and not rx("/^a++a/").regex.search(b"aaa")
    assert rx("/a(?i)b/").regex.search(b"aB") and not rx("/a(?i)b/").regex.search(b"AB")
    assert rx("/\\x{41}\\x42[[:digit:]]+/").regex.search(b"AB12")  # not Python's \\x{..}
    assert rx("/(?<!TOP\\s|T)SECRET/").regex.search(b"A SECRET") and not rx("/(?<!TOP\\s|T)SECRET/").regex.search(b"TOP SECRET")
    assert rx("/a.+?b/G").regex.search(b"a12b34b").group(0) == b"a12b34b"  # ungreedy flips
    assert rx("/\\d+$/E").regex.search(b"12") and not rx("/\\d+$/E").regex.search(b"12\n")
    assert rx("/ab\\Kcd/").regex.search(b"abcd").group(0) == b"cd"  # PCRE-only syntax works
    assert rx("/\\((?:[^()]|(?R))*\\)/").regex.search(b"x(a(b)c)").group(0) == b"(a(b)c)"
    p = rule('content:"x"; pcre:"/a/Rsmx";').matches[1]
    assert p.relative and not p.anchored
    assert "needs a preceding content or pcre" in reason('pcre:"/a/R";')
    assert rx("/x/A").anchored and rx("/x/B").rawbytes
    assert rx("/café/").regex.search("café".encode())
    assert rule('pcre:!"/evil/";').matches[0].negated
    assert rule("pcre:/unquoted/;").matches[0].regex.search(b"unquoted")
    assert "too large" in reason('pcre:"/\\x{100}/";')  # no UTF mode: code points stop at 0xff
    assert "unknown modifier 'q'" in reason('pcre:"/a/q";')
    assert "missing closing parenthesis" in reason('pcre:"/a(b/";')


def test_classification_file_parsing():
    table, warnings = parse_classification(
        "# c\nconfig classification: a-b,Some Thing, 2\nconfig classification: bad\nnonsense\n", "c.config")
    assert table == {"a-b": ("Some Thing", 2)}
    assert len(warnings) == 2 and warnings[0].startswith("c.config:3:")
    bundled, warnings = load_classification()
    assert not warnings and len(bundled) >= 40 and bundled["trojan-activity"] == ("A Network Trojan was detected", 1)


def test_content_first_keyword_types():
    r = rule('content:"a"; pcre:"/b/R"; isdataat:1,relative; http.uri; content:"x"; bsize:>1;')
    assert [type(m).__name__ for m in r.matches] == ["Content", "Pcre", "IsDataAt", "Content", "Bsize"]
    assert [m.buffer for m in r.matches] == ["payload"] * 3 + ["http.uri"] * 2
    assert reason("bsize:>1;") == "bsize needs a sticky buffer"


def test_byte_nbytes_variables_and_startswith_conflicts():
    r = rule("byte_extract:1,0,n; byte_test:n,=,0x4142,1,string,hex;")
    assert r.matches[1].nbytes == "n"
    assert "startswith cannot be mixed with depth" in reason('content:"a"; startswith; depth:3;')


# subjects and patterns for the PCRE differential check against GNU grep -P
_PCRE_SUBJECTS = [b"abab", b"ABab", b"xAB12", b"A SECRET", b"TOP SECRET", b"T SECRET", b"abd", b"cd", b"bd",
                  b"a{,2}", b"aa", b"tab\there", b"name=bob; name=bob", b"name=bob; name=eve", b"a.b*c",
                  b"GET /x.php?id=1 HTTP/1.1", b"get /X.PHP", b"aaab", b"12\r", b"foo123bar", b"\x80\xff"]
# (not a{,2}: a quantifier since PCRE2 10.43, a literal in grep's older PCRE2)
_PCRE_PATTERNS = [r"(?<w>ab)\k<w>", r"(?i)aB(?<x>a)\k{x}", r"(?<!TOP\s|T)SECRET", r"(?<=ab|c)d", r"\h",
                  r"(?P<n>\w+)=bob; (?P=n)=bob", r"\Qa.b*\E", r"^(?>a+)b", r"^a++b", r"x(?i)ab\d", r"[[:digit:]]{2}\r\Z",
                  r"\x{41}[[:upper:]]", r"^get\s+\S+\.php", r"(?i:get) /x", r"foo\d+(?=bar)", r"[\x80-\xff]{2}",
                  r"name=(\w+); name=\1", r"\bSECRET\b", r"a\z", r"\d{2}$"]


def test_pcre_agrees_with_grep_pcre(tmp_path):
    import shutil
    import subprocess

    from mirrorwatch.rules.pcre import guarded

    if not shutil.which("grep"):
        pytest.skip("grep not installed")
    probe = subprocess.run(["grep", "-P", "x"], input=b"x\n", capture_output=True, env={"LC_ALL": "C"})
    if probe.returncode != 0:
        pytest.skip("grep has no PCRE support (-P)")
    f = tmp_path / "subjects"
    f.write_bytes(b"\n".join(_PCRE_SUBJECTS) + b"\n")
    for pat in _PCRE_PATTERNS:
        escaped = pat.replace(";", "\\;").replace('"', '\\"')
        rx = guarded(rule(f'pcre:"/{escaped}/";').matches[0].regex)
        out = subprocess.run(["grep", "-P", "-n", "-a", "--", pat, str(f)], capture_output=True,
                             env={"LC_ALL": "C"}).stdout
        grep_lines = {int(x.split(b":", 1)[0]) - 1 for x in out.split(b"\n") if x}
        ours = {i for i, s in enumerate(_PCRE_SUBJECTS) if rx.search(s)}
        assert ours == grep_lines, (pat, sorted(ours), sorted(grep_lines))
        ours_load = {i for i, s in enumerate(_PCRE_SUBJECTS) if rule(f'pcre:"/{escaped}/";').matches[0].regex.search(s)}
        assert ours_load == grep_lines, (pat, "without JIT", sorted(ours_load), sorted(grep_lines))


def test_rule_text_must_be_utf8_without_control_characters(tmp_path):
    f = tmp_path / "latin.rules"
    f.write_bytes(b'alert tcp any any -> any any (msg:"caf\xe9"; content:"caf\xe9"; sid:1;)\n'
                  b'alert tcp any any -> any any (msg:"caf\xc3\xa9"; content:"caf\xc3\xa9"; sid:2;)\n'
                  b'alert tcp any any -> any any (msg:"bell\x07"; sid:3;)\n')
    rs = load_rules([f], Settings())
    assert [r.sid for r in rs.rules] == [2] and rs.rules[0].msg == "caf\u00e9"
    assert rs.rules[0].matches[0].pattern == "café".encode()
    assert [s[3] for s in rs.skipped] == ["rule is not valid UTF-8", "rule contains control characters"]


def test_classification_argument_forms(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text('alert tcp any any -> any any (msg:"x"; classtype:my-class; sid:1;)\n')
    conf = tmp_path / "classification.config"
    conf.write_text("config classification: my-class,My Class,1\n")
    assert load_rules([f], Settings(), classification=str(conf)).rules[0].category == "My Class"
    assert load_rules([f], Settings(), classification={"my-class": ("Dict Class", 2)}).rules[0].priority == 2
    rs = load_rules([f], Settings(), classification=str(tmp_path / "missing.config"))
    assert rs.errors and "cannot read classification file" in rs.errors[0]
    assert rs.rules[0].priority == 3  # the rule still loads, with the default priority


def test_malformed_rules_give_reasons_not_exceptions():
    # found by mutating real rules: a trailing lone backslash, a leading zero
    with pytest.raises(RuleError, match="has no terminating ';'"):
        parse_rule('alert tcp any any -> any any (msg:"x"; sid:1; rev:8\\)', ctx())
    assert rule("icode:01;", "alert icmp any any -> any any").header_checks[0].value == 1


_SEED_RULES = [
    'alert tcp $EXTERNAL_NET any -> $HOME_NET [80,8080:8090] (msg:"a \\"b\\""; flow:established,to_server; '
    'content:"GET |20|/"; depth:5; content:"x"; distance:0; within:10; pcre:"/^[a-z]+\\d{2,}/Ri"; '
    'byte_test:2,>,10,0,relative,little; byte_jump:1,0,relative,align; isdataat:!2,relative; '
    'flowbits:set,foo; threshold:type limit, track by_src, count 1, seconds 60; classtype:misc-activity; '
    'metadata:a b, c d; reference:url,x.y; sid:1; rev:2;)',
    'alert udp any any -> any 53 (msg:"dns"; content:"|01 00 00 01|"; offset:2; depth:4; dsize:>20; '
    'byte_extract:1,12,len; content:"|00|"; distance:len; within:1; sid:2;)',
    'alert ip [10.0.0.0/8,!10.1.0.0/16] any <> any any (msg:"ip"; ttl:<5; fragbits:M+; ip_proto:!6; sid:3;)',
]


@hsettings(max_examples=400, deadline=None)
@given(seed=st.sampled_from(_SEED_RULES), edits=st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 400), st.sampled_from(list(' ;:,"\\|()[]!$<>-09azAZ/.?*+{}#'))),
    min_size=1, max_size=5))
def test_mutated_rules_never_raise_unexpected_errors(seed, edits):
    s = list(seed)
    for kind, pos, ch in edits:
        pos = min(pos, len(s) - 1)
        if kind < 0.4:
            del s[pos]
        elif kind < 0.8:
            s.insert(pos, ch)
        else:
            s[pos] = ch
    try:
        r, _ = parse_rule("".join(s), ctx())
    except RuleError as e:
        assert str(e) and "\n" not in str(e)
        return
    from mirrorwatch.core.detect.payload import compile_matches

    compile_matches(r.matches)(b"GET / x\x01\x00\x00\x01" * 3)


def test_payload_keyword_cap():
    many = " ".join('content:"a";' for _ in range(300))
    assert "more than 256 payload keywords" in reason(many)
    assert len(rule(" ".join('content:"a";' for _ in range(200))).matches) == 200


def test_tag():
    """detect-tag.c: 256 packets and the destination host by default, packet counts cut to 256."""
    assert rule("tag:session,10,packets;").tags == [TagSpec("session", 10, "packets", "dst")]
    assert rule("tag:host,60,seconds,src;").tags == [TagSpec("host", 60, "seconds", "src")]
    assert rule("tag:session;").tags == [TagSpec("session", 256, "packets", "dst")]
    assert rule("tag:host,10,packets;").tags == [TagSpec("host", 10, "packets", "dst")]
    assert rule("tag:host,1000,packets;").tags[0].count == 256
    assert rule("tag:host,1000,bytes;").tags[0].count == 1000
    assert len(rule("tag:host,2,packets,src; tag:session;").tags) == 2
    assert "tag: expected" in reason("tag:session,10,frames;")
    assert "tag: expected" in reason("tag:host,10;")
    assert "tag: expected" in reason("tag:flow;")


def test_bad_variable_value_names_the_variable():
    s = Settings()
    s.apply("vars.port-groups.HTTP_PORTS=[80,eighty]")
    with pytest.raises(RuleError, match=r"\$HTTP_PORTS: bad port 'eighty'"):
        rule("msg:\"x\";", "alert tcp any any -> any $HTTP_PORTS", settings=s)


def test_unknown_keyword_is_told_apart_from_unsupported():
    assert reason('conent:"x";') == "unknown keyword 'conent'"
    assert reason('flowvar:a,"b";') == "unsupported keyword 'flowvar'"
    assert reason('tls.random; content:"x";') == "unsupported keyword 'tls.random'"


def test_unknown_classtype_warned_once():
    rs = RuleSet()
    load_text("".join(f'alert tcp any any -> any any (classtype:nope; sid:{i};)\n' for i in range(1, 4)),
              "w.rules", ctx(), rs)
    assert len(rs.rules) == 3 and len(rs.warnings) == 1 and "unknown classtype 'nope'" in rs.warnings[0]
