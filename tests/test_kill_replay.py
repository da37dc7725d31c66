"""Kills decided on replayed captures: the whole core (decode, flows, detect, kill) and the CLI.

The captures are written here with scapy, so every expected sequence number is
known; ``--kill-pcap`` output is read back with tshark (checksums verified).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Dot1Q, Ether, IPv6, wrpcap

from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Kill
from mirrorwatch.core.flows.caps import FLOW_BYTES_TCP
from mirrorwatch.sinks.injector import build_frame
from mirrorwatch.core.kill import KillConfig, Killer
from mirrorwatch.cli.pipeline import load_ruleset
from mirrorwatch.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MW = [sys.executable, "-m", "mirrorwatch"]
CMAC, SMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CI, SI = 1000, 900_000
REQ = b"GET /FORBIDDEN HTTP/1.0\r\n\r\n"
RULES = 'reject tcp any any -> any 8080 (msg:"forbidden"; flow:established,to_server; content:"FORBIDDEN"; sid:5000001; rev:1;)\n'


def session(ipv=4, vlan=None, t=1_700_000_000.0, reply=b"x" * 500):
    """Handshake, the forbidden request, the server's ACK and 500 bytes of reply, the client's ACK."""
    c, s = ("198.51.100.1", "198.51.100.2") if ipv == 4 else ("2001:db8::1", "2001:db8::2")

    def frame(to_server, **tcp):
        eth = Ether(src=CMAC, dst=SMAC) if to_server else Ether(src=SMAC, dst=CMAC)
        if ipv == 4:
            ip = IP(src=c, dst=s, ttl=64) if to_server else IP(src=s, dst=c, ttl=57)
        else:
            ip = IPv6(src=c, dst=s, hlim=64) if to_server else IPv6(src=s, dst=c, hlim=57)
        sp, dp = (40000, 8080) if to_server else (8080, 40000)
        payload = tcp.pop("load", b"")
        l3 = ip / TCP(sport=sp, dport=dp, **tcp) / payload
        return eth / Dot1Q(vlan=vlan) / l3 if vlan else eth / l3

    pk = [
        frame(True, flags="S", seq=CI),
        frame(False, flags="SA", seq=SI, ack=CI + 1),
        frame(True, flags="A", seq=CI + 1, ack=SI + 1),
        frame(True, flags="PA", seq=CI + 1, ack=SI + 1, load=REQ),
        frame(False, flags="A", seq=SI + 1, ack=CI + 1 + len(REQ)),
        frame(False, flags="PA", seq=SI + 1, ack=CI + 1 + len(REQ), load=reply),
        frame(True, flags="A", seq=CI + 1 + len(REQ), ack=SI + 1 + len(reply)),
    ]
    for i, p in enumerate(pk):
        p.time = t + 0.001 * i
    return pk


@pytest.fixture
def rules(tmp_path):
    p = tmp_path / "kill.rules"
    p.write_text(RULES)
    return p


def replay(tmp_path, pcap, rules, *args, name="eve"):
    eve = tmp_path / f"{name}.json"
    r = subprocess.run([*MW, "replay", "-q", "-r", str(rules), "--eve", str(eve), "--set", "stream.inline=yes",
                        *args, str(pcap)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in eve.read_text().splitlines()], r


def test_replay_kill_values_and_kill_pcap_checked_by_tshark(tmp_path, rules):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    pcap = tmp_path / "in.pcap"
    wrpcap(str(pcap), session())
    out = tmp_path / "kill.pcap"
    eve, _ = replay(tmp_path, pcap, rules, "--kill-pcap", str(out))
    req_end = CI + 1 + len(REQ)
    kills = [e for e in eve if e["event_type"] == "kill"]
    # the trigger, then the server's 500 bytes, which outran the first burst toward the client (the client's
    # ACK of them asks for the same segment again: not repeated)
    assert [k["pcap_cnt"] for k in kills] == [4, 6]
    first = {s["direction"]: s for s in kills[0]["kill"]["segments"]}
    assert (first["to_server"]["seq"], first["to_server"]["ack"]) == (req_end, SI + 1)
    assert (first["to_client"]["seq"], first["to_client"]["ack"]) == (SI + 1, req_end)
    assert (first["to_server"]["ttl"], first["to_client"]["ttl"]) == (64, 57)
    assert first["to_client"]["src_mac"] == SMAC and first["to_client"]["dest_mac"] == CMAC
    (answer,) = kills[1]["kill"]["segments"]
    assert (answer["direction"], answer["seq"], answer["ack"]) == ("to_client", SI + 501, req_end)
    assert kills[1]["kill"]["trigger"] == "peer-data"
    alert = [e for e in eve if e["event_type"] == "alert"][0]
    assert alert["alert"]["action"] == "blocked" and alert["verdict"]["reject-target"] == "both"
    flow = [e for e in eve if e["event_type"] == "flow"][0]
    assert flow["flow"]["killed"] == "sid:5000001 reject"

    r = subprocess.run(["tshark", "-r", str(out), "-n", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "json", "-e", "ip.src", "-e", "tcp.seq",
                        "-e", "tcp.ack", "-e", "tcp.flags", "-e", "tcp.checksum.status", "-e", "ip.checksum.status",
                        "-e", "frame.time_epoch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [p["_source"]["layers"] for p in json.loads(r.stdout)]
    got = [(x["ip.src"][0], int(x["tcp.seq"][0]), int(x["tcp.ack"][0]), int(x["tcp.flags"][0], 16)) for x in rows]
    assert got == [("198.51.100.1", req_end, SI + 1, 0x14), ("198.51.100.2", SI + 1, req_end, 0x14),
                   ("198.51.100.2", SI + 501, req_end, 0x14)]
    assert all(x["tcp.checksum.status"] == ["1"] and x["ip.checksum.status"] == ["1"] for x in rows)
    # stamped with the trigger packet's time
    assert float(rows[0]["frame.time_epoch"][0]) == pytest.approx(1_700_000_000.003, abs=1e-6)


def test_replay_ipv6_vlan_session(tmp_path, rules):
    pcap = tmp_path / "in6.pcap"
    wrpcap(str(pcap), session(ipv=6, vlan=42))
    eve, _ = replay(tmp_path, pcap, rules)
    k = [e for e in eve if e["event_type"] == "kill"][0]
    assert k["src_ip"] == "2001:0db8:0000:0000:0000:0000:0000:0001"  # in full, as Suricata writes IPv6
    for s in k["kill"]["segments"]:
        assert s["vlan"] == [42] and s["ip_id"] is None
    assert {s["direction"]: s["ttl"] for s in k["kill"]["segments"]} == {"to_server": 64, "to_client": 57}


def test_replay_dry_run_and_never_kill(tmp_path, rules):
    pcap = tmp_path / "in.pcap"
    wrpcap(str(pcap), session())
    out = tmp_path / "kill.pcap"
    eve, r = replay(tmp_path, pcap, rules, "--dry-run", "--kill-pcap", str(out))
    kills = [e for e in eve if e["event_type"] == "kill"]
    assert kills and all(k["kill"]["dry_run"] for k in kills)
    alert = [e for e in eve if e["event_type"] == "alert"][0]
    assert alert["alert"]["action"] == "allowed" and alert["verdict"]["reject"] == []
    assert out.stat().st_size > 24  # the frames that would have been sent
    eve, _ = replay(tmp_path, pcap, rules, "--never-kill", "198.51.100.0/24", name="never")
    assert not [e for e in eve if e["event_type"] == "kill"]
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["never_kill"] == 1


def test_own_frames_seen_again_are_not_tracked(rules):
    """The forged RSTs coming back on the mirror neither end the session in the flow table nor trigger anything."""
    settings = Settings({"stream.inline": True})
    killer = Killer(KillConfig(seed=3), settings)
    eng = Engine(settings, load_ruleset([str(rules)], settings), checksum_mode="all", killer=killer)
    kills = []
    for p in session()[:4]:
        kills += [e for e in eng.process(float(p.time), 1, bytes(p)) if isinstance(e, Kill)]
    (kill,) = kills
    flow = kill.flow
    state = flow.tcp_state
    for seg in kill.frames:
        assert eng.process(1_700_000_000.0035, 1, build_frame(seg)) == []
    assert killer.counters()["own_frames_seen"] == 2
    assert flow.tcp_state == state and flow.next_seq == [CI + 1 + len(REQ), SI + 1]


LATER = b"HTTP/1.0 200 OK\r\n\r\nSECRETDATA" + b"y" * 470
LATER_RULES = ('alert tcp any 8080 -> any any (msg:"later data, packet"; content:"SECRETDATA"; sid:5000002; rev:1;)\n'
               'alert tcp any 8080 -> any any (msg:"later data, stream"; flow:established,to_client; '
               'content:"200 OK"; content:"SECRETDATA"; distance:0; sid:5000003; rev:1;)\n')


@pytest.mark.parametrize("dry_run", [False, True])
def test_killed_session_is_no_longer_inspected_but_its_flow_is_logged(tmp_path, dry_run):
    """After the first burst, the server's reply (which two rules would alert on, packet and stream) is not
    inspected and counted ``flow_drop``; the flow record still counts every packet.  In dry-run nothing was
    reset, so the session is still inspected."""
    rules = tmp_path / "later.rules"
    rules.write_text(RULES + LATER_RULES)
    pcap = tmp_path / "later.pcap"
    pk = session(reply=LATER)
    wrpcap(str(pcap), pk)
    eve, _ = replay(tmp_path, pcap, rules, *(["--dry-run"] if dry_run else []))
    sids = sorted(e["alert"]["signature_id"] for e in eve if e["event_type"] == "alert")
    assert sids == ([5000001, 5000002, 5000003] if dry_run else [5000001])
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["sessions_killed"] == 1
    assert stats["flow_drop"] == (0 if dry_run else len(pk) - 4)  # every packet after the trigger (the 4th)
    assert [k["pcap_cnt"] for k in eve if k["event_type"] == "kill"] == [4, 6]  # the chase still sees them
    (flow,) = [e for e in eve if e["event_type"] == "flow"]
    f = flow["flow"]
    assert (f["pkts_toserver"], f["pkts_toclient"]) == (4, 3)
    assert f["bytes_toclient"] == sum(len(p) for p in pk if p[TCP].sport == 8080)
    assert f["killed"] == "sid:5000001 reject" + (" (dry-run)" if dry_run else "")
    assert flow["tcp"]["tcp_flags"] == "1a"


def test_killed_session_keeps_its_tcp_state_and_gets_no_stream(rules):
    """What the engine still does for a killed session: flow tracking (next_seq follows the server's data),
    no stream made again, the stream bytes held at the kill delivered and gone."""
    settings = Settings({"stream.inline": True})
    killer = Killer(KillConfig(seed=3), settings)
    eng = Engine(settings, load_ruleset([str(rules)], settings), checksum_mode="all", killer=killer)
    pk = session(reply=LATER)
    for p in pk[:4]:
        eng.process(float(p.time), 1, bytes(p))
    (flow,) = eng.flows.flows.values()
    assert flow.no_inspection and flow.streams == [None, None]
    for p in pk[4:]:
        eng.process(float(p.time), 1, bytes(p))
    assert flow.streams == [None, None] and flow.next_seq == [CI + 1 + len(REQ), SI + 1 + len(LATER)]
    assert flow.pkts == [4, 3] and killer.counters()["flow_drop"] == 3
    assert eng.flows.memuse == FLOW_BYTES_TCP and eng.flows.reasm.buf_bytes == 0  # the streams' memory is back
