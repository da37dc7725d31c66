"""xbits and hostbits (Suricata's detect-xbits.c, detect-hostbits.c, host-bit.c, ippair-bit.c),
as a user meets them: a rules file and a capture built with scapy, replayed with
``mirrorwatch replay``, the alerts read from the EVE output."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from mirrorwatch.core.detect.plan import compile_all
from mirrorwatch.core.detect.xbits import HOST_ENTRY_BYTES, PAIR, SRC, US, BitTable, XbitStore
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import load_rules

T0 = 1_700_000_000.0
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
SRV = "192.0.2.80"


def _eth():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def datagram(t: float, src: str, dst: str, payload: bytes, sport: int = 40000, dport: int = 7000):
    p = _eth() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
    p.time = t
    return [p]


def http_session(t: float, cli: str, uri: str, sport: int = 40000):
    """One whole HTTP/1.1 exchange over TCP from ``cli`` to SRV:80, its frames 1 ms apart."""
    req = f"GET {uri} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode()
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    c, s = _eth() / IP(src=cli, dst=SRV), _eth() / IP(src=SRV, dst=cli)
    cs, ss = 1000, 5000
    frames = [c / TCP(sport=sport, dport=80, flags="S", seq=cs),
              s / TCP(sport=80, dport=sport, flags="SA", seq=ss, ack=cs + 1),
              c / TCP(sport=sport, dport=80, flags="A", seq=cs + 1, ack=ss + 1),
              c / TCP(sport=sport, dport=80, flags="PA", seq=cs + 1, ack=ss + 1) / req,
              s / TCP(sport=80, dport=sport, flags="PA", seq=ss + 1, ack=cs + 1 + len(req)) / resp,
              c / TCP(sport=sport, dport=80, flags="FA", seq=cs + 1 + len(req), ack=ss + 1 + len(resp)),
              s / TCP(sport=80, dport=sport, flags="FA", seq=ss + 1 + len(resp), ack=cs + 2 + len(req)),
              c / TCP(sport=sport, dport=80, flags="A", seq=cs + 2 + len(req), ack=ss + 2 + len(resp))]
    for i, f in enumerate(frames):
        f.time = t + i * 0.001
    return frames


def replay(tmp_path, rules: str, frames: list, *args: str) -> list[dict]:
    """The EVE records of ``mirrorwatch replay`` of ``frames`` with ``rules``."""
    (tmp_path / "x.rules").write_text(rules.strip() + "\n")
    wrpcap(str(tmp_path / "x.pcap"), frames)
    eve = tmp_path / "eve.json"
    eve.unlink(missing_ok=True)  # EVE appends
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "-k", "none", "-r",
                        str(tmp_path / "x.rules"), "--eve", str(eve), *args, str(tmp_path / "x.pcap")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in eve.read_text().splitlines()]


def alerts(records) -> list[tuple]:
    """(sid, source address, packet time offset) of each alert, in EVE order."""
    return [(r["alert"]["signature_id"], r["src_ip"], round(_ts(r) - T0, 3)) for r in records
            if r["event_type"] == "alert"]


def _ts(r) -> float:
    from datetime import datetime
    return datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def stats(records) -> dict:
    return [r for r in records if r["event_type"] == "stats"][-1]["stats"]["detect"]


HOST_RULES = """
alert http any any -> any any (msg:"login"; flow:established,to_server; http.uri; content:"/login"; xbits:set,authed,track ip_src,expire 60; noalert; sid:1;)
alert http any any -> any any (msg:"admin after login"; flow:established,to_server; http.uri; content:"/admin"; xbits:isset,authed,track ip_src; sid:2;)
alert http any any -> any any (msg:"admin without login"; flow:established,to_server; http.uri; content:"/admin"; xbits:isnotset,authed,track ip_src; sid:3;)
"""


def test_a_host_bit_set_in_one_flow_is_seen_in_another_until_it_expires(tmp_path):
    frames = (http_session(T0, A, "/admin") + http_session(T0 + 1, A, "/login", 40001)
              + http_session(T0 + 2, A, "/admin", 40002) + http_session(T0 + 3, B, "/admin", 40003)
              + http_session(T0 + 61, A, "/admin", 40004)  # set at T0+1.005, expires at T0+61.005: still set
              + http_session(T0 + 62, A, "/admin", 40005))  # expired
    got = alerts(replay(tmp_path, HOST_RULES, frames))
    # a request is judged on its flow's 6th frame (the stream settled: acknowledged), 5 ms in
    assert got == [(3, A, 0.005), (2, A, 2.005), (3, B, 3.005), (2, A, 61.005), (3, A, 62.005)]


def test_ip_pair_bits_are_the_unordered_address_pair_and_ip_dst_keys_the_destination(tmp_path):
    rules = """
