"""The tag keyword as Suricata's detect-engine-tag.c, and its EVE "packet" records.

On a real capture the packets a tag marks are counted with tshark (the frames of the tagged TCP
stream, or to or from the tagged host, after the one that alerted); the counting rules (first
packet skipped, packets/bytes/seconds, restart on a new match, limits) on the tracker itself.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import CORPUS

from mirrorwatch.core.detect.tag import TAG_MATCH_LIMIT, TAG_MAX_TAGS, TagTracker
from mirrorwatch.rules.model import TagSpec

SSH = CORPUS / "suricata-verify" / "tests" / "eve-tag-02" / "input.pcap"  # one SSH session among other traffic


def tshark(pcap, display_filter: str, field: str) -> list[str]:
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", field],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def packet_records(tmp_path, rule: str) -> tuple[list[dict], list[dict]]:
    if not SSH.is_file():
        pytest.skip("corpus capture not present")
    rules = tmp_path / "tag.rules"
    rules.write_text(rule + "\n")
    eve = tmp_path / "eve.json"
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "-k", "none", "-r", str(rules),
                        "--eve", str(eve), str(SSH)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in eve.read_text().splitlines()]
    return ([r for r in recs if r["event_type"] == "alert"], [r for r in recs if r["event_type"] == "packet"])


@pytest.fixture(scope="module")
def syn():
    """The SYN that alerts: its frame number, TCP stream, source and destination."""
    if not SSH.is_file():
        pytest.skip("corpus capture not present")
    frame = int(tshark(SSH, "tcp.flags == 0x002", "frame.number")[0])
    stream = tshark(SSH, f"frame.number == {frame}", "tcp.stream")[0]
    src, dst = (tshark(SSH, f"frame.number == {frame}", f)[0] for f in ("ip.src", "ip.dst"))
    return SimpleNamespace(frame=frame, stream=stream, src=src, dst=dst)


def test_session_tag_marks_the_rest_of_the_session(tmp_path, syn):
    alerts, packets = packet_records(tmp_path, "alert tcp any any -> any any (flags:S; tag:session; sid:1;)")
    assert [a["pcap_cnt"] for a in alerts] == [syn.frame]
    want = [int(n) for n in tshark(SSH, f"tcp.stream == {syn.stream} && frame.number > {syn.frame}", "frame.number")]
    assert [p["pcap_cnt"] for p in packets] == want
    p = packets[0]
    assert list(p)[:4] == ["timestamp", "flow_id", "pcap_cnt", "event_type"]
    assert p["flow_id"] == alerts[0]["flow_id"] and p["pkt_src"] == "wire/pcap" and p["packet_info"]["linktype"] == 1
    assert len(base64.b64decode(p["packet"])) == int(tshark(SSH, f"frame.number == {want[0]}", "frame.len")[0])


def test_host_tag_marks_every_packet_of_that_host(tmp_path, syn):
    _, packets = packet_records(tmp_path, "alert tcp any any -> any any (flags:S; tag:host,100,packets,dst; sid:1;)")
    host = f"(ip.src == {syn.dst} || ip.dst == {syn.dst})"
    want = [int(n) for n in tshark(SSH, f"{host} && frame.number > {syn.frame}", "frame.number")][:100 - 1]
    assert [p["pcap_cnt"] for p in packets] == want


def test_a_two_packet_host_tag_marks_one_packet(tmp_path, syn):
    _, packets = packet_records(tmp_path, "alert tcp any any -> any any (flags:S; tag:host,2,packets,src; sid:1;)")
    host = f"(ip.src == {syn.src} || ip.dst == {syn.src})"
    assert [p["pcap_cnt"] for p in packets] == [int(tshark(SSH, f"{host} && frame.number > {syn.frame}",
                                                             "frame.number")[0])]


# --- the tracker ---------------------------------------------------------------------

def pkt(ts: float, size: int = 100, src: bytes = b"\x0a\0\0\x01", dst: bytes = b"\x0a\0\0\x02"):
    return SimpleNamespace(ts=ts, frame=b"x" * size, src=src, dst=dst)


def alert(sid: int, *specs: TagSpec):
    return SimpleNamespace(rule=SimpleNamespace(gid=1, sid=sid, tags=list(specs)))


def run(tracker: TagTracker, flow, packets, alerts_at: dict) -> list[bool]:
    out = []
    for i, p in enumerate(packets):
        if i in alerts_at:
            tracker.start(alerts_at[i], p, flow)
        out.append(tracker.packet(p, flow) if tracker.flows or tracker.hosts else False)  # as the engine asks
    return out


@pytest.mark.parametrize("metric, count, sizes, want", [
    ("packets", 3, [10] * 6, [False, True, True, False, False, False]),
    ("bytes", 250, [100] * 5, [False, True, False, False, False]),      # 100 + 100 <= 250 < 300
])
def test_packets_and_bytes_count_the_packet_that_alerted(metric, count, sizes, want):
    flow = object()
    packets = [pkt(float(i), s) for i, s in enumerate(sizes)]
    assert run(TagTracker(16), flow, packets, {0: [alert(1, TagSpec("session", count, metric, "dst"))]}) == want


def test_seconds_compare_whole_seconds():
    flow = object()
    packets = [pkt(t) for t in (10.9, 11.0, 12.95, 13.0)]  # 13 - 10 > 2 expires
    assert run(TagTracker(16), flow, packets, {0: [alert(1, TagSpec("session", 2, "seconds", "dst"))]}) == \
        [False, True, True, False]


def test_a_new_match_restarts_the_tag_up_to_the_limit():
    flow = object()
    spec = TagSpec("session", 2, "packets", "dst")
    tracker = TagTracker(16)
    # a restart resets the counts but not the skipped first packet: the re-matching packet is tagged
    assert run(tracker, flow, [pkt(t) for t in range(5)], {0: [alert(1, spec)], 2: [alert(1, spec)]}) == \
        [False, True, True, True, False]
    assert not tracker.flows and not tracker.hosts
    tracker.start([alert(2, spec)], pkt(0), flow)
    entry = tracker.flows[flow][0]
    for _ in range(TAG_MATCH_LIMIT + 2):
        tracker.start([alert(2, spec)], pkt(50.0), flow)
    assert entry.first_ts == 50.0 and entry.matches == TAG_MATCH_LIMIT + 2
    tracker.packet(pkt(60.0), flow)
    tracker.start([alert(2, spec)], pkt(70.0), flow)  # past the limit: no restart
    assert entry.first_ts == 50.0 and entry.packets == 1


def test_limits_per_flow_and_on_hosts():
    flow = object()
    tracker = TagTracker(2)
    tracker.start([alert(sid, TagSpec("session", 5, "packets", "dst")) for sid in range(TAG_MAX_TAGS + 3)],
                  pkt(0), flow)
    assert len(tracker.flows[flow]) == TAG_MAX_TAGS and tracker.c["tags_refused_full"] == 3
    tracker.flow_end(flow)
    assert not tracker.flows
    for last in (1, 2, 3):
        tracker.start([alert(1, TagSpec("host", 5, "packets", "dst"))], pkt(0, dst=bytes([10, 0, 0, last])), None)
    assert set(tracker.hosts) == {bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])}
    assert tracker.c["hosts_dropped"] == 1


def test_idle_host_tags_are_dropped():
    tracker = TagTracker(16)
    host = b"\x0a\0\0\x09"
    tracker.start([alert(1, TagSpec("host", 100, "packets", "dst"))], pkt(0, dst=host), None)
    assert tracker.packet(pkt(0, dst=host), None) is False  # the alerting packet
    assert tracker.packet(pkt(10, dst=host), None) is True
    assert tracker.packet(pkt(700, dst=host), None) is False and not tracker.hosts
