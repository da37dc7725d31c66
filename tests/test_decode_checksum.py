"""Checksum verification (-k all / none / auto) and the ones'-complement arithmetic."""

from __future__ import annotations

import os

import pytest

scapy = pytest.importorskip("scapy.all")
from scapy.all import ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, Raw, raw  # noqa: E402
from scapy.utils import checksum as scapy_checksum  # noqa: E402

from mirrorwatch.core.decode import checksum  # noqa: E402
from mirrorwatch.core.decode.decoder import Decoder  # noqa: E402
from mirrorwatch.core.settings import Settings  # noqa: E402

A4, B4 = "198.51.100.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"


def eth():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def rfc1071(data: bytes) -> int:
    """The textbook loop, as the reference."""
    if len(data) & 1:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@pytest.mark.parametrize("n", [0, 1, 2, 3, 19, 20, 64, 1459, 1460, 9001])
def test_bignum_trick_matches_rfc1071(n):
    for _ in range(20):
        data = os.urandom(n)
        want = rfc1071(data)
        got = checksum.checksum(data)
        # 0x0000 and 0xFFFF are the same number in ones' complement
        assert got == want or {got, want} == {0, 0xFFFF}
        assert want == scapy_checksum(data) or {want, scapy_checksum(data)} == {0, 0xFFFF}
        if n >= 2:  # a buffer carrying its own checksum verifies; a flipped bit does not
            c = checksum.checksum(b"\0\0" + data[2:])
            sealed = c.to_bytes(2, "big") + data[2:]
            assert checksum.verify(sealed)
            assert not checksum.verify(bytes([sealed[0] ^ 0x10]) + sealed[1:])


def test_ipv4_header_checksum_helper():
    h = raw(IP(src=A4, dst=B4, ttl=5, id=3))
    assert checksum.ipv4_header_checksum(h) == int.from_bytes(h[10:12], "big")


def frames():
    """(good frame, bad frame) pairs for each checksummed header."""
    def both(build, corrupt_at):
        good = raw(build())
        bad = bytearray(good)
        bad[corrupt_at] ^= 0x55
        return good, bytes(bad)

    yield "ipv4", *both(lambda: eth() / IP(src=A4, dst=B4) / TCP() / Raw(b"x"), 14 + 10)
    yield "tcp", *both(lambda: eth() / IP(src=A4, dst=B4) / TCP() / Raw(b"xyz"), 14 + 20 + 16)
    yield "udp", *both(lambda: eth() / IP(src=A4, dst=B4) / UDP() / Raw(b"xyz"), 14 + 20 + 6)
    yield "icmp", *both(lambda: eth() / IP(src=A4, dst=B4) / ICMP() / Raw(b"xyz"), 14 + 20 + 2)
    yield "tcp6", *both(lambda: eth() / IPv6(src=A6, dst=B6) / TCP() / Raw(b"xyz"), 14 + 40 + 16)
    yield "udp6", *both(lambda: eth() / IPv6(src=A6, dst=B6) / UDP() / Raw(b"xyz"), 14 + 40 + 6)
    yield "icmp6", *both(lambda: eth() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest() / Raw(b"xyz"), 14 + 40 + 2)
    yield "tcp-odd", *both(lambda: eth() / IP(src=A4, dst=B4) / TCP() / Raw(b"abcde"), 14 + 20 + 16)


@pytest.mark.parametrize("name,good,bad", list(frames()), ids=lambda v: v if isinstance(v, str) else "")
def test_good_and_bad_checksums(name, good, bad):
    d = Decoder(Settings(), "all")
    p = d.decode(1.0, 1, good, 1)
    assert p is not None and p.csum_ok is True
    p = d.decode(1.0, 1, bad, 2)
    assert p is not None and p.csum_ok is False  # still a packet, flagged
    c = d.counters()
    assert c["decoder.errors"] == 0
    n = Decoder(Settings(), "none")
    assert n.decode(1.0, 1, bad, 1).csum_ok is None


def test_udp_ipv4_zero_checksum_means_none_sent():
    f = bytearray(raw(eth() / IP(src=A4, dst=B4) / UDP(chksum=0) / Raw(b"abc")))
    p = Decoder(Settings(), "all").decode(1.0, 1, bytes(f), 1)
    assert p.csum_ok is True


def _mixed(n_good, n_bad):
    good = raw(eth() / IP(src=A4, dst=B4) / TCP() / Raw(b"payload"))
    bad = bytearray(good)
    bad[14 + 20 + 16] ^= 0xFF
    return [good] * n_good + [bytes(bad)] * n_bad


def test_auto_judges_no_packet_until_offloading_is_evident_then_stays_off():
    s = Settings({"detect.checksum-auto-sample": 100})
    d = Decoder(s, "auto")
    frames = _mixed(50, 50) + _mixed(0, 100)
    out = [d.decode(1.0, 1, f, i) for i, f in enumerate(frames, 1)]
    c = d.counters()
    assert c["checksum.auto_disabled"] == 1 and d.auto_sample == (50, 100)
    assert out[0].csum_ok is None and out[60].csum_ok is None  # sampled, not judged: no packet is lost
    assert out[150].csum_ok is None  # not verified any more
    assert c["checksum.checked"] == 100


def test_auto_verifies_once_the_sample_proves_checksums_real():
    s = Settings({"detect.checksum-auto-sample": 100})
    d = Decoder(s, "auto")
    frames = _mixed(195, 5) + _mixed(0, 3)
    out = [d.decode(1.0, 1, f, i) for i, f in enumerate(frames, 1)]
    assert d.counters()["checksum.auto_disabled"] == 0 and d.auto_sample == (0, 100)
    assert {p.csum_ok for p in out[:99]} == {None}  # the sample itself
    assert out[100].csum_ok is True and out[-1].csum_ok is False


