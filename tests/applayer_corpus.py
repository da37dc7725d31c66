"""Real traffic for the application-layer parser tests, read with tshark.

``tcp_streams(pcap)`` gives, per TCP stream, the in-order bytes of each
direction as the sequence of (direction, bytes) deliveries a reassembler
would make (retransmitted bytes dropped, out-of-order segments held until
the hole closes, a hole never closed reported as a gap). ``udp_payloads``
gives the UDP payloads with their ports. Frames inside tunnels (more than
one IP or transport layer) are left out: their fields do not line up.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CORPUS

TO_SERVER = 0
TO_CLIENT = 1
BENCH = CORPUS / "bench"
SV_TESTS = CORPUS / "suricata-verify" / "tests"
SEQ_SPACE = 1 << 32


def require_tshark() -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")


def tshark_fields(pcap: Path, display_filter: str, fields: list[str],
                  extra: tuple[str, ...] = (), occurrence: str = "a") -> list[list[str]]:
    """Rows of the requested fields (multiple occurrences joined by ',')."""
    cmd = ["tshark", "-n", "-r", str(pcap), *extra, "-Y", display_filter, "-T", "fields",
           "-E", "separator=|", "-E", f"occurrence={occurrence}", "-E", "aggregator=,"]
    for name in fields:
        cmd += ["-e", name]
    # A cut or fuzzed capture makes tshark exit non-zero after the frames it could read.
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return [line.split("|") for line in out.splitlines()]


@dataclass
class TcpStream:
    index: int
    client: tuple[str, int] | None = None
    server_port: int = 0
    events: list[tuple[str, int, bytes | int]] = field(default_factory=list)

    def data(self, direction: int) -> bytes:
        return b"".join(d for kind, dr, d in self.events if kind == "data" and dr == direction)


class _Direction:
    def __init__(self, isn: int | None) -> None:
        self.next = isn
        self.pending: dict[int, bytes] = {}


def _deliver(stream: TcpStream, side: _Direction, direction: int, seq: int, payload: bytes) -> None:
    if side.next is None:
        side.next = seq
    offset = (seq - side.next) % SEQ_SPACE
    if offset >= SEQ_SPACE // 2:  # starts before what was delivered: keep the new tail
        payload = payload[SEQ_SPACE - offset:]
        offset = 0
    if not payload:
        return
    if offset:
        side.pending.setdefault((side.next + offset) % SEQ_SPACE, payload)
        return
    stream.events.append(("data", direction, payload))
    side.next = (side.next + len(payload)) % SEQ_SPACE
    while side.next in side.pending:
        chunk = side.pending.pop(side.next)
        stream.events.append(("data", direction, chunk))
        side.next = (side.next + len(chunk)) % SEQ_SPACE


def _flush_holes(stream: TcpStream, sides: dict[int, _Direction]) -> None:
    for direction, side in sides.items():
        while side.pending:
            seq = min(side.pending, key=lambda s: (s - side.next) % SEQ_SPACE)
            stream.events.append(("gap", direction, (seq - side.next) % SEQ_SPACE))
            side.next = seq
            _deliver(stream, side, direction, seq, side.pending.pop(seq))


TCP_STREAM_FIELDS = ["tcp.stream", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
                     "tcp.seq_raw", "tcp.flags.syn", "tcp.flags.ack", "tcp.payload"]


def tcp_streams(pcap: Path) -> dict[int, TcpStream]:
    return tcp_streams_from_rows(tshark_fields(pcap, "tcp", TCP_STREAM_FIELDS))


def tcp_streams_from_rows(rows: list[list[str]]) -> dict[int, TcpStream]:
    """The streams of tshark's ``TCP_STREAM_FIELDS`` rows (filter ``tcp``, every occurrence)."""
    streams: dict[int, TcpStream] = {}
    sides: dict[int, dict[int, _Direction]] = {}
    for index, src4, src6, dst4, dst6, sport, dport, seq, syn, ack, payload in rows:
        if "," in index + src4 + src6 + seq + payload:
            continue
        stream = streams.setdefault(int(index), TcpStream(int(index)))
        src = (src4 or src6, int(sport))
        if stream.client is None:
            from_client = syn != "1" or ack != "1"
            stream.client = src if from_client else (dst4 or dst6, int(dport))
            stream.server_port = int(dport) if from_client else int(sport)
        direction = TO_SERVER if src == stream.client else TO_CLIENT
        dirs = sides.setdefault(int(index), {})
        isn = (int(seq) + 1) % SEQ_SPACE if syn == "1" else None
        side = dirs.setdefault(direction, _Direction(isn))
        if payload:
            _deliver(stream, side, direction, int(seq), bytes.fromhex(payload))
    for index, stream in streams.items():
        _flush_holes(stream, sides.get(index, {}))
    return streams


