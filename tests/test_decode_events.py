"""Suricata's decoder events: raised on malformed frames with Suricata's conditions, matched by
``decode-event`` rules (Suricata's decoder-events.rules), counted in the stats and written as EVE
``anomaly`` records of type decode when that is switched on."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.all import (
    GRE,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    IPv6,
    PPPoE,
    Raw,
    raw,
)
from scapy.contrib.mpls import MPLS
from scapy.layers.inet6 import IPv6ExtHdrHopByHop
from scapy.utils import PcapWriter

from mirrorwatch.cli import main
from mirrorwatch.core.decode.decode_events import PACKET_EVENT_MAX, RAISED
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.detect import Detector
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules.kw_events import DECODER_EVENTS
from mirrorwatch.rules.loader import RuleSet, load_text
from mirrorwatch.rules.parser import RuleContext

ETHERNET, NULL, RAW, CHDLC, SLL = 1, 0, 101, 104, 113
A4, B4 = "192.0.2.1", "192.0.2.2"
A6, B6 = "2001:db8::1", "2001:db8::2"


def eth(**kw):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def tcp4() -> bytes:
    return raw(eth() / IP(src=A4, dst=B4) / TCP(sport=1234, dport=80, flags="S"))


def udp4() -> bytes:
    return raw(eth() / IP(src=A4, dst=B4) / UDP(sport=53, dport=53) / Raw(b"abcd"))


def with_ip4(l4: bytes, proto: int) -> bytes:
    """An Ethernet frame whose (valid) IPv4 header carries ``l4`` as protocol ``proto``."""
    return raw(eth() / IP(src=A4, dst=B4, proto=proto) / Raw(l4))


def patched(frame: bytes, at: int, value: bytes) -> bytes:
    return frame[:at] + value + frame[at + len(value):]


IP4 = 14  # the IPv4 header's offset in an Ethernet frame
NESTED_IP = raw(eth() / IP(src=A4, dst=B4) / IP(src=A4, dst=B4) / TCP())
for _ in range(30):
    NESTED_IP = NESTED_IP[:IP4] + raw(IP(src=A4, dst=B4, proto=4) / Raw(NESTED_IP[IP4:]))

# (Suricata's event, its sid in decoder-events.rules, a frame that raises it, its link type, a
# frame just as close that must not)
CASES = [
    ("ethernet.pkt_too_small", 2200042, tcp4()[:13], ETHERNET, tcp4()),
    ("sll.pkt_too_small", 2200041, b"\x00" * 15, SLL, struct.pack("!HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800)
     + raw(IP(src=A4, dst=B4) / TCP())),
    ("ltnull.pkt_too_small", 2200103, b"\x02\x00\x00", NULL, b"\x02\x00\x00\x00" + raw(IP(src=A4, dst=B4) / TCP())),
    ("chdlc.pkt_too_small", 2200115, b"\x0f\x00\x08", CHDLC, b"\x0f\x00\x08\x00" + raw(IP(src=A4, dst=B4) / TCP())),
    ("vlan.header_too_small", 2200066, raw(eth(type=0x8100)) + b"\x00\x05\x08", ETHERNET,
     raw(eth() / Dot1Q(vlan=5) / IP(src=A4, dst=B4) / TCP())),
    ("mpls.header_too_small", 2200111, raw(eth(type=0x8847)) + b"\x00\x06\x41", ETHERNET,
     raw(eth() / MPLS(label=100, s=1) / IP(src=A4, dst=B4) / TCP())),
    ("mpls.pkt_too_small", 2200114, raw(eth() / MPLS(label=100, s=1) / Raw(b"\x45\x00")), ETHERNET,
     raw(eth() / MPLS(label=100, s=1) / IP(src=A4, dst=B4) / TCP())),
    ("mpls.unknown_payload_type", 2200101, raw(eth() / MPLS(label=100, s=1) / Raw(b"\x50" * 24)), ETHERNET,
     raw(eth() / MPLS(label=100, s=1) / IPv6(src=A6, dst=B6) / TCP())),
    ("pppoe.pkt_too_small", 2200049, raw(eth(type=0x8864)) + b"\x11\x00\x00\x05\x00", ETHERNET,
     raw(eth() / PPPoE(sessionid=5) / b"\x00\x21" / IP(src=A4, dst=B4) / TCP())),
    ("ppp.pkt_too_small", 2200043, raw(eth(type=0x8864)) + b"\x11\x00\x00\x05\x00\x02\xff\x03", ETHERNET,
     raw(eth() / PPPoE(sessionid=5) / b"\xff\x03\x00\x21" / IP(src=A4, dst=B4) / TCP())),
    ("ipraw.invalid_ip_version", 2200068, b"\x55" + bytes(19), RAW, raw(IP(src=A4, dst=B4) / TCP())),
    ("ipv4.pkt_too_small", 2200000, tcp4()[:IP4 + 19], ETHERNET, tcp4()),
    ("ipv4.wrong_ip_version", 2200011, patched(tcp4(), IP4, b"\x55"), ETHERNET, tcp4()),
    ("ipv4.hlen_too_small", 2200001, patched(tcp4(), IP4, b"\x44"), ETHERNET, tcp4()),
    ("ipv4.iplen_smaller_than_hlen", 2200002, patched(tcp4(), IP4 + 2, b"\x00\x13"), ETHERNET,
     patched(tcp4(), IP4 + 2, b"\x00\x28")),
    ("ipv4.trunc_pkt", 2200003, tcp4()[:-1], ETHERNET, tcp4() + b"\x00" * 6),  # Ethernet padding is fine
    ("ipv6.pkt_too_small", 2200012, raw(eth() / IPv6(src=A6, dst=B6) / TCP())[:14 + 39], ETHERNET,
     raw(eth() / IPv6(src=A6, dst=B6) / TCP())),
    ("ipv6.wrong_ip_version", 2200022, raw(eth(type=0x86DD) / IP(src=A4, dst=B4) / TCP() / Raw(b"x" * 20)), ETHERNET,
     raw(eth() / IPv6(src=A6, dst=B6) / TCP())),
    ("ipv6.trunc_pkt", 2200013, raw(eth() / IPv6(src=A6, dst=B6) / TCP())[:-1], ETHERNET,
     raw(eth() / IPv6(src=A6, dst=B6) / TCP())),
    ("ipv6.trunc_exthdr", 2200014, raw(eth() / IPv6(src=A6, dst=B6, nh=0, plen=6) / Raw(b"\x06\x00" + bytes(4))),
     ETHERNET, raw(eth() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / TCP())),
    ("tcp.pkt_too_small", 2200033, with_ip4(raw(TCP())[:19], 6), ETHERNET, with_ip4(raw(TCP()), 6)),
    ("tcp.hlen_too_small", 2200034, with_ip4(patched(raw(TCP()), 12, b"\x60"), 6), ETHERNET,
     with_ip4(patched(raw(TCP()), 12, b"\x60") + bytes(4), 6)),
    ("tcp.invalid_optlen", 2200035, with_ip4(patched(raw(TCP()), 12, b"\x40"), 6), ETHERNET,
     with_ip4(patched(raw(TCP()), 12, b"\x50"), 6)),
    ("udp.hlen_too_small", 2200039, with_ip4(raw(UDP())[:7], 17), ETHERNET, udp4()),
    ("udp.pkt_too_small", 2200038, with_ip4(patched(raw(UDP(sport=1, dport=2)), 4, b"\x00\x09"), 17), ETHERNET,
     with_ip4(patched(raw(UDP(sport=1, dport=2)), 4, b"\x00\x08"), 17)),
    ("udp.len_invalid", 2200120, with_ip4(patched(raw(UDP(sport=1, dport=2) / b"abcd"), 4, b"\x00\x07"), 17),
     ETHERNET, udp4()),
    ("icmpv4.pkt_too_small", 2200023, with_ip4(raw(ICMP())[:7], 1), ETHERNET,
     raw(eth() / IP(src=A4, dst=B4) / ICMP())),
    ("icmpv6.pkt_too_small", 2200028, raw(eth() / IPv6(src=A6, dst=B6, nh=58) / Raw(b"\x80\x00\x00\x00")), ETHERNET,
     raw(eth() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest())),
    ("gre.pkt_too_small", 2200052, with_ip4(b"\x00\x00\x08", 47), ETHERNET,
     raw(eth() / IP(src=A4, dst=B4) / GRE() / IP(src=A4, dst=B4) / TCP())),
    ("gre.wrong_version", 2200053, with_ip4(b"\x00\x02\x08\x00" + raw(IP(src=A4, dst=B4) / TCP()), 47), ETHERNET,
     raw(eth() / IP(src=A4, dst=B4) / GRE() / IP(src=A4, dst=B4) / TCP())),
    ("gre.version0_hdr_too_big", 2200056, with_ip4(b"\x20\x00\x08\x00\x00\x00", 47), ETHERNET,
     with_ip4(b"\x20\x00\x08\x00\x00\x00\x00\x00" + raw(IP(src=A4, dst=B4) / TCP()), 47)),
    ("too_many_layers", 2200116, NESTED_IP, ETHERNET, raw(eth() / IP(src=A4, dst=B4) / IP(src=A4, dst=B4) / TCP())),
]
EVENTS = {event for event, *_ in CASES}


def decode(frame: bytes, linktype: int):
    d = Decoder(Settings(), checksum_mode="none")
    return d, d.decode(1.0, linktype, frame, 1)


@pytest.mark.parametrize(("event", "sid", "bad", "linktype", "good"), CASES, ids=[c[0] for c in CASES])
def test_each_event_is_raised_on_its_malformed_frame_only(event, sid, bad, linktype, good):
    d, p = decode(bad, linktype)
    assert p is not None and p.events == ("decoder." + event,)
    counters = d.counters()
    assert counters["decoder.event." + event] == 1
    assert counters["decoder.errors"] + counters["decoder.invalid"] == 1 and p.invalid  # no flow for it
    d, p = decode(good, linktype)
    assert p is not None and p.events == () and not p.invalid
    assert not any(k.startswith("decoder.event.") for k in d.counters())


def test_every_raised_event_is_suricatas_and_tested():
    assert {e.removeprefix("decoder.") for e in RAISED} <= DECODER_EVENTS
    assert {"decoder." + e for e in EVENTS} <= RAISED
    # the NSH events (raised with the header's notes) are the ones this file does not build frames for
    assert {e for e in RAISED if e.removeprefix("decoder.") not in EVENTS} == {
        "decoder.nsh.header_too_small", "decoder.nsh.unsupported_version", "decoder.nsh.bad_header_length",
        "decoder.nsh.reserved_type", "decoder.nsh.unsupported_type", "decoder.nsh.unknown_payload",
        "decoder.erspan.header_too_small", "decoder.gre.version1_hdr_too_big"}


def test_a_failed_ip_header_leaves_a_packet_without_ip_and_the_link_layer_kept():
    _, p = decode(tcp4()[:IP4 + 10], ETHERNET)
    assert p.ipv == 0 and p.src == b"" and p.proto == 0 and p.src_mac == bytes.fromhex("020000000001")
    _, p = decode(with_ip4(raw(TCP())[:10], 6), ETHERNET)  # a bad TCP header: the IP layer stays
    assert p.ipv == 4 and p.proto == 6 and p.sport == 0 and p.events == ("decoder.tcp.pkt_too_small",)


def test_events_per_packet_are_capped_as_suricatas():
    d = Decoder(Settings())
    p = Packet()
    for _ in range(PACKET_EVENT_MAX + 3):
        d.event(p, "decoder.ipv4.trunc_pkt")
    assert len(p.events) == PACKET_EVENT_MAX
    assert d.counters()["decoder.event.ipv4.trunc_pkt"] == PACKET_EVENT_MAX  # the kept ones, as Suricata


# -- rules ------------------------------------------------------------------------------------------
def rule(event: str, sid: int) -> str:
    return (f'alert pkthdr any any -> any any (msg:"SURICATA {event}"; decode-event:{event}; '
            f"classtype:protocol-command-decode; sid:{sid}; rev:2;)")


def ruleset(text: str) -> RuleSet:
    rs = RuleSet()
    load_text(text, "decoder-events.rules", RuleContext(Settings(), {}), rs)
    return rs


def test_unknown_event_is_a_rule_error_and_an_unraised_one_is_skipped_with_its_reason():
    rs = ruleset(rule("ipv4.no_such_thing", 1) + "\n" + rule("ipv4.opt_invalid", 2200004) + "\n"
                 + rule("IPv4.Trunc_Pkt", 2200003) + "\n")
    assert len(rs.rules) == 2
    assert [(sid, why) for _, _, sid, why in rs.skipped] == [(1, "unknown decode event 'ipv4.no_such_thing'")]
    det = Detector(rs, Settings())
    assert [(r.sid, why) for r, why in det.skipped] == [
        (2200004, "decode-event 'ipv4.opt_invalid' is not raised by mirrorwatch's decoder")]
    assert set(det.event_rules) == {"decoder.ipv4.trunc_pkt"}  # case-insensitive, as Suricata's


def test_decode_event_rules_are_never_candidates_on_a_clean_packet():
    det = Detector(ruleset("\n".join(rule(e, s) for e, s, *_ in CASES)), Settings())
    _, clean = decode(tcp4(), ETHERNET)
    assert det.inspect(clean, None, None) == [] and det.counters()["candidates"] == 0
    _, bad = decode(tcp4()[:-1], ETHERNET)
    assert [a.rule.sid for a in det.inspect(bad, None, None)] == [2200003] and det.counters()["candidates"] == 1


def write_pcap(path: Path, frames) -> None:
    w = PcapWriter(str(path), linktype=ETHERNET)
    for f in frames:
        w.write(f)
    w.close()


ETH_CASES = [c for c in CASES if c[3] == ETHERNET]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """Every Ethernet case's bad then good frame, replayed with its decoder-events.rules rule."""
    d = tmp_path_factory.mktemp("events")
    write_pcap(d / "bad.pcap", [f for _, _, bad, _, good in ETH_CASES for f in (bad, good)])
    (d / "decoder-events.rules").write_text("\n".join(rule(e, s) for e, s, *_ in CASES) + "\n")
    return d


