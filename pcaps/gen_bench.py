#!/usr/bin/env python3
"""Generates a large benchmark pcap of realistic mixed traffic, fast.

    python pcaps/gen_bench.py [--packets N] [--seed S] [OUT]
    (default: 1,000,000 packets into pcaps/bench-1m.pcap; not committed)

What is in it: many concurrent, interleaved sessions between a few hundred
clients and a few dozen servers:

- TCP (about 80% of sessions): full handshake, an HTTP/1.1 request, a
  response cut into MSS-sized segments with ACKs every second segment, then
  FIN/FIN/ACK; correct, increasing sequence and acknowledgement numbers.
  One session in a thousand returns "uid=0(root)" (alerts with the bundled
  signatures), so the alert path is part of what is measured.
- UDP (about 20%): DNS-like query/response pairs.
- About a quarter IPv6, about a fifth 802.1Q VLAN-tagged.

Every IPv4/TCP/UDP checksum is correct.  Speed comes from building frames
with ``struct`` from precomputed templates and summing checksums from
precomputed parts (the payload's ones'-complement sum is computed once per
template), never from per-packet scapy.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "bench-1m.pcap"
T0 = 1704110400.0
MSS = 1448
CONCURRENT = 256

ETH = struct.Struct("!6s6sH")
VLAN = struct.Struct("!6s6sHHH")
IP4 = struct.Struct("!BBHHHBBH4s4s")
IP6 = struct.Struct("!IHBB16s16s")
TCP = struct.Struct("!HHIIBBHHH")
UDP = struct.Struct("!HHHH")
REC = struct.Struct("<IIII")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def osum(data: bytes) -> int:
    """Ones'-complement sum modulo 0xFFFF (int.from_bytes does the word loop in C)."""
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    return v % 0xFFFF


def fold(s: int) -> int:
    s %= 0xFFFF
    return (~s) & 0xFFFF if s else 0xFFFF


class Host:
    __slots__ = ("ipv", "addr", "asum", "mac")

    def __init__(self, ipv: int, addr: bytes, mac: bytes):
        self.ipv, self.addr, self.mac = ipv, addr, mac
        self.asum = osum(addr)


