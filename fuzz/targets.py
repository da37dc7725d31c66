"""Fuzz targets: the decoder, the stream reassembler and the rule parser, fed untrusted bytes.

Each ``TARGETS[name]`` is ``(one_input, seeds)``: ``one_input(data)`` runs the code under
test on one input and raises only on a bug (an exception the code's contract does not
allow, or a broken invariant); ``seeds()`` yields the inputs a fresh corpus starts from.
The same functions run under atheris (``fuzz/run.py``, coverage-guided) and in the
regression tests (``tests/test_fuzz.py`` replays every input in ``tests/fuzz_regressions``).

Inputs:

- ``decoder``: records of ``[link type selector][length, 2 bytes][frame]``, decoded in
  order by one ``Decoder`` (so fragments of one input can meet); the first byte also
  picks the checksum mode.  Contract: never raises, never counts an internal error,
  counters add up, the record's offsets lie inside its frame; the TCP option parser
  takes any option bytes the decoder hands on.
- ``reassembly``: operations on one ``Stream`` (add, ack, trim, flush) drawn from the
  bytes.  Contract: the observer sees every settled byte exactly once, in order, with
  each gap; the retained buffer and the global accounting stay consistent.
- ``rules``: the bytes as rule-file text (UTF-8, undecodable bytes kept as the loader
  keeps them), each rule line parsed.  Contract: a rule that cannot be loaded is a
  ``RuleError`` with its reason; nothing else escapes the parser (the loader would
  turn any other exception into a skipped rule: the fuzzer calls the parser itself).
"""

from __future__ import annotations

import struct
from pathlib import Path

from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.link import SUPPORTED_LINKTYPES
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.decode.tcp import TCP_WSCALE_MAX, tcp_option, window_scale
from mirrorwatch.core.reassembly.context import M32, ReassemblyContext
from mirrorwatch.core.reassembly.stream import Stream
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules.loader import iter_rule_lines
from mirrorwatch.rules.parser import RuleContext, RuleError, parse_rule

ROOT = Path(__file__).resolve().parent.parent
LINKTYPES = sorted(SUPPORTED_LINKTYPES)
MODES = ("all", "auto", "none")
RECORD = struct.Struct("!BH")
# small bounds, so an input reaches them (and memory stays flat under the fuzzer)
DECODER_SETTINGS = {"defrag.max-frags": 64, "defrag.memcap": 1 << 20, "decoder.max-layers": 8}
STREAM_SETTINGS = {"stream.reassembly.depth": 16384, "stream.reassembly.max-ooo-bytes": 8192,
                   "stream.reassembly.max-ooo-segments": 32, "stream.reassembly.memcap": 1 << 16,
                   "stream.reassembly.unacked-max": 4096, "stream.reassembly.unacked-max-segments": 16,
                   "stream.reassembly.gap-wait-bytes": 4096, "stream.reassembly.gap-wait-segments": 8}
POLICIES = ("first", "last", "bsd", "linux", "old-linux", "windows", "solaris", "vista")
SEGMENT_MAX = 1500


class FuzzBug(AssertionError):
    """The code under test broke its contract on this input."""


# -- decoder ---------------------------------------------------------------------------------

def decoder_records(data: bytes):
    """(link type, frame) records of a decoder input."""
    off = 1
    while len(data) - off >= RECORD.size:
        sel, n = RECORD.unpack_from(data, off)
        off += RECORD.size
        yield LINKTYPES[sel % len(LINKTYPES)], data[off:off + n]
        off += n


def decoder_one_input(data: bytes) -> None:
    if not data:
        return
    d = Decoder(Settings(DECODER_SETTINGS), MODES[data[0] % len(MODES)])
    for n, (lt, frame) in enumerate(decoder_records(data), 1):
        p = d.decode(float(n), lt, frame, n)
        if any(k.startswith("internal_error") for k in d.errs):
            # the same frame outside decode()'s guard, for the traceback
            d.linktypes[lt](d, Packet(float(n), n, lt, frame), frame, 0, len(frame), 0)
            raise FuzzBug(f"internal error on link type {lt}, frame {frame.hex()}")
        if p is not None:
            _check_packet(p)
    c = d.counters()
    if c["decoder.pkts"] != c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]:
        raise FuzzBug(f"counters do not add up: {c}")


