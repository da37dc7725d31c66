"""Protocol detection by content: unit cases, properties, and every TCP flow of the corpus.

Openings come from real stacks where one runs here (OpenSSL's ClientHello,
scapy's DNS encoder) and from the corpus. The corpus test compares with
tshark's dissection of the first payload of each flow; tshark also names
protocols by port, so a disagreement must be one of the reasons listed.
"""

from __future__ import annotations

import collections
import ssl
import struct
from functools import cache

import pytest
from applayer_corpus import TO_CLIENT, TO_SERVER, require_tshark
from applayer_oracles import Dissection, corpus_with, dissect, for_each
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR

from mirrorwatch.core.applayer.detect_proto import FAILED, ProtoDetect, probe_udp


def client_hello() -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    out = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), out, server_hostname="example.org")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def dns_tcp(dns_id: int = 1, response: bool = False) -> bytes:
    msg = bytes(DNS(id=dns_id, qr=int(response), rd=1, qd=[DNSQR(qname="example.org")],
                    an=[DNSRR(rrname="example.org", rdata="192.0.2.1")] if response else []))
    return struct.pack("!H", len(msg)) + msg


SMB_NEGOTIATE = b"\x00\x00\x00\x2f\xffSMBr" + b"\x00" * 42
SMB2_AFTER_SESSION_REQUEST = (b"\x81\x00\x00\x04" + b"\x20\x43\x4b\x41" + b"\x00\x00\x00\x40\xfeSMB"
                              + b"\x00" * 60)
DCERPC_BIND = bytes.fromhex("05000b03100000004800000001000000") + b"\x00" * 56
SOCKS5_REPLY = b"\x05\x00\x05\x00\x00\x01\x0a\x00\x00\x02\x00\x50" + b"\x00" * 8