alert udp any any -> any any (content:"PING"; xbits:set,pinged,track ip_pair; noalert; sid:10;)
alert udp any any -> any any (content:"PONG"; xbits:isset,pinged,track ip_pair; sid:11;)
alert udp any any -> any any (content:"SCAN"; xbits:set,scanned,track ip_dst,expire 5; noalert; sid:12;)
alert udp any any -> any any (content:"HIT"; xbits:isset,scanned,track ip_src; sid:13;)
"""
    frames = (datagram(T0, A, B, b"PING") + datagram(T0 + 1, B, A, b"PONG", 5000, 6000)  # the pair, other flow
              + datagram(T0 + 2, C, A, b"PONG") + datagram(T0 + 3, A, C, b"PONG", 41000)  # other pairs
              + datagram(T0 + 4, A, SRV, b"SCAN") + datagram(T0 + 5, SRV, C, b"HIT", 53000)
              + datagram(T0 + 10, SRV, B, b"HIT", 53001))  # 6 s after the set: expired
    assert alerts(replay(tmp_path, rules, frames)) == [(11, B, 1.0), (13, SRV, 5.0)]
    # again, the rule set and its plan now from the rule cache (the XBit records pickled there)
    assert alerts(replay(tmp_path, rules, frames)) == [(11, B, 1.0), (13, SRV, 5.0)]


def test_with_workers_ip_pair_bits_hold_when_the_scheduler_keeps_a_pair_on_one_worker(tmp_path):
    # each worker has its own tables: the two flows of a pair meet only under the ippair scheduler
    rules = """
alert udp any any -> any any (content:"PING"; xbits:set,pinged,track ip_pair; noalert; sid:10;)
alert udp any any -> any any (content:"PONG"; xbits:isset,pinged,track ip_pair; sid:11;)
"""
    frames = datagram(T0, A, B, b"PING") + datagram(T0 + 1, B, A, b"PONG", 5000, 6000)
    records = replay(tmp_path, rules, frames, "--workers", "2", "--set", "autofp-scheduler=ippair")
    assert alerts(records) == [(11, B, 1.0)]


def test_unset_toggle_and_the_host_namespace_shared_by_hostbits_and_xbits(tmp_path):
    rules = """
alert udp any any -> any any (content:"ON"; hostbits:set,flag; hostbits:noalert; sid:20;)
alert udp any any -> any any (content:"OFF"; hostbits:unset,flag,src; noalert; sid:21;)
alert udp any any -> any any (content:"FLIP"; hostbits:toggle,flag; noalert; sid:22;)
alert udp any any -> any any (content:"CHK"; xbits:isset,flag,track ip_src; sid:23;)
alert udp any any -> any any (content:"DST"; hostbits:isset,flag,dst; sid:24;)
"""
    steps = ["CHK", "ON", "CHK", "OFF", "CHK", "FLIP", "CHK", "FLIP", "CHK", "ON"]
    frames = [f for i, word in enumerate(steps) for f in datagram(T0 + i, A, B, word.encode(), 40000 + i)]
    frames += datagram(T0 + 20, C, A, b"DST")  # A is the destination: its hostbit holds
    frames += datagram(T0 + 9 + 301, C, A, b"DST", 40100)  # a hostbit lives 300 s
    assert alerts(replay(tmp_path, rules, frames)) == [(23, A, 2.0), (23, A, 6.0), (24, C, 20.0)]


def test_set_keeps_a_live_bit_expiry_as_suricata(tmp_path):
    rules = """
alert udp any any -> any any (content:"SET"; xbits:set,x,track ip_src,expire 10; noalert; sid:30;)
alert udp any any -> any any (content:"CHK"; xbits:isset,x,track ip_src; sid:31;)
"""
    frames = (datagram(T0, A, B, b"SET") + datagram(T0 + 8, A, B, b"SET", 40001)  # not renewed
              + datagram(T0 + 11, A, B, b"CHK", 40002)  # expired at T0+10
              + datagram(T0 + 12, A, B, b"SET", 40003) + datagram(T0 + 13, A, B, b"CHK", 40004))
    assert alerts(replay(tmp_path, rules, frames)) == [(31, A, 13.0)]


def test_xbits_noalert_and_a_setting_rule_that_alerts(tmp_path):
    rules = """