def _check_packet(p: Packet) -> None:
    n = len(p.frame)
    if p.ipv not in (0, 4, 6) or not 0 <= p.ip_off <= n or not 0 <= p.l4_off <= n or len(p.payload) > n:
        raise FuzzBug(f"record outside its frame: ipv {p.ipv}, ip_off {p.ip_off}, l4_off {p.l4_off}, "
                      f"payload {len(p.payload)}, frame {n}")
    opts = p.tcp_opts
    if opts:  # the TCP option parser the flows and detect rooms use, on what the decoder found
        for kind in set(opts):
            v = tcp_option(opts, kind)
            if v is not None and len(v) > len(opts) - 2:
                raise FuzzBug(f"option {kind} longer than the options {opts.hex()}")
        if not 0 <= window_scale(opts) <= TCP_WSCALE_MAX:
            raise FuzzBug(f"window scale out of range in {opts.hex()}")


def _record(linktype: int, frame: bytes) -> bytes:
    return RECORD.pack(LINKTYPES.index(linktype), len(frame)) + frame


def _crafted_frames():
    """(link type, frames) with every encapsulation the decoder knows, built with scapy."""
    from scapy.all import (
        GRE, ICMP, IP, PPP, SCTP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, PPPoE, Raw, fragment, fragment6, raw,
    )
    from scapy.contrib.geneve import GENEVE
    from scapy.contrib.mpls import MPLS
    from scapy.layers.vxlan import VXLAN

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    t4 = IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1234, dport=80, flags="PA",
                                                   options=[("MSS", 1460), ("WScale", 7)]) / Raw(b"GET / HTTP/1.0")
    t6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1234, dport=80, flags="S") / Raw(b"x")
    outer = IP(src="198.51.100.1", dst="198.51.100.2")
    yield 1, [raw(eth / Dot1AD(vlan=2) / Dot1Q(vlan=3) / t4), raw(eth / MPLS(label=16, s=1) / t4),
              raw(eth / MPLS(label=2, s=1) / t6), raw(eth / PPPoE(sessionid=1) / PPP(proto=0x21) / t4)]
    yield 1, [raw(eth / outer / GRE() / t4), raw(eth / outer / GRE(proto=0x880B, key_present=1, version=1)
                                                      / PPP(proto=0x21) / t4),
              raw(eth / outer / GRE(proto=0x88BE, seqnum_present=1) / Raw(bytes(8)) / eth / t4),
              raw(eth / outer / GRE(proto=0x22EB) / Raw(bytes(12)) / eth / t4), raw(eth / outer / t4),
              raw(eth / outer / t6), raw(eth / outer / UDP(dport=4789) / VXLAN(vni=1) / eth / t4),
              raw(eth / outer / UDP(dport=6081) / GENEVE(proto=0x0800) / t4),
              raw(eth / outer / UDP(sport=3544, dport=50000) / t6)]
    yield 1, [raw(eth / f) for f in fragment(IP(src="192.0.2.1", dst="192.0.2.2") / UDP() / Raw(bytes(600)), 256)]
    yield 1, [raw(eth / f) for f in fragment6(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment()
                                              / UDP() / Raw(bytes(600)), 300)]
    yield 1, [raw(eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                  / ICMPv6EchoRequest(id=1, seq=2)), raw(eth / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP()),
              raw(eth / IP(src="192.0.2.1", dst="192.0.2.2") / SCTP(sport=1, dport=2))]
    yield 1, [raw(eth / t4)] * 40  # enough checksummed segments for -k auto to decide
    for lt, prefix in ((113, bytes.fromhex("000000010006020000000001000008 00".replace(" ", ""))),
                       (276, bytes.fromhex("08000000000000020001000602000000000100 00".replace(" ", ""))),
                       (0, (2).to_bytes(4, "little")), (101, b""), (104, bytes.fromhex("0f000800")),
                       (226, bytes([1, 2]) + bytes(22)), (9, bytes.fromhex("ff030021"))):
        yield lt, [prefix + raw(t4)]
    nflog = bytes([2, 0, 0, 1]) + struct.pack("=HH", 4 + len(raw(t4)), 9) + raw(t4)
    pktap = (16).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(8) + raw(eth / t4)
    yield 239, [nflog]
    yield 258, [pktap]


def decoder_seeds():
    """Every frame of the demo capture, and crafted frames of every encapsulation and link type."""
    from mirrorwatch.sources.pcapfile import PcapFiles

    for _ts, lt, frame, _wl in PcapFiles([ROOT / "pcaps" / "demo.pcap"]):
        yield bytes([0]) + _record(lt, frame)
    for i, (lt, frames) in enumerate(_crafted_frames()):
        yield bytes([i]) + b"".join(_record(lt, f) for f in frames)


