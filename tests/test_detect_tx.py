"""Application-layer rules judged per transaction, through the real engine (decode -> flows ->
reassembly -> applayer -> detect), on conversations built with scapy."""

from __future__ import annotations

import json

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.dns import DNS, DNSQR, DNSRR

from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert, AppTx
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.eve import EveWriter
from tests.test_detect import CLI, ETH, SRV, Conv, rules_of

REQ = (b"GET /a/../admin/%70anel?x=1 HTTP/1.1\r\nHost: WWW.Example.COM:8080\r\n"
       b"User-Agent: curl/8.0\r\nCookie: s=evilcookie\r\n\r\n")
RESP = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello"


def http_frames(conv: Conv, req: bytes = REQ, resp: bytes = RESP) -> list:
    return conv.handshake() + [conv.client(req), conv.server(resp), conv.client(b"", flags="A"),
                               conv.client(b"", flags="FA"), conv.server(b"", flags="FA"),
                               conv.client(b"", flags="A")]


def replay(rules: str, frames, **settings) -> list:
    s = Settings(settings)
    eng = Engine(s, rules_of(rules, s), checksum_mode="none")
    out = []
    for i, f in enumerate(frames):
        out.extend(eng.process(1000.0 + i * 0.01, 1, bytes(f)))
    out.extend(eng.finish())
    return out


def alerted(events) -> list:
    return sorted(e.rule.sid for e in events if isinstance(e, Alert))


@pytest.mark.parametrize("rule, fires", [
    ('http.uri; content:"/admin/panel"; startswith;', True),  # normalised: dot-segment and %70 decoded
    ('http.uri.raw; content:"/a/../admin/%70anel";', True),
    ('http.uri; content:"/a/../";', False),
    ('http.method; content:"GET"; bsize:3;', True),
    ('http.host; content:"www.example.com"; bsize:15;', True),  # lowercased, port stripped
    ('http.host.raw; content:"WWW.Example.COM";', True),
    ('http.user_agent; content:"curl/";', True),
    ('http.header; content:"evilcookie";', False),  # http.header leaves the Cookie out
    ('http.cookie; content:"evilcookie";', True),
    ('http.header_names; content:"|0d 0a|Host|0d 0a|";', True),
    # the buffers made of a header list, exactly: 'Name: value' lines (no Cookie), names between CRLFs
    ('http.header; content:"Host|3a| WWW.Example.COM|3a|8080|0d 0a|User-Agent|3a| curl/8.0|0d 0a|"; '
     'startswith; bsize:50;', True),
    ('http.header_names; content:"|0d 0a|Host|0d 0a|User-Agent|0d 0a|Cookie|0d 0a 0d 0a|"; startswith; bsize:30;',
     True),
    ('flow:to_client; http.content_len; content:"5"; bsize:1;', True),
    ('flow:to_client; http.start; content:"HTTP/1.1 200 OK|0d 0a|Server|3a| nginx|0d 0a|Content-Length|3a| 5'
     '|0d 0a 0d 0a|"; startswith; bsize:53;', True),
    ('flow:to_client; content:"Length|3a| 5|0d 0a 0d 0a|hello"; http.stat_code; content:"200";', True),  # the message
    ('flow:to_client; http.stat_code; content:"200";', True),
    ('http.server; content:"nginx";', True),
    ('file.data; content:"hello"; flow:to_client;', True),
    ('http.uri; content:"/ADMIN"; nocase; http.method; content:"GET";', True),
    ('http.uri; content:"/admin"; http.method; content:"POST";', False),  # every buffer must match
    ('http.uri; to_uppercase; content:"/ADMIN/PANEL";', True),
    ('http.start; content:"GET /a/../admin/%70anel?x=1 HTTP/1.1|0d 0a|Host"; startswith;', True),
    # payload keywords in an HTTP rule: the whole message (ET's "content before a sticky buffer")
    ('flow:to_server; content:"curl/8.0|0d 0a|Cookie"; http.method; content:"GET";', True),
    ('flow:to_server; content:"nginx"; http.method; content:"GET";', False),
])
def test_http_buffers(rule, fires):
    events = replay(f'alert http any any -> any any (msg:"t"; {rule} sid:1;)', http_frames(Conv()))
    assert alerted(events) == ([1] if fires else [])