def make_hosts(rng: random.Random):
    clients4 = [Host(4, bytes([10, 20, i // 250, 1 + i % 250]), bytes([2, 0, 0, 0, i >> 8, i & 255])) for i in range(400)]
    clients6 = [Host(6, bytes.fromhex("20010db8001400000000000000%06x" % (0x100 + i)), bytes([2, 0, 0, 1, i >> 8, i & 255]))
                for i in range(150)]
    servers4 = [Host(4, bytes([198, 51, 100, 10 + i]), b"\x00\x1b\x21\x00\x00\x01") for i in range(40)]
    servers6 = [Host(6, bytes.fromhex("20010db8008000000000000000%06x" % (0x80 + i)), b"\x00\x1b\x21\x00\x00\x01")
                for i in range(20)]
    return clients4, clients6, servers4, servers6


_WORDS = ("index", "news", "api", "static", "img", "login", "search", "cart", "docs", "video", "assets", "user")
_HOSTS = ("www.example.com", "cdn.example.net", "api.example.org", "intranet.example", "shop.example.com")
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "curl/8.5.0", "python-requests/2.31.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)


def make_requests(rng: random.Random, n: int = 300) -> list[tuple[bytes, int]]:
    out = []
    for _ in range(n):
        path = "/" + "/".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.5:
            path += f"?id={rng.randint(1, 99999)}&q={rng.choice(_WORDS)}"
        req = (f"GET {path} HTTP/1.1\r\nHost: {rng.choice(_HOSTS)}\r\nUser-Agent: {rng.choice(_AGENTS)}\r\n"
               f"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n"
               f"Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
               f"Cookie: session={rng.getrandbits(96):024x}\r\n\r\n").encode()
        out.append((req, osum(req)))
    return out


def make_responses(rng: random.Random, n: int = 60) -> list[list[tuple[bytes, int]]]:
    """Response templates, each already cut into MSS segments with their payload sums."""
    out = []
    for i in range(n):
        size = int(rng.choice((300, 800, 1500, 3000, 6000, 12000, 24000)) * rng.uniform(0.7, 1.3))
        words = " ".join(rng.choice(_WORDS) for _ in range(size // 6 + 1))
        body = (f"<!doctype html><html><head><title>{rng.choice(_WORDS)}</title></head><body><p>{words}</p>"
                f"</body></html>\n").encode()[:size]
        if i == 0:  # the alerting template: testmynids-style answer
            body = b"uid=0(root) gid=0(root) groups=0(root)\n"
        head = (f"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 01 Jan 2024 12:00:00 GMT\r\n"
                f"Content-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                f"Cache-Control: max-age=600\r\n\r\n").encode()
        data = head + body
        out.append([(data[j:j + MSS], osum(data[j:j + MSS])) for j in range(0, len(data), MSS)])
    return out


class Writer:
    """Builds frames from fields and appends pcap records to a buffer flushed in large writes."""

    def __init__(self, fp):
        self.fp = fp
        self.buf = bytearray()
        self.count = 0
        self.ip_id = 1
        fp.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

    def _l2(self, src: Host, dst: Host, vlan: int | None, ethertype: int) -> bytes:
        if vlan is None:
            return ETH.pack(dst.mac, src.mac, ethertype)
        return VLAN.pack(dst.mac, src.mac, 0x8100, vlan, ethertype)

    def _emit(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        self.buf += REC.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame))
        self.buf += frame
        self.count += 1
        if len(self.buf) > 1 << 22:
            self.fp.write(self.buf)
            self.buf = bytearray()

    def _ip(self, src: Host, dst: Host, proto: int, l4len: int) -> bytes:
        if src.ipv == 6:
            return IP6.pack(0x60000000, l4len, proto, 64, src.addr, dst.addr)
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        total = 20 + l4len
        s = 0x4500 + total + self.ip_id + 0x4000 + (64 << 8 | proto) + src.asum + dst.asum
        return IP4.pack(0x45, 0, total, self.ip_id, 0x4000, 64, proto, fold(s), src.addr, dst.addr)

    def tcp(self, ts, src: Host, dst: Host, sport, dport, seq, ack, flags, payload=b"", psum=0, vlan=None, win=64240):
        l4len = 20 + len(payload)
        s = (src.asum + dst.asum + 6 + l4len + sport + dport + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16)
             + (ack & 0xFFFF) + (0x5000 | flags) + win + psum)
        hdr = TCP.pack(sport, dport, seq, ack, 0x50, flags, win, fold(s), 0)
        et = 0x86DD if src.ipv == 6 else 0x0800
        self._emit(ts, self._l2(src, dst, vlan, et) + self._ip(src, dst, 6, l4len) + hdr + payload)

    def udp(self, ts, src: Host, dst: Host, sport, dport, payload: bytes, psum: int, vlan=None):
        l4len = 8 + len(payload)
        s = src.asum + dst.asum + 17 + l4len + sport + dport + l4len + psum
        hdr = UDP.pack(sport, dport, l4len, fold(s))
        et = 0x86DD if src.ipv == 6 else 0x0800
        self._emit(ts, self._l2(src, dst, vlan, et) + self._ip(src, dst, 17, l4len) + hdr + payload)

    def close(self) -> None:
        self.fp.write(self.buf)
        self.buf = bytearray()


def tcp_session(rng, c: Host, s: Host, vlan, requests, responses):
    """Yields (dt, writer-method args) for one HTTP session, in order."""
    cport, sport = rng.randint(1024, 65535), rng.choice((80, 80, 80, 8080))
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    req, rsum = rng.choice(requests)
    resp = responses[0] if rng.random() < 0.001 else rng.choice(responses[1:])
    M = 0xFFFFFFFF
    yield ("tcp", c, s, cport, sport, cseq, 0, SYN, b"", 0, vlan)
    yield ("tcp", s, c, sport, cport, sseq, (cseq + 1) & M, SYN | ACK, b"", 0, vlan)
    cseq, sseq = (cseq + 1) & M, (sseq + 1) & M
    yield ("tcp", c, s, cport, sport, cseq, sseq, ACK, b"", 0, vlan)
    yield ("tcp", c, s, cport, sport, cseq, sseq, PSH | ACK, req, rsum, vlan)
    cseq = (cseq + len(req)) & M
    for i, (seg, ssum) in enumerate(resp):
        yield ("tcp", s, c, sport, cport, sseq, cseq, ACK if i + 1 < len(resp) else PSH | ACK, seg, ssum, vlan)
        sseq = (sseq + len(seg)) & M
        if i & 1 or i + 1 == len(resp):
            yield ("tcp", c, s, cport, sport, cseq, sseq, ACK, b"", 0, vlan)
    yield ("tcp", c, s, cport, sport, cseq, sseq, FIN | ACK, b"", 0, vlan)
    yield ("tcp", s, c, sport, cport, sseq, (cseq + 1) & M, FIN | ACK, b"", 0, vlan)
    yield ("tcp", c, s, cport, sport, (cseq + 1) & M, (sseq + 1) & M, ACK, b"", 0, vlan)


def dns_pair(rng, c: Host, s: Host, vlan):
    qid = rng.getrandbits(16)
    name = b"".join(bytes([len(w)]) + w.encode() for w in (rng.choice(_WORDS), "example", "com")) + b"\0"
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    r = (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + name + b"\x00\x01\x00\x01"
         + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes([198, 51, 100, rng.randint(1, 254)]))
    cport = rng.randint(1024, 65535)
    yield ("udp", c, s, cport, 53, q, osum(q), vlan)
    yield ("udp", s, c, 53, cport, r, osum(r), vlan)


def generate(out: Path, packets: int, seed: int) -> int:
    rng = random.Random(seed)
    c4, c6, s4, s6 = make_hosts(rng)
    requests, responses = make_requests(rng), make_responses(rng)
    active: list = []
    ts = T0
    with open(out, "wb") as fp:
        w = Writer(fp)
        tcp, udp = w.tcp, w.udp
        while w.count < packets:
            while len(active) < CONCURRENT:
                v6 = rng.random() < 0.25
                c = rng.choice(c6 if v6 else c4)
                s = rng.choice(s6 if v6 else s4)
                vlan = rng.choice((100, 200, 300)) if rng.random() < 0.2 else None
                gen = tcp_session(rng, c, s, vlan, requests, responses) if rng.random() < 0.8 else dns_pair(rng, c, s, vlan)
                active.append(gen)
            i = rng.randrange(len(active))
            step = next(active[i], None)
            if step is None:
                active[i] = active[-1]
                active.pop()
                continue
            ts += 0.00001
            if step[0] == "tcp":
                tcp(ts, *step[1:])
            else:
                udp(ts, *step[1:])
        w.close()
        return w.count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help=f"output pcap (default {DEFAULT_OUT.name})")
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets to write (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    n = generate(Path(a.out), a.packets, a.seed)
    size = Path(a.out).stat().st_size
    print(f"wrote {a.out}: {n:,} packets, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
