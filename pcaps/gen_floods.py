#!/usr/bin/env python3
"""Flood captures: N new sessions from distinct sources, one bad session in the middle.

    python pcaps/gen_floods.py KIND SESSIONS OUT      (KIND: syn, udp, onesided)

What a mirror port sees during a scan or a flood: ``SESSIONS`` new sessions,
each from its own source address (10.0.0.0/8 counted up, 16M distinct), at
``RATE`` sessions per second of capture time:

- ``syn``: one TCP SYN each to 192.0.2.80:80, never answered (a SYN flood, a scan);
- ``udp``: one UDP datagram each (a DNS query) to 192.0.2.53:53, never answered;
- ``onesided``: one TCP segment with 1,400 bytes each (ACK|PSH, no handshake) to
  192.0.2.80:80, as a mirror that sees one direction of busy sessions.

In the middle, one ordinary TCP session (handshake, ``BAD_REQUEST``, answer,
FIN/FIN/ACK) from 172.16.0.9 to 192.0.2.80:80: the rule ``BAD_RULE`` must
alert on it whatever the flood does to the sensor.

Frames are raw pcap records built with ``struct`` by ``gen_bench.Writer``
(correct IPv4/TCP/UDP checksums), written as they are made: 10M sessions
take about a minute and no memory.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_bench import ACK, FIN, PSH, SYN, T0, Host, Writer, osum  # noqa: E402

RATE = 100_000  # new sessions per second of capture time
KINDS = ("syn", "udp", "onesided")
BAD_SID = 9_913_001
BAD_REQUEST = b"GET /cgi-bin/flood-probe.sh?cmd=id HTTP/1.1\r\nHost: victim.example\r\n\r\n"
BAD_RULE = (f'alert tcp any any -> any 80 (msg:"MW bench flood: bad request in the flood"; '
            f'flow:established,to_server; content:"/cgi-bin/flood-probe.sh"; sid:{BAD_SID}; rev:1;)\n')

_SERVER_MAC = b"\x00\x1b\x21\x00\x00\x01"
_CLIENT_MAC = b"\x02\x00\x00\x00\x00\x01"
_TCP_SERVER = Host(4, bytes([192, 0, 2, 80]), _SERVER_MAC)
_UDP_SERVER = Host(4, bytes([192, 0, 2, 53]), _SERVER_MAC)
_BAD_CLIENT = Host(4, bytes([172, 16, 0, 9]), _CLIENT_MAC)
_DNS_QUERY = struct.pack("!HHHHHH", 0x4D57, 0x0100, 1, 0, 0, 0) + b"\x05flood\x07example\x00\x00\x01\x00\x01"
_ONESIDED_PAYLOAD = bytes((i * 7 + 13) % 94 + 33 for i in range(1400))  # printable, matches no rule


def _source(i: int) -> Host:
    n = 0x0A000000 + 1 + i  # 10.0.0.1, 10.0.0.2, ...
    return Host(4, n.to_bytes(4, "big"), _CLIENT_MAC)


def _bad_session(w: Writer, ts: float) -> None:
    """One ordinary HTTP session with the bad request, every packet 10 us apart."""
    c, s, cp, sp = _BAD_CLIENT, _TCP_SERVER, 40_001, 80
    cseq, sseq = 1_000_000, 2_000_000
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    steps = (
        (c, s, cp, sp, cseq, 0, SYN, b""),
        (s, c, sp, cp, sseq, cseq + 1, SYN | ACK, b""),
        (c, s, cp, sp, cseq + 1, sseq + 1, ACK, b""),
        (c, s, cp, sp, cseq + 1, sseq + 1, PSH | ACK, BAD_REQUEST),
        (s, c, sp, cp, sseq + 1, cseq + 1 + len(BAD_REQUEST), PSH | ACK, answer),
        (c, s, cp, sp, cseq + 1 + len(BAD_REQUEST), sseq + 1 + len(answer), FIN | ACK, b""),
        (s, c, sp, cp, sseq + 1 + len(answer), cseq + 2 + len(BAD_REQUEST), FIN | ACK, b""),
        (c, s, cp, sp, cseq + 2 + len(BAD_REQUEST), sseq + 2 + len(answer), ACK, b""),
    )
    for k, (a, b, ap, bp, seq, ack, flags, data) in enumerate(steps):
        w.tcp(ts + k * 1e-5, a, b, ap, bp, seq, ack, flags, data, osum(data))


def generate(kind: str, sessions: int, out: Path) -> int:
    """Write the capture; returns the number of packets."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    payload = _ONESIDED_PAYLOAD if kind == "onesided" else _DNS_QUERY
    psum = osum(payload)
    middle = sessions // 2
    with open(out, "wb") as fp:
        w = Writer(fp)
        tcp, udp = w.tcp, w.udp
        for i in range(sessions):
            ts = T0 + i / RATE
            if i == middle:
                _bad_session(w, ts)
            src = _source(i)
            sport = 1024 + i % 64_000
            if kind == "syn":
                tcp(ts, src, _TCP_SERVER, sport, 80, i * 7919 & 0xFFFFFFFF, 0, SYN)
            elif kind == "udp":
                udp(ts, src, _UDP_SERVER, sport, 53, payload, psum)
            else:
                tcp(ts, src, _TCP_SERVER, sport, 80, i * 7919 & 0xFFFFFFFF, 1, PSH | ACK, payload, psum)
        w.close()
        return w.count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("sessions", type=int)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    n = generate(a.kind, a.sessions, a.out)
    print(f"wrote {a.out}: {n:,} packets, {a.out.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - t:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