alert udp any any -> any any (msg:"set, quiet"; content:"Q"; xbits:set,q,track ip_src; xbits:noalert; sid:40;)
alert udp any any -> any any (msg:"set, loud"; content:"L"; xbits:set,l,track ip_src; sid:41;)
alert udp any any -> any any (content:"CHK"; xbits:isset,q,track ip_src; xbits:isset,l,track ip_src; sid:42;)
"""
    frames = (datagram(T0, A, B, b"Q") + datagram(T0 + 1, A, B, b"CHK", 40001) + datagram(T0 + 2, A, B, b"L", 40002)
              + datagram(T0 + 3, A, B, b"CHK", 40003))
    assert alerts(replay(tmp_path, rules, frames)) == [(41, A, 2.0), (42, A, 3.0)]


def loaded(tmp_path, rules: str):
    f = tmp_path / "t.rules"
    f.write_text(rules.strip() + "\n")
    return load_rules([f], Settings())


def test_rule_order_follows_suricata_sigorder_for_hostbits_and_xbits(tmp_path):
    # hostbits commands order their rule before the xbits checks; an xbits:set rule counts as
    # using no bits (SCSigGetXbitsType), so it comes after the readers: on the same packet the
    # hostbits set is seen, the xbits set is not
    rules = """
alert udp any any -> any any (content:"BOTH"; xbits:isset,h,track ip_src; sid:50;)
alert udp any any -> any any (content:"BOTH"; xbits:isset,x,track ip_src; sid:51;)
alert udp any any -> any any (content:"BOTH"; hostbits:set,h; noalert; sid:52;)
alert udp any any -> any any (content:"BOTH"; xbits:set,x,track ip_src; noalert; sid:53;)
"""
    rs = loaded(tmp_path, rules)
    crules, _ = compile_all(rs.rules)
    assert [cr.rule.sid for cr in crules] == [52, 50, 51, 53]
    frames = datagram(T0, A, B, b"BOTH") + datagram(T0 + 1, A, B, b"BOTH", 40001)
    assert alerts(replay(tmp_path, rules, frames)) == [(50, A, 0.0), (50, A, 1.0), (51, A, 1.0)]


def test_the_host_table_is_bounded_by_host_memcap_and_counted(tmp_path):
    rules = """
alert udp any any -> any any (content:"SET"; xbits:set,x,track ip_src,expire 5; noalert; sid:60;)
alert udp any any -> any any (content:"CHK"; xbits:isset,x,track ip_src; sid:61;)
"""
    frames = (datagram(T0, A, SRV, b"SET") + datagram(T0 + 1, B, SRV, b"SET") + datagram(T0 + 2, C, SRV, b"SET")
              + datagram(T0 + 3, A, SRV, b"CHK", 40001) + datagram(T0 + 3.5, B, SRV, b"CHK", 40001))
    records = replay(tmp_path, rules, frames, "--set", f"host.memcap={2 * HOST_ENTRY_BYTES}")
    assert alerts(records) == [(61, B, 3.5)]  # A, the oldest host, made room for C
    s = stats(records)["xbits"]
    assert (s["hosts"], s["host_evicted"], s["host_memuse"], s["ippairs"]) == (2, 1, 2 * HOST_ENTRY_BYTES, 0)


def test_a_rule_set_without_bits_keeps_its_stats_as_they_were(tmp_path):
    records = replay(tmp_path, 'alert udp any any -> any any (content:"X"; sid:1;)', datagram(T0, A, B, b"X"))
    assert "xbits" not in stats(records) and "thresholds" in stats(records)


def test_expired_bits_are_pruned_and_a_full_table_evicts_the_oldest():
    t = BitTable(3 * HOST_ENTRY_BYTES, HOST_ENTRY_BYTES)  # times in microseconds
    for i, key in enumerate("abc"):
        t.set(key, "n", i * US, 5)
    t.set("d", "n", 5 * US + 1, 5)  # full: a, the oldest, makes room; its bit had expired at 5 s
    assert (list(t.entries), t.evicted, t.expired) == (["b", "c", "d"], 0, 1)
    t.set("e", "n", 5 * US + 2, 5)  # full: b, the oldest, goes with a live bit
    assert (list(t.entries), t.evicted) == (["c", "d", "e"], 1)
    assert t.isset("e", "n", 10 * US + 2) and not t.isset("e", "n", 10 * US + 3)
    t.set("e", "m", 30 * US, 5)  # the periodic sweep drops what expired meanwhile
    assert (list(t.entries), list(t.entries["e"]), t.expired) == (["e"], ["m"], 4)
    t.unset("e", "m")
    assert not t.entries
    tiny = BitTable(HOST_ENTRY_BYTES - 1, HOST_ENTRY_BYTES)
    tiny.set("a", "n", 0, 5)
    assert (tiny.entries, tiny.evicted) == ({}, 1)


def test_a_packet_without_addresses_finds_and_sets_no_bit():
    store = XbitStore(Settings())
    pkt = SimpleNamespace(ts=T0, src=b"", dst=b"")  # a non-IP frame judged by decode-event rules
    store.write((("set", "n", SRC, 5), ("toggle", "n", PAIR, 5)), pkt)
    assert not store.hosts.entries and not store.pairs.entries
    assert store.test(((False, "n", SRC),), pkt) and not store.test(((True, "n", PAIR),), pkt)


BAD = [
    ("xbits:set,a;", "xbits: needs 'track ip_src', 'track ip_dst' or 'track ip_pair'"),
    ("xbits:set,a,track ip_bogus;", "xbits: track must be one of ip_src, ip_dst, ip_pair, got 'ip_bogus'"),
    ("xbits:set,a,track ip_src,expire 0;", "xbits: expire must be a number of seconds above 0, got '0'"),
    ("xbits:set,a,track ip_src,track ip_dst;", "xbits: more than one 'track'"),
    ("xbits:set,a,track ip_src,expire 5,expire 6;", "xbits: more than one 'expire'"),
    ("xbits:set,a,track ip_src,ttl 5;", "xbits: unknown option 'ttl' (track or expire)"),
    ("xbits:sett,a,track ip_src;",
     "xbits: unknown command 'sett' (use set, unset, isset, isnotset, toggle or noalert)"),
    ("xbits:set;", "xbits:set needs a bit name (no spaces) before track"),
    ("xbits:noalert,a;", "xbits:noalert takes no name"),
    ("xbits:set,a,track tx;",
     "unsupported keyword 'xbits' with track tx (bits per transaction need a rule hook)"),
    ("hostbits:set,a,both;", "hostbits: direction 'both' is not implemented (Suricata refuses it too)"),
    ("hostbits:set,a,up;", "hostbits: direction must be src or dst, got 'up'"),
    ("hostbits:set,a,src,60;",
     "hostbits: 'set,a,src,60' is not <command>,<name>[,<src|dst>] (no expire: bits live 300 s)"),
    ("hostbits:isset;", "hostbits:isset needs a bit name"),
]


def test_bad_xbits_and_hostbits_are_skipped_with_file_and_line(tmp_path):
    f = tmp_path / "bad.rules"
    f.write_text("".join(f'alert ip any any -> any any (msg:"bad"; {opt} sid:{i};)\n'
                         for i, (opt, _) in enumerate(BAD, 1)))
    rs = load_rules([f], Settings())
    assert not rs.rules
    assert rs.skip_lines() == [f"{f}:{i}: sid {i}: {why}" for i, (_, why) in enumerate(BAD, 1)]


def test_accepted_forms(tmp_path):
    rs = loaded(tmp_path, """
