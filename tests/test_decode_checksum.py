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


def test_auto_switches_off_when_offloading_is_evident():
    s = Settings({"detect.checksum-auto-sample": 100})
    d = Decoder(s, "auto")
    frames = _mixed(50, 50) + _mixed(0, 100)
    out = [d.decode(1.0, 1, f, i) for i, f in enumerate(frames, 1)]
    c = d.counters()
    assert c["checksum.auto_disabled"] == 1
    assert out[0].csum_ok is True and out[60].csum_ok is False  # verified during the sample
    assert out[150].csum_ok is None  # not verified any more
    assert c["checksum.checked"] == 100


def test_auto_keeps_verifying_when_checksums_are_good():
    s = Settings({"detect.checksum-auto-sample": 100})
    d = Decoder(s, "auto")
    frames = _mixed(195, 5) + _mixed(0, 3)
    out = [d.decode(1.0, 1, f, i) for i, f in enumerate(frames, 1)]
    assert d.counters()["checksum.auto_disabled"] == 0
    assert out[-1].csum_ok is False and out[0].csum_ok is True


def _run(path, mode, sample=1000, limit=None):
    from mirrorwatch.sources.pcapfile import run

    d = Decoder(Settings({"detect.checksum-auto-sample": sample}), mode)
    n = [0]

    def cb(ts, lt, f, wl):
        if limit is None or n[0] < limit:
            n[0] += 1
            d.decode(ts, lt, f, n[0])

    run([path], cb)
    return d.counters()


@pytest.mark.parametrize("rel", [
    "suricata-verify/tests/bug-5162/input.pcap",  # captured with checksum offload: half the checksums wrong
    "suricata-verify/tests/tls__tls-bypass-missing-event/tor_bl.pcap",  # clean capture
])
def test_auto_decision_on_real_captures(corpus, rel):
    path = corpus / rel
    if not path.exists():
        pytest.skip(f"{rel} not in corpus")
    sample = 1000
    ref = _run(path, "all", limit=sample)  # what the first `sample` frames look like
    offloaded = ref["checksum.bad"] * 10 > ref["checksum.checked"]
    c = _run(path, "auto", sample=sample)
    assert c["checksum.auto_disabled"] == int(offloaded)
    full = _run(path, "all")
    if offloaded:
        assert c["checksum.checked"] < full["checksum.checked"]
    else:
        assert c["checksum.checked"] == full["checksum.checked"] and c["checksum.bad"] == full["checksum.bad"]


def test_bad_mode_is_refused():
    with pytest.raises(ValueError):
        Decoder(Settings(), "sometimes")