def test_an_http_rule_fires_on_any_port_and_once_per_transaction():
    conv = Conv(dport=8888)
    frames = conv.handshake() + [conv.client(REQ + REQ), conv.server(RESP + RESP), conv.client(b"", flags="A"),
                                 conv.client(b"", flags="FA"), conv.server(b"", flags="FA")]
    events = replay('alert http any any -> any any (msg:"t"; http.method; content:"GET"; sid:1;)', frames)
    alerts = [e for e in events if isinstance(e, Alert)]
    assert [a.tx.tx_id for a in alerts] == [0, 1]  # one alert per transaction, pipelined requests
    assert sum(isinstance(e, AppTx) for e in events) == 2


def test_transport_rules_do_not_see_app_proto_rules_on_other_protocols():
    conv = Conv(dport=80)
    frames = conv.handshake() + [conv.client(b"\x16\x03\x01\x00\x05hello"), conv.client(b"", flags="FA")]
    events = replay('alert http any any -> any any (msg:"t"; content:"hello"; sid:1;)', frames)
    assert alerted(events) == []


@pytest.mark.parametrize("version", [2, 3])
def test_dns_query_rule_and_eve_records(tmp_path, version):
    q = ETH() / IP(src=CLI, dst=SRV) / UDP(sport=5353, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="evil.example.org"))
    r = ETH() / IP(src=SRV, dst=CLI) / UDP(sport=53, dport=5353) / DNS(
        id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="evil.example.org"), an=DNSRR(rrname="evil.example.org", rdata="192.0.2.9"))
    events = replay('alert dns any any -> any any (msg:"t"; dns.query; dotprefix; content:".example.org"; endswith; '
                    'sid:1;)', [q, r])
    assert alerted(events) == [1]
    out = tmp_path / "eve.json"
    w = EveWriter(str(out), dns_version=version)
    for e in events:
        w.handle(e)
    w.close()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    alert = next(r for r in recs if r["event_type"] == "alert")
    assert alert["app_proto"] == "dns" and alert["tx_id"] == 0
    # an alert's dns object is the version 3 one whatever the records' version (AlertJsonDns)
    assert alert["dns"]["type"] == "request" and alert["dns"]["queries"][0]["rrname"] == "evil.example.org"
    dns_recs = [r for r in recs if r["event_type"] == "dns"]
    kinds = {2: ("query", "answer"), 3: ("request", "response")}[version]
    assert [(r["pcap_cnt"], r["dns"]["version"], r["dns"]["type"]) for r in dns_recs] == [
        (1, version, kinds[0]), (2, version, kinds[1])]
    assert dns_recs[1]["dns"]["answers"][0]["rdata"] == "192.0.2.9"
    flow = next(r for r in recs if r["event_type"] == "flow")
    assert flow["app_proto"] == "dns"


def test_http_eve_record_and_alert_object(tmp_path):
    events = replay('alert http any any -> any any (msg:"t"; http.uri; content:"/admin"; sid:1;)', http_frames(Conv()))
    out = tmp_path / "eve.json"
    w = EveWriter(str(out))
    for e in events:
        w.handle(e)
    w.close()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    http = next(r for r in recs if r["event_type"] == "http")
    assert http["http"]["hostname"] == "www.example.com" and http["http"]["status"] == 200
    assert http["http"]["http_method"] == "GET" and http["tx_id"] == 0
    alert = next(r for r in recs if r["event_type"] == "alert")
    assert alert["app_proto"] == "http" and alert["tx_id"] == 0 and alert["http"]["url"] == REQ.split()[1].decode()
    assert next(r for r in recs if r["event_type"] == "flow")["app_proto"] == "http"


def test_ssh_banners_are_buffers_and_an_eve_record():
    conv = Conv(dport=2222)
    frames = conv.handshake() + [conv.server(b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n"), conv.client(b"SSH-2.0-OpenSSH_9.0\r\n"),
                                 conv.server(b"", flags="A"), conv.client(b"", flags="FA"), conv.server(b"", flags="FA")]
    events = replay('alert ssh any any -> any any (msg:"t"; ssh.software; content:"OpenSSH_9"; sid:1;)', frames)
    assert alerted(events) == [1]
    (tx,) = [e for e in events if isinstance(e, AppTx)]
    from mirrorwatch.sinks.eve_app import tx_records
    assert tx_records("ssh", tx.tx) == [{"client": {"proto_version": "2.0", "software_version": "OpenSSH_9.0"},
                                         "server": {"proto_version": "2.0", "software_version": "OpenSSH_8.9p1"}}]
