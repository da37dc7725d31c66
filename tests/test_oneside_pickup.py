"""Captures of one side of a TCP session: Suricata's SYN-ACK pickup and SYN_RECV decisions.

Suricata picks a session up at a SYN-ACK whose SYN was not seen with ``stream.midstream`` or
``stream.async-oneside``; a server packet then makes it established (stream-tcp.c,
StreamTcpPacketStateSynRecv, IDS mode) when, with async-oneside, it is at the server's next
sequence number, or when it acknowledges more than the SYN-ACK did and its SEQ is after the
client's next sequence number ("ACK for missing data").  Only then is the server's stream
reassembled and its HTTP response parsed into a transaction of its own.  A full handshake
whose final ACK the capture lacks becomes established at the server's next packet.
A FIN picks a session up (stream.midstream) only when it carries data.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert, AppTx
from mirrorwatch.core.settings import Settings
from tests.test_detect import CLI, ETH, SRV, rules_of
from tests.test_flows import Wire

CPORT, SPORT = 40100, 80
BODY = b"Hello World"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
RULES = 'alert http any any -> any any (msg:"world"; file_data; content:"World"; sid:1;)'
MIDSTREAM = {"stream.midstream": True}
ASYNC = {"stream.async-oneside": True}


def seg(to_server: bool, flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
    src, dst, sp, dp = (CLI, SRV, CPORT, SPORT) if to_server else (SRV, CLI, SPORT, CPORT)
    tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, window=8192)
    return bytes(ETH() / IP(src=src, dst=dst) / tcp / Raw(data))


def server_side(isn_s: int, isn_c: int, client_sent: int = 40) -> list[bytes]:
    """SYN-ACK, the ACK of a request the capture lacks, the response, the server's FIN."""
    acked = isn_c + 1 + client_sent
    return [seg(False, "SA", isn_s, isn_c + 1),
            seg(False, "A", isn_s + 1, acked),
            seg(False, "PA", isn_s + 1, acked, RESPONSE),
            seg(False, "FA", isn_s + 1 + len(RESPONSE), acked)]


def replay(frames: list[bytes], **settings) -> tuple[Engine, list]:
    s = Settings(settings)
    eng = Engine(s, rules_of(RULES, s), checksum_mode="none")
    events = []
    for i, frame in enumerate(frames):
        events += eng.process(1000.0 + i / 1000, 1, frame)
    events += eng.finish()
    return eng, events


def http_txs(events) -> list:
    return [e.tx for e in events if isinstance(e, AppTx) and e.proto == "http"]


def sids(events) -> list[int]:
    return [e.rule.sid for e in events if isinstance(e, Alert)]


# server SEQ after the client's next SEQ (as Suricata compares them), and before it
SEQ_AFTER = (3_000_000_000, 2_000_000_000)
SEQ_BEFORE = (1_000_000_000, 2_000_000_000)


@pytest.mark.parametrize("settings", [MIDSTREAM, ASYNC, {**MIDSTREAM, **ASYNC}], ids=["midstream", "async", "both"])
def test_server_side_capture_gets_its_response_transaction(settings):
    eng, events = replay(server_side(*SEQ_AFTER), **settings)
    (tx,) = http_txs(events)
    assert tx.request_line is None and tx.status_code == 200
    assert sids(events) == [1]
    (flow,) = {e.flow for e in events if isinstance(e, AppTx)}
    assert flow.tcp_state == "fin_wait1" and flow.state == "established" and flow.pkts == [0, 4]
    assert flow.app.proto == "http"
    assert eng.flows.counters()["midstream_pickups"] == 1


def test_without_either_setting_the_syn_ack_picks_nothing_up():
    eng, events = replay(server_side(*SEQ_AFTER))
    assert http_txs(events) == [] and sids(events) == []
    assert eng.flows.counters()["midstream_pickups"] == 0


def test_midstream_alone_needs_an_ack_for_missing_data_after_the_client_seq():
    """Suricata compares the server's SEQ with the client's next SEQ: when it is not after it,
    the packet is refused (3whs_wrong_seq_wrong_ack) and the session stays in syn_recv;
    async-oneside takes it at the server's next sequence number whatever the client's."""
    _, events = replay(server_side(*SEQ_BEFORE), **MIDSTREAM)
    assert http_txs(events) == [] and sids(events) == []
    _, events = replay(server_side(*SEQ_BEFORE), **ASYNC)
    assert len(http_txs(events)) == 1 and sids(events) == [1]


def test_server_ack_acknowledging_nothing_new_needs_async():
    """The ACK acknowledges only what the SYN-ACK did: no client data was missed."""
    isn_s, isn_c = SEQ_AFTER
    frames = server_side(isn_s, isn_c, client_sent=0)
    _, events = replay(frames, **MIDSTREAM)
    assert http_txs(events) == []
    _, events = replay(frames, **ASYNC)
    assert len(http_txs(events)) == 1


def test_handshake_with_a_lost_final_ack_is_established_by_the_server():
    """SYN and SYN-ACK seen, the client's ACK and request lost: the server's packet that fits
    right after the handshake (SEQ = its ISN + 1, ACK = the SYN-ACK's) establishes it."""
    isn_c, isn_s = 7000, 90000
    frames = [seg(True, "S", isn_c, 0), seg(False, "SA", isn_s, isn_c + 1),
              seg(False, "PA", isn_s + 1, isn_c + 1, RESPONSE)]
    _, events = replay(frames)
    (tx,) = http_txs(events)
    assert tx.status_code == 200 and sids(events) == [1]
    frames[2] = seg(False, "PA", isn_s + 5, isn_c + 1, RESPONSE)  # not where the server's stream goes on
    _, events = replay(frames)
    assert http_txs(events) == []


def test_midstream_fin_pickup_needs_data():
    """Suricata's state-none FIN: picked up (stream.midstream) only when it carries data."""
    bare = Wire(**MIDSTREAM)
    f, _ = bare.send(False, "FA", 5000, 1000)
    assert f.tcp_state == "none" and bare.ft.counters()["midstream_pickups"] == 0
    with_data = Wire(**MIDSTREAM)
    f, _ = with_data.send(False, "FPA", 5000, 1000, b"bye")
    assert f.tcp_state == "fin_wait1" and with_data.ft.counters()["midstream_pickups"] == 1
    assert bytes(f.streams[1].buf) == b"bye"
    off = Wire()
    f, _ = off.send(False, "FPA", 5000, 1000, b"bye")
    assert f.tcp_state == "none"