def test_auto_samples_only_checksummed_tcp_and_udp():
    """The default sample is a few dozen packets; ICMP, IPv4 headers and UDP over IPv4 without a
    checksum are neither judged nor counted before the decision."""
    n = Settings()["detect.checksum-auto-sample"]
    assert 16 <= n <= 64
    d = Decoder(Settings(), "auto")
    icmp = raw(eth() / IP(src=A4, dst=B4, chksum=1) / ICMP(chksum=1) / Raw(b"x"))
    no_sum = raw(eth() / IP(src=A4, dst=B4) / UDP(chksum=0) / Raw(b"x"))
    for i in range(3 * n):
        p = d.decode(1.0, 1, icmp if i % 2 else no_sum, i)
        assert p.csum_ok is None
    assert d.auto_sample is None and d.counters()["checksum.checked"] == 0
    bad_udp = raw(eth() / IPv6(src=A6, dst=B6) / UDP(chksum=1) / Raw(b"x"))
    for i in range(n):
        assert d.decode(1.0, 1, bad_udp, i).csum_ok is None
    assert d.auto_sample == (n, n) and d.auto_disabled == 1


def _run(path, mode):
    from mirrorwatch.sources.pcapfile import run

    d = Decoder(Settings(), mode)
    n = [0]

    def cb(ts, lt, f, wl):
        n[0] += 1
        d.decode(ts, lt, f, n[0])

    run([path], cb)
    return d


@pytest.mark.parametrize("rel,offloaded", [
    ("suricata-verify/tests/bug-5162/input.pcap", True),  # captured with checksum offload: half the checksums wrong
    ("suricata-verify/tests/tls__tls-bypass-missing-event/tor_bl.pcap", False),  # clean capture
])
def test_auto_decision_on_real_captures(corpus, rel, offloaded):
    path = corpus / rel
    if not path.exists():
        pytest.skip(f"{rel} not in corpus")
    d = _run(path, "auto")
    c = d.counters()
    sample = Settings()["detect.checksum-auto-sample"]
    assert c["checksum.auto_disabled"] == int(offloaded) and d.auto_sample[1] == sample
    full = _run(path, "all").counters()
    if offloaded:
        assert c["checksum.checked"] == sample < full["checksum.checked"]
    else:
        assert c["checksum.checked"] == full["checksum.checked"] and c["checksum.bad"] == full["checksum.bad"]


def test_bad_mode_is_refused():
    with pytest.raises(ValueError):
        Decoder(Settings(), "sometimes")


def _offloaded_capture(path, partial: bool) -> None:
    """Six sessions, the first with the attack, captured on a host that offloads checksums:
    everything the client sends carries a zero (or a pseudo-header-only, CHECKSUM_PARTIAL)
    TCP checksum; what the server sends is correct."""
    import socket

    from scapy.utils import wrpcap

    from mirrorwatch.core.decode.checksum import pseudo_sum

    frames = []
    requests = [b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"] + [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] * 5
    for n, req in enumerate(requests):
        cport = 40001 + n
        c, s = 1000 + n * 10_000, 5000 + n * 10_000
        seq = [("C", "S", c, 0, b""), ("S", "SA", s, c + 1, b""), ("C", "A", c + 1, s + 1, b""),
               ("C", "PA", c + 1, s + 1, req), ("S", "PA", s + 1, c + 1 + len(req), b"HTTP/1.1 200 OK\r\n\r\n"),
               ("C", "FA", c + 1 + len(req), s + 20, b""), ("S", "FA", s + 20, c + 2 + len(req), b""),
               ("C", "A", c + 2 + len(req), s + 21, b"")]
        for who, flags, sq, ak, data in seq:
            src, dst, sport, dport = (A4, B4, cport, 80) if who == "C" else (B4, A4, 80, cport)
            seg = TCP(sport=sport, dport=dport, flags=flags, seq=sq, ack=ak, window=8192) / Raw(data)
            frame = eth() / IP(src=src, dst=dst) / seg
            if who == "C":
                size = len(raw(seg))
                pseudo = pseudo_sum(socket.inet_aton(src), socket.inet_aton(dst), 6, size)
                frame[TCP].chksum = ~checksum.checksum(b"", pseudo) & 0xFFFF if partial else 0
            frames.append(frame)
    wrpcap(str(path), frames)


@pytest.mark.parametrize("partial", [False, True], ids=["zero", "partial"])
def test_replay_of_offloaded_checksums_alerts_on_the_first_session(tmp_path, partial):
    """-k auto (the default) loses no session while it learns that the capture's checksums are
    offloaded: the very first session's attack alerts; -k all drops it as bad-checksum traffic."""
    import json

    from click.testing import CliRunner

    from mirrorwatch.cli import main

    pcap = tmp_path / "offloaded.pcap"
    _offloaded_capture(pcap, partial)
    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp any any -> any 80 (msg:"passwd"; flow:to_server,established; '
                     'content:"/etc/passwd"; sid:1; rev:1;)\n')
    alerts = {}
    for mode in ("auto", "all"):
        eve = tmp_path / f"{mode}.json"
        r = CliRunner().invoke(main, ["replay", "-q", "-k", mode, "-r", str(rules), "--eve", str(eve), str(pcap)])
        assert r.exit_code == 0, r.output
        events = [json.loads(line) for line in eve.read_text().splitlines()]
        alerts[mode] = [e for e in events if e["event_type"] == "alert"]
        assert events[-1]["stats"]["decoder"]["checksum"]["auto_disabled"] == (mode == "auto")
    assert [(a["alert"]["signature_id"], a["src_port"]) for a in alerts["auto"]] == [(1, 40001)]
    assert alerts["all"] == []