OPENINGS = {
    "http": [(TO_SERVER, b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n")],
    "http-lowercase": [(TO_SERVER, b"post /x HTTP/1.0\r\n")],
    "http-unknown-method": [(TO_SERVER, b"FROBNICATE /x HTTP/1.1\r\nHost: a\r\n\r\n")],
    "http-response-first": [(TO_CLIENT, b"HTTP/1.1 200 OK\r\n\r\n")],
    "tls": [(TO_SERVER, None)],
    "dns-tcp": [(TO_SERVER, dns_tcp()), (TO_CLIENT, dns_tcp(response=True))],
    "smtp": [(TO_CLIENT, b"220 mx.example.org ESMTP Postfix\r\n"), (TO_SERVER, b"EHLO me\r\n")],
    "smtp-client-only": [(TO_SERVER, b"HELO me\r\n")],
    "ftp": [(TO_CLIENT, b"220 (vsFTPd 3.0.3)\r\n"), (TO_SERVER, b"USER anonymous\r\n")],
    "ftp-anonymous-banner": [(TO_CLIENT, b"220 Welcome\r\n"), (TO_SERVER, b"USER bob\r\n")],
    "ftp-auth-tls": [(TO_CLIENT, b"220-Hello\r\n"), (TO_SERVER, b"AUTH TLS\r\n")],
    "ssh": [(TO_CLIENT, b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3\r\n"), (TO_SERVER, b"SSH-2.0-Go\r\n")],
    "smb": [(TO_SERVER, SMB_NEGOTIATE)],
    "smb-after-session-request": [(TO_SERVER, SMB2_AFTER_SESSION_REQUEST)],
    "dcerpc": [(TO_SERVER, DCERPC_BIND)],
}
EXPECTED = {"http": "http", "http-lowercase": "http", "http-unknown-method": "http",
            "http-response-first": "http", "tls": "tls", "dns-tcp": "dns", "smtp": "smtp",
            "smtp-client-only": "smtp", "ftp": "ftp", "ftp-anonymous-banner": "ftp",
            "ftp-auth-tls": "ftp", "ssh": "ssh", "smb": "smb", "smb-after-session-request": "smb",
            "dcerpc": "dcerpc"}


def opening(name: str) -> list[tuple[int, bytes]]:
    return [(d, client_hello() if data is None else data) for d, data in OPENINGS[name]]


def detect(chunks) -> tuple[str | None, ProtoDetect]:
    detector = ProtoDetect()
    verdict = None
    for direction, data in chunks:
        verdict = detector.probe(direction, data)
    return verdict, detector


@pytest.mark.parametrize("name", sorted(OPENINGS))
def test_openings_are_detected(name):
    assert detect(opening(name))[0] == EXPECTED[name]


@pytest.mark.parametrize("chunks", [
    [(TO_CLIENT, b"220 mail ready\r\n")],                        # banner naming neither
    [(TO_SERVER, b"GE")],                                        # still a method prefix
    [(TO_SERVER, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")],           # HTTP/2 preface: not HTTP/1
    [(TO_CLIENT, SOCKS5_REPLY)],                                 # SOCKS5 also starts 05 00
    [(TO_SERVER, dns_tcp(response=True))],                       # QR bit of the wrong side
], ids=["bare-220", "partial-method", "h2-preface", "socks5", "dns-wrong-direction"])
def test_undecided_openings(chunks):
    assert detect(chunks)[0] is None


def test_both_directions_without_a_match_fail():
    verdict, detector = detect([(TO_SERVER, b"\x00\x01binary, not a protocol"),
                                (TO_CLIENT, b"\x7fjunk that is no protocol\n")])
    assert verdict == FAILED and detector.direction_proto(TO_SERVER) is None


def test_one_sided_traffic_fails_after_the_limit():
    detector = ProtoDetect(max_detect_bytes=1000)
    assert detector.probe(TO_SERVER, b"\x00" * 999) is None
    assert detector.probe(TO_SERVER, b"\x00") == FAILED
    assert detector.probe(TO_CLIENT, b"HTTP/1.1 200 OK\r\n") == FAILED


def test_window_full_of_a_possible_request_line_is_no_match():
    detector = ProtoDetect(probe_window=64)
    assert detector.probe(TO_SERVER, b"FOO /" + b"a" * 100) is None
    assert detector.probe(TO_CLIENT, b"\x01\x02" + b"x" * 20) == FAILED


def test_first_decided_direction_wins():
    """Suricata (app-layer.c) keeps the protocol whose parser already ran."""
    verdict, detector = detect([(TO_CLIENT, b"SSH-2.0-x\r\n"), (TO_SERVER, b"GET / HTTP/1.1\r\n")])
    assert verdict == "ssh" and detector.mismatch
    assert detector.direction_proto(TO_SERVER) == "http"


def test_udp_dns_on_its_port():
    query = bytes(DNS(id=3, rd=1, qd=[DNSQR(qname="example.org")]))
    assert probe_udp(query, 40000, 53)[0] == "dns"
    assert probe_udp(query, 53, 40000)[0] == "dns"
    assert probe_udp(query, 40000, 5353) is None
    ntp = b"\x23" + b"\x00" * 47
    assert probe_udp(ntp, 40000, 53) is None


@pytest.mark.parametrize(("payload", "sport", "dport", "expected"), [
    (b"\x23" + bytes(47), 40000, 123, "ntp"),  # NTPv4 client
    (b"\x1c" + bytes(47), 123, 40000, "ntp"),  # NTPv3 server answer
    (b"\x13" + bytes(47), 40000, 123, None),  # version 2: not Suricata's NTP
    (b"\x23" + bytes(30), 40000, 123, None),  # shorter than a header
    (b"\x23" + bytes(47), 40000, 124, None),  # not its port
    (b"\x01\x01\x06\x00" + bytes(236), 68, 67, "dhcp"),  # a whole BOOTP header
    (b"\x02\x01\x06\x00" + bytes(300), 67, 68, "dhcp"),
    (b"\x01\x01\x06\x00" + bytes(200), 68, 67, None),  # shorter than the header
])
def test_udp_ntp_and_dhcp_are_named_as_suricatas_probes_name_them(payload, sport, dport, expected):
    found = probe_udp(payload, sport, dport)
    assert (found[0] if found else None) == expected


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(OPENINGS)), st.data())
def test_segmentation_does_not_change_the_verdict(name, data):
    chunks = opening(name)
    pieces = []
    for direction, blob in chunks:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=6)))
        pieces += [(direction, blob[a:b]) for a, b in zip([0, *cuts], [*cuts, len(blob)])]
    assert detect(pieces)[0] == EXPECTED[name]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([TO_SERVER, TO_CLIENT]), st.binary(max_size=300)),
                max_size=8))