def udp_payloads(pcap: Path, display_filter: str = "udp") -> list[tuple[int, int, int, bytes]]:
    """(frame number, source port, destination port, payload) of each UDP datagram."""
    rows = tshark_fields(pcap, display_filter, ["frame.number", "udp.srcport", "udp.dstport",
                                                "udp.payload"])
    return [(int(frame), int(sport), int(dport), bytes.fromhex(payload))
            for frame, sport, dport, payload in rows
            if payload and "," not in sport + payload]


def protocols_in(pcap: Path) -> frozenset[str]:
    """Every protocol tshark dissects in a frame of ``pcap`` with TCP payload or UDP (the
    session's one tshark pass over the capture, shared by the corpus tests)."""
    from applayer_oracles import dissection  # it builds on this module
    return dissection(pcap).protocols


def pcaps_with(protocol: str) -> list[Path]:
    """The corpus captures (bench and suricata-verify) where tshark dissects ``protocol``."""
    from applayer_oracles import corpus_with  # it builds on this module
    return corpus_with({protocol})


# --- suricata-verify EVE expectations ------------------------------------------------

_SUFFIXES = {
    "__len": lambda got, want: hasattr(got, "__len__") and len(got) == want,
    "__contains": lambda got, want: got is not None and want in got,
    "__startswith": lambda got, want: isinstance(got, str) and got.startswith(want),
    "__endswith": lambda got, want: isinstance(got, str) and got.endswith(want),
}
_MISSING = object()


def _lookup(record, path: str):
    node = record
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def record_matches(record: dict, match: dict) -> bool:
    """suricata-verify's filter match: dotted paths, equality or a key suffix."""
    for key, want in match.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        got = _lookup(record, key[: -len(suffix)] if suffix else key)
        if got is _MISSING or not (_SUFFIXES[suffix](got, want) if suffix else got == want):
            return False
    return True


def sv_filter_checks(event_type: str, accept) -> list[tuple[Path, list[dict]]]:
    """(pcap, filter checks on ``event_type`` records) of the cases ``accept(test_yaml)`` keeps."""
    import yaml
    cases = []
    for test_yaml in sorted(SV_TESTS.glob("*/test.yaml")):
        spec = yaml.safe_load(test_yaml.read_text()) or {}
        pcaps = sorted(test_yaml.parent.glob("*.pcap"))
        if not pcaps or not accept(spec):
            continue
        checks = [c["filter"] for c in spec.get("checks") or []
                  if "filter" in c and c["filter"].get("match", {}).get("event_type") == event_type
                  and not c["filter"].get("requires")]
        if checks:
            cases.append((pcaps[0], checks))
    return cases


def write_tcp_pcap(path: Path, events: list[tuple[int, bytes]], dport: int,
                   segment: int = 1400) -> Path:
    """A capture of one TCP connection (handshake, then ``events`` in order) for tshark."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    ends = {TO_SERVER: ("10.0.0.1", "10.0.0.2", 40000, dport), TO_CLIENT: ("10.0.0.2", "10.0.0.1", dport, 40000)}
    seq = {TO_SERVER: 1000, TO_CLIENT: 5000}

    def packet(direction: int, flags: str, payload: bytes = b""):
        src, dst, sport, port = ends[direction]
        ack = seq[1 - direction] if "A" in flags else 0
        return Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=port, flags=flags,
                                                    seq=seq[direction], ack=ack) / payload

    packets = [packet(TO_SERVER, "S")]
    seq[TO_SERVER] += 1
    packets.append(packet(TO_CLIENT, "SA"))
    seq[TO_CLIENT] += 1
    packets.append(packet(TO_SERVER, "A"))
    for direction, data in events:
        for start in range(0, len(data), segment):
            chunk = data[start:start + segment]
            packets.append(packet(direction, "PA", chunk))
            seq[direction] += len(chunk)
    wrpcap(str(path), packets)
    return path
