"""Output sinks against Suricata's exact formats, driven by hand-made events."""

from __future__ import annotations

import ipaddress
import json
import socket
from types import SimpleNamespace

import pytest
from flow_records import make_flow
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.core.decode.packet import ACK, FIN, PSH, SYN, Packet
from mirrorwatch.core.events import Alert, FlowEnded, ForgedSegment, Kill, Stats
from mirrorwatch.core.flows.flow import Flow
from mirrorwatch.rules.model import AddrSet, PortSet, Rule
from mirrorwatch.sinks.console import ConsoleAlerts
from mirrorwatch.sinks.eve import EveWriter, OutputError
from mirrorwatch.sinks.fastlog import FastLogWriter, format_alert
from mirrorwatch.sinks.fmt import (
    addr,
    fast_time,
    iso_time,
    log_addr,
    metadata_dict,
    proto_name,
)
from mirrorwatch.sinks.summary import Summary

TS = 1704110400.123456  # 2024-01-01T12:00:00.123456Z


def ip4(text):
    return socket.inet_pton(socket.AF_INET, text)


def ip6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def FakeFlow(**kw) -> Flow:  # noqa: N802 - reads as the record it makes
    """A closed TCP session with the fields the sinks read, ``kw`` on top."""
    fields = {
        "flow_id": 123456789, "client": ip4("10.0.0.1"), "server": ip4("10.0.0.2"), "cport": 1234, "sport": 80,
        "start": TS - 2.5, "last_ts": TS + 10.0, "pkts": [5, 4], "bytes": [600, 3000], "state": "closed",
        "tcp_state": "closed", "tcp_flags_ts": SYN | FIN | PSH | ACK, "tcp_flags_tc": SYN | ACK, "alerted": True,
    }
    return make_flow(**{**fields, **kw})


def make_rule(**kw):
    r = Rule(action="alert", proto="tcp", src=AddrSet(any=True), sport=PortSet(any=True), direction="->",
             dst=AddrSet(any=True), dport=PortSet(any=True), sid=2000001, rev=3, msg="ET TEST uid=0 root",
             classtype="bad-unknown", category="Potentially Bad Traffic", priority=2)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def make_pkt(src="10.0.0.2", dst="10.0.0.1", sport=80, dport=1234, proto=6, v6=False):
    p = Packet(TS, pcap_cnt=7)
    conv = ip6 if v6 else ip4
    p.ipv = 6 if v6 else 4
    p.src, p.dst, p.sport, p.dport, p.proto = conv(src), conv(dst), sport, dport, proto
    return p


def eve_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_time_formats_match_suricata():
    assert iso_time(TS) == "2024-01-01T12:00:00.123456+0000"
    assert fast_time(TS) == "01/01/2024-12:00:00.123456"
    # microsecond rounding never prints 1000000
    assert iso_time(1704110400.9999999) == "2024-01-01T12:00:01.000000+0000"


def test_proto_names():
    assert [proto_name(p) for p in (6, 17, 1, 58)] == ["TCP", "UDP", "ICMP", "IPv6-ICMP"]
    assert proto_name(250) == "PROTO:250"
    assert proto_name(7) == "PROTO:007"


def test_metadata_is_dict_of_lists():
    md = metadata_dict(["created_at 2010_07_30", "updated_at 2019_07_26", "tag one", "tag two"])
    assert md == {"created_at": ["2010_07_30"], "updated_at": ["2019_07_26"], "tag": ["one", "two"]}


def test_fastlog_line_exact(tmp_path):
    flow = FakeFlow()
    a = Alert(make_pkt(), flow, False, make_rule(gid=1, sid=2000001, rev=3, priority=1, msg="MSG", category="CAT"))
    assert format_alert(a) == (
        "01/01/2024-12:00:00.123456  [**] [1:2000001:3] MSG [**] [Classification: CAT] "
        "[Priority: 1] {TCP} 10.0.0.2:80 -> 10.0.0.1:1234\n"
    )
    out = tmp_path / "fast.log"
    w = FastLogWriter(str(out))
    w.handle(a)
    w.handle(FlowEnded(TS, flow, "timeout"))  # ignored
    w.close()
    assert out.read_text() == format_alert(a)