# -- reassembly ------------------------------------------------------------------------------

class _Observer:
    """Checks that settled bytes arrive exactly once, in order, gaps included."""

    wants_data = True

    def __init__(self):
        self.next = 0
        self.ended = False

    def data(self, stream, offset: int, data: bytes) -> None:
        if offset != self.next or not data:
            raise FuzzBug(f"settled bytes at {offset} ({len(data)}), expected {self.next}: {stream!r}")
        self.next = offset + len(data)

    def gap(self, stream, offset: int, length: int) -> None:
        if offset != self.next or length <= 0:
            raise FuzzBug(f"gap at {offset} ({length}), expected {self.next}: {stream!r}")
        self.next = offset + length

    def end(self, stream) -> None:
        self.ended = True


class _Ops:
    """Integers and byte strings drawn from the front of an input."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def left(self) -> bool:
        return self.pos < len(self.data)

    def int(self, size: int) -> int:
        b = self.data[self.pos:self.pos + size]
        self.pos += size
        return int.from_bytes(b, "big")

    def bytes(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def reassembly_one_input(data: bytes) -> None:
    ops = _Ops(data)
    settings = Settings({**STREAM_SETTINGS, "stream.reassembly.policy": POLICIES[ops.int(1) % len(POLICIES)]})
    ctx = ReassemblyContext(settings)
    isn = ops.int(4)
    s = Stream(ctx, isn, settle_now=bool(ops.int(1) & 1))
    obs = _Observer()
    s.observer = obs
    while ops.left():
        op = ops.int(1) % 5
        if op <= 1:  # segments are the common case
            seq = (isn + ops.int(2) - 1024) & M32
            s.add(seq, ops.bytes(ops.int(2) % SEGMENT_MAX), fin=op == 1)
        elif op == 2:
            s.ack((isn + ops.int(3) - 1024) & M32)
        elif op == 3:
            s.trim(s.buf_base + ops.int(2) % (len(s.buf) + 1))
        else:
            s.peer_seen()
        _check_stream(s, ctx, obs)
    s.flush()
    _check_stream(s, ctx, obs)
    if not obs.ended or obs.next != s.final:
        raise FuzzBug(f"flush left bytes unsettled: observer at {obs.next}, {s!r}")


def _check_stream(s: Stream, ctx: ReassemblyContext, obs: _Observer) -> None:
    if s.end != s.buf_base + len(s.buf) or not s.buf_base <= s.final <= s.off or s.end > s.off:
        raise FuzzBug(f"inconsistent stream: {s!r}")
    if ctx.buf_bytes != len(s.buf) or ctx.ooo_bytes < 0 or obs.next != s.final:
        raise FuzzBug(f"accounting: buf_bytes {ctx.buf_bytes}, ooo_bytes {ctx.ooo_bytes}, observer {obs.next}, "
                      f"{s!r}")


def reassembly_seeds():
    seg = bytes(range(256)) * 4
    add = struct.Struct("!BHH")
    yield bytes([2, 0, 0, 4, 0, 1]) + add.pack(0, 1024, 100) + seg[:100] + add.pack(0, 1124, 50) + seg[:50]
    yield (bytes([7, 0, 0, 0, 0, 0]) + add.pack(0, 1074, 100) + seg[:100] + add.pack(0, 1024, 200) + seg[:200]
           + bytes([2]) + (1324).to_bytes(3, "big"))


# -- rules -----------------------------------------------------------------------------------

_RULE_CTX = None


def rules_one_input(data: bytes) -> None:
    global _RULE_CTX
    if _RULE_CTX is None:
        from mirrorwatch.rules.classification import load_classification

        _RULE_CTX = RuleContext(Settings(), load_classification()[0])
    for line, text in iter_rule_lines(data.decode("utf-8", "surrogateescape")):
        if text is None:
            continue
        try:
            rule, _ = parse_rule(text, _RULE_CTX, "fuzz.rules", line)
        except RuleError:
            continue
        if not isinstance(rule.sid, int) or not rule.sid > 0:
            raise FuzzBug(f"a rule loaded without a valid sid: {text!r}")


def rules_seeds():
    for path in sorted((ROOT / "signatures").glob("*.rules")):
        for line in path.read_bytes().splitlines():
            if line.strip() and not line.startswith(b"#"):
                yield line


TARGETS = {
    "decoder": (decoder_one_input, decoder_seeds),
    "reassembly": (reassembly_one_input, reassembly_seeds),
    "rules": (rules_one_input, rules_seeds),
}
