"""EVE's standard fields as Suricata writes them (output-json.c CreateEveHeader, output-json-flow.c).

Transaction records (http, tls, dns, ssh) are logged on a packet: they carry that packet's
``pcap_cnt`` and time, ``ip_v`` after ``proto`` and ``pkt_src``; the ones logged when their flow
ends ride on Suricata's flow-timeout pseudo packet (no ``pcap_cnt``, ``pkt_src`` "stream (flow
timeout)").  Flow records carry ``ip_v`` before ``proto``, and ``tcp.ts_gap``/``tc_gap`` for a side
that had a gap.  Checked on real captures of the corpus, against tshark where it can tell.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import CORPUS

SV = CORPUS / "suricata-verify" / "tests"
HTTP_ASYNC = SV / "http-async" / "input.pcap"  # two HTTP transactions, both complete on the wire
FLOW_END_HTTP = SV / "detect-pcre__detect-pcre-02"  # its transaction is logged when the flow ends
GAP = SV / "eve-payload-05-tcp-data-gap" / "tcp-simple-gap2.pcap"
IPV6_TCP = SV / "defrag__bug-6887-defrag-ppp-ipv6-tcp" / "frag-ppp-ipv6-tcp.pcap"
# Suricata's CreateEveHeader order for a transaction record, up to the protocol object
APP_HEADER = ["timestamp", "flow_id", "pcap_cnt", "event_type", "src_ip", "src_port", "dest_ip", "dest_port",
              "proto", "ip_v", "pkt_src"]
FLOW_HEADER = ["timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "ip_v", "proto"]


def replay(tmp_path, pcap, *args) -> list[dict]:
    if not pcap.is_file():
        pytest.skip(f"corpus capture {pcap} not present")
    eve = tmp_path / "eve.json"
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "-k", "none", "--eve", str(eve),
                        *args, str(pcap)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in eve.read_text().splitlines()]


def frame_times(pcap) -> dict[int, str]:
    """tshark's epoch time of every frame, by frame number (pcap_cnt counts the same way)."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.number", "-e",
                          "frame.time_epoch"], capture_output=True, text=True, check=True).stdout
    return {int(n): t for n, t in (line.split("\t") for line in out.splitlines() if line)}


def epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_http_records_carry_the_packet_that_completed_them(tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("needs tshark")
    recs = [r for r in replay(tmp_path, HTTP_ASYNC) if r["event_type"] == "http"]
    assert [r["tx_id"] for r in recs] == [0, 1]
    times = frame_times(HTTP_ASYNC)
    out = subprocess.run(["tshark", "-r", str(HTTP_ASYNC), "-Y", "http.response", "-T", "fields", "-e",
                          "frame.number"], capture_output=True, text=True, check=True).stdout
    responses = sorted(int(n) for n in out.split())
    assert len(responses) == len(recs)
    for r, response in zip(recs, responses):
        assert list(r)[:len(APP_HEADER)] == APP_HEADER
        assert r["ip_v"] == 4 and r["pkt_src"] == "wire/pcap"
        # logged on a packet at or after the one that ends its response, at that packet's time
        assert response <= r["pcap_cnt"] <= len(times)
        assert epoch(r["timestamp"]) == pytest.approx(float(times[r["pcap_cnt"]]), abs=1e-6)


def test_records_logged_at_flow_end_ride_on_the_pseudo_packet(tmp_path):
    recs = replay(tmp_path, FLOW_END_HTTP / "input.pcap", "-r", str(FLOW_END_HTTP / "test.rules"))
    http = [r for r in recs if r["event_type"] == "http"]
    assert http, "the capture has an HTTP transaction"
    for r in http:
        assert "pcap_cnt" not in r
        assert r["pkt_src"] == "stream (flow timeout)" and r["ip_v"] == 4
        assert list(r)[:len(APP_HEADER) - 1] == [k for k in APP_HEADER if k != "pcap_cnt"]


def test_flow_records_carry_ip_v_before_proto(tmp_path):
    flows = [r for r in replay(tmp_path, HTTP_ASYNC) if r["event_type"] == "flow"]
    assert flows and all(r["ip_v"] == 4 for r in flows)
    assert list(flows[0])[:len(FLOW_HEADER)] == FLOW_HEADER


def test_ipv6_flows_and_alerts_say_ip_v_6(tmp_path):
    rules = tmp_path / "any.rules"
    rules.write_text('alert tcp any any -> any any (msg:"any tcp"; sid:1;)\n')
    recs = replay(tmp_path, IPV6_TCP, "-r", str(rules))
    flows = [r for r in recs if r["event_type"] == "flow"]
    alerts = [r for r in recs if r["event_type"] == "alert"]
    assert flows and alerts
    assert {r["ip_v"] for r in flows + alerts} == {6}
    assert all(":" in r["src_ip"] for r in flows)


def test_a_side_with_a_gap_is_flagged_as_suricata_does(tmp_path):
    flows = [r for r in replay(tmp_path, GAP) if r["event_type"] == "flow" and r["proto"] == "TCP"]
    gapped = [r["tcp"] for r in flows if "missed_bytes_ts" in r["tcp"] or "missed_bytes_tc" in r["tcp"]]
    assert gapped, "the capture has a gap"
    for tcp in gapped:
        assert tcp.get("ts_gap", False) == ("missed_bytes_ts" in tcp)
        assert tcp.get("tc_gap", False) == ("missed_bytes_tc" in tcp)
    clean = [r["tcp"] for r in flows if r["tcp"] not in gapped]
    assert all("ts_gap" not in t and "tc_gap" not in t for t in clean)


@pytest.mark.parametrize(("linktype", "frame", "dlt", "name"), [
    (1, "ether", 1, "EN10MB"),
    (101, "raw", 12, "RAW"),  # a capture's LINKTYPE_RAW is libpcap's DLT_RAW once read, as in Suricata
    (113, "sll", 113, "LINUX_SLL"),
])
def test_packet_info_names_the_link_type_as_suricata_8(tmp_path, linktype, frame, dlt, name):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import CookedLinux, Ether
    from scapy.utils import wrpcap

    ip = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=6000) / b"linktype-probe"
    wrap = {"ether": lambda p: Ether() / p, "raw": lambda p: p, "sll": lambda p: CookedLinux(proto=0x0800) / p}
    pcap = tmp_path / "in.pcap"
    wrpcap(str(pcap), [wrap[frame](ip)], linktype=linktype)
    rules = tmp_path / "r.rules"
    rules.write_text('alert udp any any -> any 6000 (msg:"probe"; content:"linktype-probe"; sid:1;)\n')
    alerts = [r for r in replay(tmp_path, pcap, "--eve-payload", "--rules", str(rules)) if r["event_type"] == "alert"]
    assert [a["packet_info"] for a in alerts] == [{"linktype": dlt, "linktype_name": name}]