def test_fastlog_null_classification_icmp_ipv6_and_blocked():
    p = make_pkt("2001:db8::1", "2001:db8::2", proto=58, v6=True)
    p.icmp_type, p.icmp_code = 128, 0
    a = Alert(p, None, None, make_rule(category="", priority=3, msg="PING6"))
    line = format_alert(a)
    # IPv6 in full, as Suricata's PrintInet writes it in fast.log
    assert ("[Classification: (null)] [Priority: 3] {IPv6-ICMP} 2001:0db8:0000:0000:0000:0000:0000:0001:128 -> "
            "2001:0db8:0000:0000:0000:0000:0000:0002:0\n") in line
    a.action = "blocked"
    assert format_alert(a).startswith("01/01/2024-12:00:00.123456  [wDrop] [**] [1:2000001:3] PING6 [**]")


def test_eve_alert_fields(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out), payload=True)
    flow = FakeFlow(vlan_id=(100,))
    pkt = make_pkt()
    pkt.vlan_id = (100,)
    rule = make_rule(metadata=["created_at 2010_07_30", "signature_severity Major"])
    a = Alert(pkt, flow, False, rule, stream=1, payload=b"uid=0(root)\r\n")
    w.handle(a)
    w.close()
    (ev,) = eve_lines(out)
    assert ev["timestamp"] == "2024-01-01T12:00:00.123456+0000"
    assert ev["event_type"] == "alert"
    assert ev["flow_id"] == 123456789 and ev["pcap_cnt"] == 7
    assert (ev["src_ip"], ev["src_port"], ev["dest_ip"], ev["dest_port"]) == ("10.0.0.2", 80, "10.0.0.1", 1234)
    assert ev["proto"] == "TCP" and ev["vlan"] == [100]
    assert ev["direction"] == "to_client" and ev["pkt_src"] == "wire/pcap"
    assert ev["alert"] == {
        "action": "allowed", "gid": 1, "signature_id": 2000001, "rev": 3, "signature": "ET TEST uid=0 root",
        "category": "Potentially Bad Traffic", "severity": 2,
        "metadata": {"created_at": ["2010_07_30"], "signature_severity": ["Major"]},
    }
    assert ev["flow"] == {
        "pkts_toserver": 5, "pkts_toclient": 4, "bytes_toserver": 600, "bytes_toclient": 3000,
        "start": "2024-01-01T11:59:57.623456+0000",
        "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "src_port": 1234, "dest_port": 80,
    }
    assert ev["stream"] == 1
    assert ev["payload_printable"] == "uid=0(root).."
    assert ev["verdict"] == {"action": "alert"}  # Suricata 9 logs every alert's verdict (IDS: alert)


def test_eve_icmp_alert_has_type_code_not_ports(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out))
    p = make_pkt("10.0.0.1", "10.0.0.2", proto=1)
    p.icmp_type, p.icmp_code = 8, 0
    w.handle(Alert(p, None, None, make_rule()))
    w.close()
    (ev,) = eve_lines(out)
    assert ev["proto"] == "ICMP" and ev["icmp_type"] == 8 and ev["icmp_code"] == 0
    assert "src_port" not in ev and "flow_id" not in ev and "direction" not in ev and "payload" not in ev


def test_eve_flow_event(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out))
    w.handle(FlowEnded(TS + 20, FakeFlow(), "timeout"))
    w.handle(FlowEnded(TS + 20, FakeFlow(proto=17, tcp_state=None, state="established", alerted=False), "shutdown"))
    w.close()
    tcp, udp = eve_lines(out)
    assert tcp["event_type"] == "flow" and tcp["flow_id"] == 123456789
    assert (tcp["src_ip"], tcp["src_port"], tcp["dest_ip"], tcp["dest_port"]) == ("10.0.0.1", 1234, "10.0.0.2", 80)
    # age as Suricata: whole seconds of end (12:00:10) minus whole seconds of start (11:59:57)
    assert tcp["flow"] == {
        "pkts_toserver": 5, "pkts_toclient": 4, "bytes_toserver": 600, "bytes_toclient": 3000,
        "start": "2024-01-01T11:59:57.623456+0000", "end": "2024-01-01T12:00:10.123456+0000",
        "age": 13, "state": "closed", "reason": "timeout", "alerted": True,
    }
    assert tcp["tcp"] == {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "12",
                          "syn": True, "fin": True, "psh": True, "ack": True, "state": "closed",
                          "ts_max_regions": 1, "tc_max_regions": 1}
    assert udp["proto"] == "UDP" and "tcp" not in udp and udp["flow"]["reason"] == "shutdown"
    assert udp["flow"]["alerted"] is False