def test_random_bytes_never_raise_and_do_not_depend_on_segmentation(chunks):
    whole = ProtoDetect()
    for direction in (TO_SERVER, TO_CLIENT):
        whole.probe(direction, b"".join(d for dr, d in chunks if dr == direction))
    split = ProtoDetect()
    for direction, data in chunks:
        split.probe(direction, data)
    for direction in (TO_SERVER, TO_CLIENT):
        assert split.direction_proto(direction) == whole.direction_proto(direction)
    probe_udp(b"".join(d for _, d in chunks), 53, 53)


# --- the corpus against tshark ---------------------------------------------------------

OURS = {"http": "http", "tls": "tls", "dns": "dns", "smtp": "smtp", "ftp": "ftp", "ssh": "ssh",
        "smb": "smb", "smb2": "smb", "nbss": "smb", "dcerpc": "dcerpc"}
# tshark name -> what we say instead, and why that is right.
EXPLAINED_PAIRS = {
    ("bittorrent", "tls"): "a TLS session on a BitTorrent port: tshark names the port",
    ("sip", "http"): "HTTP on port 5060: tshark names the port",
    ("socks", "http"): "HTTP through a SOCKS port: tshark names the port",
    ("ssh", "http"): "HTTP on port 22: tshark names the port",
    ("irc", "ftp"): "IRC's USER command: Suricata's FTP pattern matches it too",
}


def _starts_like(proto: str, events) -> bool:
    """Whether a direction's first bytes look like ``proto`` (an independent, simple check)."""
    firsts = {}
    for kind, direction, data in events:
        if kind == "data" and data and direction not in firsts:
            firsts[direction] = data
    ts, tc = firsts.get(TO_SERVER, b""), firsts.get(TO_CLIENT, b"")
    checks = {
        "http": lambda: tc[:7].upper() == b"HTTP/1." or b" HTTP/1." in ts.split(b"\n")[0],
        "tls": lambda: ts[:2] == b"\x16\x03" or tc[:1] in (b"\x15", b"\x16", b"\x17") and tc[1:2] == b"\x03",
        "ssh": lambda: ts[:4] == b"SSH-" or tc[:4] == b"SSH-",
        "smb": lambda: ts[4:8] in (b"\xffSMB", b"\xfeSMB") or tc[4:8] in (b"\xffSMB", b"\xfeSMB"),
        "dcerpc": lambda: ts[:2] == b"\x05\x00" or tc[:2] == b"\x05\x00",
        "smtp": lambda: ts[:4].upper() in (b"EHLO", b"HELO") or b"SMTP" in tc.split(b"\n")[0].upper(),
        "ftp": lambda: ts[:5].upper() in (b"USER ", b"FEAT\r", b"PORT ") or b"FTP" in tc.split(b"\n")[0].upper(),
        "dns": lambda: len(ts) > 14 and int.from_bytes(ts[:2], "big") == len(ts) - 2,
    }
    return checks[proto]()


def _tshark_labels(seen: Dissection) -> dict[int, str]:
    """Per TCP stream, tshark's protocol for the first frame with payload, in our names."""
    labels = {}
    for stream, protocols in seen.first_protocols.items():
        names = protocols.split(":")
        labels[stream] = next((OURS[n] for n in names if n in OURS), names[-1])
    return labels


@cache
def corpus_pcaps():
    require_tshark()
    return tuple(corpus_with(set(OURS)))


@pytest.mark.slow
def test_corpus_flows_against_tshark():
    table = collections.Counter()
    for pcap, seen in for_each(corpus_pcaps(), dissect):
        labels = _tshark_labels(seen)
        for index, stream in seen.streams.items():
            verdict, detector = detect((d, x) for kind, d, x in stream.events if kind == "data")
            theirs = labels.get(index)
            table[(theirs, verdict)] += 1
            if detector.mismatch and theirs in {detector.direction_proto(TO_SERVER),
                                                detector.direction_proto(TO_CLIENT)}:
                continue  # the directions disagree: the first one decided wins, as in Suricata
            if theirs in OURS.values() and verdict != theirs:
                assert not _starts_like(theirs, stream.events), (pcap.name, index, theirs, verdict)
            elif verdict in OURS.values() and theirs not in (verdict, "data", "tcp", None):
                assert (theirs, verdict) in EXPLAINED_PAIRS, (pcap.name, index, theirs, verdict)
    agree = sum(n for (theirs, ours), n in table.items() if theirs == ours)
    assert agree > 2000
    print("tshark label, our verdict -> flows:",
          {f"{t}->{o}": n for (t, o), n in table.most_common() if t != o and n})