alert ip any any -> any any (xbits:set, ET.PROPFIND, track ip_src, expire 360; sid:1;)
alert ip any any -> any any (xbits:isset,ET.x, track ip_dst ,expire 10; sid:2;)
alert ip any any -> any any (xbits:toggle,p,expire 7,track ip_pair; sid:3;)
alert ip any any -> any any (hostbits:isnotset, name ,dst; sid:4;)
alert ip any any -> any any (hostbits:unset,name; sid:5;)
""")
    got = [(x.cmd, x.name, x.track, x.expire, x.keyword) for r in rs.rules for x in r.xbits]
    assert not rs.skipped
    assert got == [("set", "ET.PROPFIND", "ip_src", 360, "xbits"), ("isset", "ET.x", "ip_dst", 10, "xbits"),
                   ("toggle", "p", "ip_pair", 7, "xbits"), ("isnotset", "name", "ip_dst", 300, "hostbits"),
                   ("unset", "name", "ip_src", 300, "hostbits")]


@pytest.mark.slow
def test_et_open_xbits_rules_load(et_open_rules):
    rs = et_open_rules
    # 30 rules use xbits, 8 of them flowint too, 1 base64_decode: all load (21 before those keywords)
    users = [r for r in rs.rules if r.xbits]
    assert len(users) == 30 and not [s for s in rs.skipped if "xbits" in s[3]]


def test_host_bits_outlive_a_rule_reload():
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.core.events import Alert
    from mirrorwatch.rules import RuleContext, parse_rule

    s = Settings()

    def rules(text):
        return [parse_rule(text, RuleContext(s, {}))[0]]

    eng = Engine(s, rules('alert udp any any -> any any (content:"login"; xbits:set,authed,track ip_src; sid:1;)'),
                 checksum_mode="none")
    out = eng.process(T0, 1, bytes(datagram(T0, A, B, b"login")[0]))
    eng.reload_rules(rules('alert udp any any -> any any (content:"secret"; xbits:isset,authed,track ip_src; sid:2;)'))
    out += eng.process(T0 + 1, 1, bytes(datagram(T0 + 1, A, B, b"secret", 40001)[0]))
    assert [e.rule.sid for e in out if isinstance(e, Alert)] == [1, 2]