def test_eve_stats_kill_and_type_filter(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out), types=("stats", "kill"))
    w.handle(Alert(make_pkt(), FakeFlow(), True, make_rule()))  # filtered out
    segs = [ForgedSegment(to_server, 4, bytes([10, 0, 0, 1 + to_server]), bytes([10, 0, 0, 2 - to_server]),
                          1234, 80, 1000, 2000, 0x14, 64, 7) for to_server in (True, False)]
    w.handle(Kill(TS, FakeFlow(), frames=segs, trigger="2000001", pcap_cnt=9))
    w.handle(Stats(TS, {"capture": {"packets": 10, "bytes": 1000}, "decoder": {"decoder.pkts": 10, "truncated": 1,
                                                                             "defrag.fragments": 2}}))
    w.close()
    kill, stats = eve_lines(out)
    assert kill["event_type"] == "kill"
    segments = kill["kill"].pop("segments")
    assert kill["kill"] == {"trigger": "2000001", "frames": 2, "dry_run": False}
    assert [(g["direction"], g["src_ip"], g["dest_ip"], g["tcp_flags"], g["seq"]) for g in segments] == [
        ("to_server", "10.0.0.2", "10.0.0.1", "RA", 1000), ("to_client", "10.0.0.1", "10.0.0.2", "RA", 1000)]
    assert stats["event_type"] == "stats"
    assert stats["stats"]["capture"] == {"packets": 10, "bytes": 1000}
    assert stats["stats"]["decoder"] == {"pkts": 10, "truncated": 1, "defrag": {"fragments": 2}}
    assert "uptime" in stats["stats"]


def test_nest_counters_keeps_clashing_names_flat():
    from mirrorwatch.sinks.eve import nest_counters

    assert nest_counters("flow", {"flow.tcp": 3, "tcp": 1, "tcp.reuse": 2, "reassembly": {"gaps": 0}}) == {
        "tcp": 1, "tcp.reuse": 2, "reassembly": {"gaps": 0}}


def test_eve_reopen_after_rotation(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out))
    w.handle(FlowEnded(TS, FakeFlow(), "timeout"))
    w.flush()
    out.rename(tmp_path / "eve.json.1")
    w.reopen()
    w.handle(FlowEnded(TS, FakeFlow(), "timeout"))
    w.close()
    assert len(out.read_text().splitlines()) == 1
    assert len((tmp_path / "eve.json.1").read_text().splitlines()) == 1


def test_unwritable_output_is_one_line_error(tmp_path):
    with pytest.raises(OutputError, match="cannot open output file"):
        EveWriter(str(tmp_path / "no" / "such" / "dir" / "eve.json"))


def test_console_alerts_plain_and_coloured():
    import io

    buf = io.StringIO()
    c = ConsoleAlerts(buf)
    a = Alert(make_pkt(), FakeFlow(), False, make_rule(priority=1))
    c.handle(a)
    c.handle(FlowEnded(TS, FakeFlow(), "timeout"))
    assert buf.getvalue() == format_alert(a)
    buf = io.StringIO()
    ConsoleAlerts(buf, colour=True).handle(a)
    assert buf.getvalue().startswith("\x1b[1;31m") and buf.getvalue().endswith("\x1b[0m\n")


