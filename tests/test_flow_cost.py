"""Issue 13 point 3: a session without payload costs its flow record only.

Detect's per-flow state (``flow.det``) is attached when a flow first needs it
(a stream, a transaction, an established session, a rule that left flowbits,
a per-flow threshold or a pass in it), not on its first packet; the semantics
it carried stay: the ip-only rules are judged on the first packet of each
direction, ``flow:established`` holds after the session closed, flowbits set
on a bare SYN are seen by the next packets, a first packet with a bad checksum
leaves the ip-only rules to the next one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mirrorwatch.cli.pipeline import load_ruleset
from mirrorwatch.core.decode.packet import ACK, RST, SYN, Packet
from mirrorwatch.core.detect import Detector
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert
from mirrorwatch.core.flows.table import FlowTable
from mirrorwatch.core.settings import Settings
from mirrorwatch.sources.pcapfile import PcapFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcaps"))
import gen_floods  # noqa: E402

CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([192, 0, 2, 80])
IPONLY_SID = 9_915_001
IPONLY = f'alert ip any any -> any any (msg:"every direction\'s first packet"; sid:{IPONLY_SID}; rev:1;)\n'


def detector(tmp_path: Path, rules: str, settings: Settings | None = None) -> Detector:
    s = settings or Settings({})
    path = tmp_path / "cost.rules"
    path.write_text(rules)
    return Detector(load_ruleset([path], s), s)


def tcp(flags: int, seq: int, ack: int = 0, to_server: bool = True, csum_ok: bool | None = None) -> Packet:
    p = Packet(0.0, 0, 1, b"\0" * 54)
    p.ipv, p.proto = 4, 6
    p.src, p.dst, p.sport, p.dport = (CLIENT, SERVER, 40000, 80) if to_server else (SERVER, CLIENT, 80, 40000)
    p.flags, p.seq, p.ack, p.win, p.payload, p.csum_ok = flags, seq, ack, 65535, b"", csum_ok
    return p


def run(det: Detector, packets) -> tuple[object, list[int]]:
    """Packets of one session through a flow table and ``det``: (the flow, alerted sids in order)."""
    ft = FlowTable(Settings({}))
    ev: list = []
    sids = []
    flow = None
    for p in packets:
        flow, to_server = ft.process(p, ev)
        sids += [a.rule.sid for a in det.inspect(p, flow, to_server)]
    return flow, sids


def test_a_syn_flood_leaves_flow_records_only(tmp_path):
    """Through the engine: every SYN-only session has no detect, stream or application-layer
    state attached, although each was judged (ip-only rule); the bad session has them and alerts."""
    pcap = tmp_path / "syn.pcap"
    gen_floods.generate("syn", 300, pcap)
    rules = tmp_path / "flood.rules"
    rules.write_text(gen_floods.BAD_RULE + IPONLY)
    s = Settings({})
    eng = Engine(s, load_ruleset([rules], s))
    sids = []
    for ts, lt, frame, wl in PcapFiles([pcap]):
        sids += [e.rule.sid for e in eng.process(ts, lt, frame, wl) if type(e) is Alert]
    syn_only = [f for f in eng.flows.flows.values() if f.pkts == [1, 0]]
    assert len(syn_only) == 300
    assert all(f.det is None and f.app is None and f.streams == [None, None] for f in syn_only)
    bad = [f for f in eng.flows.flows.values() if f.pkts[1]]
    assert len(bad) == 1 and bad[0].det is not None and bad[0].app is not None
    assert sids.count(gen_floods.BAD_SID) == 1 and sids.count(IPONLY_SID) == 300 + 2


def test_the_ip_only_rules_see_each_directions_first_packet_once(tmp_path):
    det = detector(tmp_path, IPONLY)
    flow, sids = run(det, [tcp(SYN, 1000), tcp(SYN, 1000), tcp(SYN | ACK, 5000, 1001, to_server=False),
                           tcp(SYN | ACK, 5000, 1001, to_server=False)])
    assert sids == [IPONLY_SID, IPONLY_SID] and flow.det is None


def test_a_bad_checksum_leaves_the_first_judgement_to_the_next_packet(tmp_path):
    det = detector(tmp_path, IPONLY)
    flow, sids = run(det, [tcp(SYN, 1000, csum_ok=False), tcp(SYN, 1000), tcp(SYN, 1000)])
    assert sids == [IPONLY_SID] and flow.det is not None


def test_flowbits_set_on_a_bare_syn_attach_the_state_the_next_packet_reads(tmp_path):
    det = detector(tmp_path, 'alert tcp any any -> any any (flags:S; flowbits:set,syn_seen; flowbits:noalert; '
                             'sid:1;)\nalert tcp any any -> any any (flags:SA; flowbits:isset,syn_seen; sid:2;)\n')
    flow, sids = run(det, [tcp(SYN, 1000), tcp(SYN | ACK, 5000, 1001, to_server=False)])
    assert sids == [2] and flow.det.bits == {"syn_seen"}


def test_a_session_that_was_established_stays_so_once_reset(tmp_path):
    det = detector(tmp_path, 'alert tcp any any -> any any (flow:established; flags:R; sid:3;)\n')
    flow, sids = run(det, [tcp(SYN, 1000), tcp(SYN | ACK, 5000, 1001, to_server=False), tcp(ACK, 1001, 5001),
                           tcp(RST, 1001, 5001)])
    assert flow.state == "closed" and flow.det.est and sids == [3]