def replay(d: Path, name: str, *args) -> list[dict]:
    eve = d / f"{name}.json"
    r = CliRunner().invoke(main, ["replay", "-r", str(d / "decoder-events.rules"), "--eve", str(eve),
                                  "--fast", str(d / f"{name}.log"), *args, str(d / "bad.pcap")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in eve.read_text().splitlines()]


def test_decoder_events_rules_fire_on_their_packets_through_the_cli(replayed):
    records = replay(replayed, "off")
    alerts = {(e["pcap_cnt"], e["alert"]["signature_id"]) for e in records if e["event_type"] == "alert"}
    assert alerts == {(2 * i + 1, sid) for i, (_, sid, *_) in enumerate(ETH_CASES)}  # the bad frames only
    assert not [e for e in records if e["event_type"] == "anomaly"]  # off by default, as Suricata
    no_ip = next(e for e in records if e["event_type"] == "alert" and e["pcap_cnt"] == 1)
    assert "src_ip" not in no_ip and "proto" not in no_ip  # ethernet.pkt_too_small: no IP layer
    stats = next(e for e in records if e["event_type"] == "stats")["stats"]["decoder"]["event"]
    assert stats["ipv4"]["trunc_pkt"] == 1 and stats["ethernet"]["pkt_too_small"] == 1
    fast = (replayed / "off.log").read_text().splitlines()
    assert fast[0].endswith("[Priority: 3] [**] [Raw pkt: 02 00 00 00 00 02 02 00 00 00 00 01 08 ] "
                            "[pcap file packet: 1]")


def test_anomaly_records_with_the_setting_on(replayed):
    records = replay(replayed, "on", "--set", "eve-log.anomaly.types.decode=yes")
    anomalies = [e for e in records if e["event_type"] == "anomaly"]
    assert [(e["pcap_cnt"], e["anomaly"]) for e in anomalies] == [
        (2 * i + 1, {"type": "decode", "event": "decoder." + event}) for i, (event, *_) in enumerate(ETH_CASES)]
    trunc = next(e for e in anomalies if e["anomaly"]["event"] == "decoder.tcp.hlen_too_small")
    assert (trunc["src_ip"], trunc["dest_ip"], trunc["proto"], trunc["pkt_src"]) == (A4, B4, "TCP", "wire/pcap")
    assert "flow_id" not in trunc  # no flow for an invalid packet


def test_anomaly_decode_is_read_from_a_suricata_configuration(replayed, tmp_path):
    cfg = tmp_path / "suricata.yaml"
    eve = tmp_path / "eve.json"
    cfg.write_text("%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n      filename: " + str(eve)
                   + "\n      types:\n        - alert\n        - anomaly:\n            enabled: yes\n"
                   "            types:\n              decode: yes\n              stream: no\n")
    r = CliRunner().invoke(main, ["replay", "-c", str(cfg), "-r", str(replayed / "decoder-events.rules"),
                                  str(replayed / "bad.pcap")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    types = [json.loads(line)["event_type"] for line in eve.read_text().splitlines()]
    assert types.count("anomaly") == len(ETH_CASES) == types.count("alert")