def test_summary_counts_and_top_sessions():
    from rich.console import Console

    s = Summary(top=2)
    rule_a, rule_b = make_rule(sid=1, msg="A"), make_rule(sid=2, msg="B")
    flows = [FakeFlow(flow_id=i, bytes=[i * 100, 0]) for i in range(1, 6)]
    for _ in range(3):
        s.handle(Alert(make_pkt(), flows[0], True, rule_a))
    s.handle(Alert(make_pkt(), flows[1], True, rule_b))
    for f in flows:
        s.handle(FlowEnded(TS, f, "shutdown"))
    s.handle(Stats(TS, {"capture": {"packets": 50, "bytes": 5000}}))
    s.decode_reasons = {"truncated_ipv4": 2, "ipv4_len_invalid": 1, "truncated_vlan": 0}
    assert s.alerts == 4 and s.sessions == 5
    assert s.alerts_by_sig[(1, 1, 3)] == ["A", 3] and s.alerts_by_sig[(1, 2, 3)] == ["B", 1]
    top = s.top_sessions()
    assert [r["flow_id"] for r in top] == [1, 2]  # most alerts first, bounded to 2
    assert top[0]["client"] == "10.0.0.1:1234" and top[0]["alerts"] == 3
    assert s.decode_errors() == {"truncated_ipv4": 2, "ipv4_len_invalid": 1}
    con = Console(record=True, width=140)
    s.render(con, elapsed=0.5)
    text = con.export_text()
    assert "50 packets" in text and "4 alerts" in text and "100 packets/s" in text
    assert "1:1:3" in text and "10.0.0.1:1234 → 10.0.0.2:80" in text and "truncated_ipv4" in text


def test_eve_flow_reports_missed_bytes_per_direction(tmp_path):
    class S:
        def __init__(self, missed):
            self.missed_bytes = missed

    out = tmp_path / "eve.json"
    w = EveWriter(str(out))
    w.handle(FlowEnded(TS, FakeFlow(streams=[S(1200), S(0)]), "timeout"))
    w.close()
    (ev,) = eve_lines(out)
    assert ev["tcp"]["missed_bytes_ts"] == 1200 and "missed_bytes_tc" not in ev["tcp"]


def test_eve_writes_ipv6_in_full_unless_ipv6_compress():
    """Suricata's PrintInet writes every IPv6 group in four digits; Suricata 9's
    outputs.eve-log.ipv6-compress writes the short form. IPv4 is dotted either way."""
    p6 = make_pkt("2001:db8::1", "fe80::20c:29ff:faf2:ab42", v6=True)
    flow = FakeFlow(client=ip6("2001:db8::1"), server=ip6("fe80::20c:29ff:faf2:ab42"), ipv=6)
    full = ("2001:0db8:0000:0000:0000:0000:0000:0001", "fe80:0000:0000:0000:020c:29ff:faf2:ab42")
    short = ("2001:db8::1", "fe80::20c:29ff:faf2:ab42")
    for compress, (src, dst) in ((False, full), (True, short)):
        out = SimpleNamespace(lines=[])
        out.write = out.lines.append
        w = EveWriter(types=("alert", "flow"), output=out, ipv6_compress=compress)
        w.handle(Alert(p6, flow, True, make_rule()))
        w.handle(FlowEnded(TS, flow, "timeout"))
        alert, rec = (json.loads(line) for line in out.lines)
        assert (alert["src_ip"], alert["dest_ip"]) == (src, dst)
        assert (alert["flow"]["src_ip"], alert["flow"]["dest_ip"]) == (src, dst)
        assert (rec["src_ip"], rec["dest_ip"]) == (src, dst)
    v4 = make_pkt("10.0.0.1", "10.0.0.2")
    assert format_alert(Alert(v4, None, None, make_rule())).rstrip().endswith("10.0.0.1:80 -> 10.0.0.2:1234")


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
def test_addresses_are_written_as_the_socket_library_and_suricata_write_them(v4, v6):
    assert addr(v4) == log_addr(v4) == socket.inet_ntop(socket.AF_INET, v4)  # dotted quad made here
    assert addr(bytearray(v4)) == addr(memoryview(v4)) == addr(v4)
    assert addr(v6) == log_addr(v6, ipv6_compress=True) == socket.inet_ntop(socket.AF_INET6, v6)
    assert log_addr(v6) == ipaddress.IPv6Address(v6).exploded  # Suricata's PrintInet: every group in full
    assert addr(b"") == log_addr(b"") == ""
