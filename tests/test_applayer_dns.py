"""DNS over UDP and TCP: wire format, one transaction per message, EVE v3 and v2, and tshark on real captures.

Messages for the unit tests are built with scapy's DNS encoder (an independent
implementation). The corpus tests compare every DNS message of the captures
that hold DNS with tshark's dissection (PDML), naming each disagreement.
"""

from __future__ import annotations

import struct
import time
from functools import cache

import pytest
from applayer_corpus import (
    TO_CLIENT,
    TO_SERVER,
    pcaps_with,
    require_tshark,
    tcp_streams,
)
from applayer_oracles import dns_disagreement, dns_disagreement_reason, dns_oracle
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRSOA

from mirrorwatch.core.applayer.dns import DnsTcpState, DnsUdpState
from mirrorwatch.core.applayer.dns_wire import (
    MAX_NAME_LEN,
    NAME_INFINITE_LOOP,
    NAME_LABEL_LIMIT,
    NAME_TRUNCATED,
    parse_message,
    parse_name,
)
from mirrorwatch.sinks.eve_dns import alert_object, event_objects, rrtype_name


def query(dns_id=7, name="www.example.com", qtype="A", **kw) -> bytes:
    return bytes(DNS(id=dns_id, rd=1, qd=[DNSQR(qname=name, qtype=qtype)], **kw))


def response(dns_id=7, name="www.example.com", answers=(), authorities=(), rcode=0) -> bytes:
    return bytes(DNS(id=dns_id, qr=1, rd=1, ra=1, rcode=rcode, qd=[DNSQR(qname=name)],
                     an=list(answers), ns=list(authorities)))


def tcp_framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


# --- transactions: one per message (Suricata 8 and later) ----------------------------

def test_each_message_is_a_transaction_complete_at_once():
    state = DnsUdpState()
    first = state.parse(TO_SERVER, query(dns_id=1))
    second = state.parse(TO_SERVER, query(dns_id=2, name="b.example"))
    assert (first.tx_id, second.tx_id) == (0, 1)
    assert (first.progress_ts, first.progress_tc) == (4, 4)
    answer = DNSRR(rrname="www.example.com", type="A", ttl=30, rdata="192.0.2.1")
    reply = state.parse(TO_CLIENT, response(dns_id=1, answers=[answer]))
    assert reply.tx_id == 2 and reply.request is None and reply.queries == ()
    assert [(q.rrname, q.rrtype) for q in first.queries] == [(b"www.example.com", 1)]
    assert first.answers == () and first.rcode is None and not first.qr
    assert [(a.rrname, a.rrtype, a.ttl, a.rdata) for a in reply.answers] == [
        (b"www.example.com", 1, 30, "192.0.2.1")]
    assert (reply.dns_id, reply.qr, reply.rcode, reply.opcode) == (1, True, 0, 0)
    assert state.pop_done() == []  # not handed out yet: detection inspects them first
    assert [t.tx_id for t in state.updated()] == [0, 1, 2]
    assert state.pop_done() == [first, second, reply]
    assert state.txs == [] and state.memuse == 0


def test_unmatched_response_is_its_own_transaction():
    state = DnsUdpState()
    tx = state.parse(TO_CLIENT, response(dns_id=9, rcode=3))
    assert tx.request is None and tx.queries == () and tx.rcode == 3
    assert (tx.progress_ts, tx.progress_tc) == (4, 4)


def test_response_in_the_query_direction_is_refused():
    state = DnsUdpState()
    assert state.parse(TO_SERVER, response()) is None
    assert state.stats.not_request == 1 and not state.txs


@pytest.mark.parametrize("payload", [b"", b"\x00" * 11, query()[:-1], query() + b"\x00" * 2000])
def test_malformed_datagrams_are_counted(payload):
    state = DnsUdpState()
    result = state.parse(TO_SERVER, payload)
    if result is None:
        assert state.stats.parse_errors == 1
    else:  # trailing bytes after a complete message are ignored, as Suricata does
        assert payload.startswith(query())


# --- names -----------------------------------------------------------------------

def test_self_pointer_rejects_the_message():
    msg = bytearray(query())
    msg[12:12 + 2] = b"\xc0\x0c"
    assert parse_message(bytes(msg[:14]) + b"\x00\x01\x00\x01") is None


def test_pointer_loop_after_a_pointer_is_cut():
    # question name -> pointer to 28; at 28: label "a", then at 30 a pointer to 30.
    header = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0)
    body = b"\xc0\x1c" + b"\x00\x01\x00\x01" + b"\x00" * 10 + b"\x01a\xc0\x1e"
    msg = parse_message(header + body)
    assert msg is not None
    assert msg.name_flags & NAME_INFINITE_LOOP
    assert msg.queries[0].rrname == b"a"


def test_mutual_pointer_loop_stops_at_the_label_limit():
    # question name -> 18: "a" -> pointer to 22: "b" -> pointer to 18 ...
    header = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0)
    body = b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x01a\xc0\x16" + b"\x01b\xc0\x12"
    name, end = parse_name(header + body, 12, len(header + body))
    assert name.flags & NAME_LABEL_LIMIT and name.flags & NAME_TRUNCATED
    assert end == 14 and len(name.value) <= MAX_NAME_LEN


def test_pointer_chains_cannot_make_a_message_expensive():
    """Question i is a label then a pointer to question i-1: 7000 questions would walk
    1.8 million labels (each name stops at 255); the message's step budget refuses it."""
    count = 7000
    body = bytearray(b"\x01a\x00\x00\x01\x00\x01")
    for i in range(1, count):
        previous = 12 + 7 + 8 * (i - 2) if i > 1 else 12
        body += b"\x01a" + struct.pack("!H", 0xC000 | previous) + b"\x00\x01\x00\x01"
    header = struct.pack("!6H", 1, 0x0100, count, 0, 0, 0)
    started = time.perf_counter()
    assert parse_message(header + bytes(body)) is None
    assert time.perf_counter() - started < 0.2
    short = struct.pack("!6H", 1, 0x0100, 20, 0, 0, 0) + bytes(body[:7 + 8 * 19])
    assert parse_message(short).queries[-1].rrname == b".".join([b"a"] * 20)


def test_long_name_is_truncated_and_flagged():
    labels = b"".join(b"\x3f" + b"x" * 63 for _ in range(20))
    header = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0)
    msg = parse_message(header + labels + b"\x00\x00\x01\x00\x01")
    assert msg is not None and msg.queries[0].truncated
    assert len(msg.queries[0].rrname) == MAX_NAME_LEN
    tx = DnsUdpState().parse(TO_SERVER, header + labels + b"\x00\x00\x01\x00\x01")
    assert event_objects(tx, 2)[0]["rrname_truncated"] is True
    assert event_objects(tx, 3)[0]["queries"][0]["rrname_truncated"] is True


# --- EVE ----------------------------------------------------------------------

def _answered():
    """A query and its response with CNAME, A, TXT, AAAA answers and an SOA authority."""
    state = DnsUdpState()
    request = state.parse(TO_SERVER, query(dns_id=7))
    answers = [DNSRR(rrname="www.example.com", type="CNAME", ttl=60, rdata="example.com"),
               DNSRR(rrname="example.com", type="A", ttl=30, rdata="1.2.3.4"),
               DNSRR(rrname="example.com", type="TXT", ttl=5, rdata=[b"a", b"bc"]),
               DNSRR(rrname="example.com", type="AAAA", ttl=5, rdata="2001:db8::1")]
    soa = DNSRRSOA(rrname="example.com", ttl=9, mname="ns.example.com", rname="h.example.com",
                   serial=1, refresh=2, retry=3, expire=4, minimum=5)
    return request, state.parse(TO_CLIENT, response(dns_id=7, answers=answers, authorities=[soa]))


AAAA = "2001:0db8:0000:0000:0000:0000:0000:0001"
DETAILED = [
    {"rrname": "www.example.com", "rrtype": "CNAME", "ttl": 60, "rdata": "example.com"},
    {"rrname": "example.com", "rrtype": "A", "ttl": 30, "rdata": "1.2.3.4"},
    {"rrname": "example.com", "rrtype": "TXT", "ttl": 5, "rdata": "a"},
    {"rrname": "example.com", "rrtype": "TXT", "ttl": 5, "rdata": "bc"},
    {"rrname": "example.com", "rrtype": "AAAA", "ttl": 5, "rdata": AAAA}]
GROUPED = {"CNAME": ["example.com"], "A": ["1.2.3.4"], "TXT": ["a", "bc"], "AAAA": [AAAA]}
AUTHORITIES = [{"rrname": "example.com", "rrtype": "SOA", "ttl": 9, "soa": {
    "mname": "ns.example.com", "rname": "h.example.com", "serial": 1, "refresh": 2,
    "retry": 3, "expire": 4, "minimum": 5}}]


def test_eve_v3_request_and_response():
    request, reply = _answered()
    assert event_objects(request, 3) == [{
        "version": 3, "type": "request", "tx_id": 0, "id": 7, "flags": "100", "rd": True,
        "opcode": 0, "rcode": "NOERROR", "queries": [{"rrname": "www.example.com", "rrtype": "A"}]}]
    assert event_objects(reply, 3) == [{
        "version": 3, "type": "response", "tx_id": 1, "id": 7, "flags": "8180", "qr": True,
        "rd": True, "ra": True, "opcode": 0, "rcode": "NOERROR",
        "queries": [{"rrname": "www.example.com", "rrtype": "A"}],
        "answers": DETAILED, "grouped": GROUPED, "authorities": AUTHORITIES}]
    # an alert carries the same object with detailed answers only (AlertJsonDns)
    assert alert_object(reply) == {k: v for k, v in event_objects(reply, 3)[0].items() if k != "grouped"}


def test_eve_v2_query_and_answer():
    request, reply = _answered()
    assert event_objects(request, 2) == [{
        "version": 2, "type": "query", "id": 7, "rrname": "www.example.com", "rrtype": "A",
        "tx_id": 0, "opcode": 0}]
    assert event_objects(reply, 2) == [{
        "version": 2, "type": "answer", "id": 7, "flags": "8180", "qr": True, "rd": True,
        "ra": True, "opcode": 0, "rrname": "www.example.com", "rrtype": "A", "rcode": "NOERROR",
        "answers": DETAILED, "grouped": GROUPED, "authorities": AUTHORITIES}]


def test_eve_v2_one_query_record_per_question():
    tx = DnsUdpState().parse(TO_SERVER, bytes(DNS(id=4, qd=[DNSQR(qname="a.example"),
                                                            DNSQR(qname="b.example", qtype="AAAA")])))
    assert [(r["rrname"], r["rrtype"], r["tx_id"]) for r in event_objects(tx, 2)] == [
        ("a.example", "A", 0), ("b.example", "AAAA", 0)]
    assert len(event_objects(tx, 3)) == 1 and len(event_objects(tx, 3)[0]["queries"]) == 2


def test_eve_names_of_types_and_rcodes():
    assert [rrtype_name(t) for t in (1, 28, 5, 12, 15, 2, 16, 6, 33, 65, 3, 23, 60, 4242)] == [
        "A", "AAAA", "CNAME", "PTR", "MX", "NS", "TXT", "SOA", "SRV", "HTTPS", "ND", "NSAPPT",
        "CDSNKEY", "4242"]
    state = DnsUdpState()
    [record] = event_objects(state.parse(TO_CLIENT, response(dns_id=3, rcode=3)), 3)
    assert record["rcode"] == "NXDOMAIN" and "answers" not in record and "grouped" not in record


def test_response_without_question_is_not_logged():
    state = DnsUdpState()
    tx = state.parse(TO_CLIENT, bytes(DNS(id=5, qr=1, qd=[], an=[
        DNSRR(rrname="a.example", type="A", rdata="192.0.2.9")])))
    assert tx.answers and event_objects(tx, 3) == [] and event_objects(tx, 2) == []
    assert alert_object(tx)["answers"][0]["rdata"] == "192.0.2.9"  # an alert shows it all


# --- TCP framing ---------------------------------------------------------------

def test_tcp_messages_in_one_segment_and_across_segments():
    stream = tcp_framed(query(dns_id=1), query(dns_id=2, name="b.example"))
    state = DnsTcpState()
    state.feed(TO_SERVER, stream[:3])
    assert not state.txs
    state.feed(TO_SERVER, stream[3:])
    state.feed(TO_CLIENT, tcp_framed(response(dns_id=2, name="b.example"), response(dns_id=1)))
    assert [(tx.tx_id, tx.dns_id, tx.response is not None) for tx in state.txs] == [
        (0, 1, False), (1, 2, False), (2, 2, True), (3, 1, True)]


def test_tcp_zero_length_and_oversized_messages():
    state = DnsTcpState(max_message_len=100)
    big = query(name="x" * 60 + ".example." + "y" * 60)
    state.feed(TO_SERVER, b"\x00\x00" + tcp_framed(big)[:50])
    state.feed(TO_SERVER, tcp_framed(big)[50:] + tcp_framed(query(dns_id=4)))
    assert [tx.dns_id for tx in state.txs] == [4]
    assert state.stats.memcap_hits == 1 and state.stats.skipped_bytes == len(big)


def test_tcp_gap_resynchronises_on_a_message_start():
    state = DnsTcpState()
    state.feed(TO_SERVER, tcp_framed(query(dns_id=1))[:10])
    state.gap(TO_SERVER, 30)
    state.feed(TO_SERVER, b"garbage!" * 3)
    state.feed(TO_SERVER, tcp_framed(query(dns_id=2)))
    assert [tx.dns_id for tx in state.txs] == [2] and state.stats.gaps == 1


def test_tcp_close_counts_a_cut_message():
    state = DnsTcpState()
    state.feed(TO_SERVER, tcp_framed(query(dns_id=1)) + b"\x00\x30\x01")
    state.close(TO_SERVER)
    state.close(TO_CLIENT)
    assert state.stats.parse_errors == 1 and [tx.dns_id for tx in state.txs] == [1]


# --- properties --------------------------------------------------------------------

def _summary(state) -> list:
    return [(tx.tx_id, tx.dns_id, [(q.rrname, q.rrtype) for q in tx.queries],
             [tuple(a[:4]) for a in tx.answers], tx.progress_ts, tx.progress_tc) for tx in state.txs]


names = st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,3}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), names), min_size=1, max_size=6), st.data())
def test_tcp_segmentation_does_not_change_transactions(pairs, data):
    to_server = tcp_framed(*(query(dns_id=i, name=n) for i, n in pairs))
    to_client = tcp_framed(*(response(dns_id=i, name=n, answers=[
        DNSRR(rrname=n, type="A", rdata="192.0.2.1")]) for i, n in pairs))
    whole = DnsTcpState()
    whole.feed(TO_SERVER, to_server)
    whole.feed(TO_CLIENT, to_client)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(to_server)), max_size=8)))
    pieces = DnsTcpState()
    for start, end in zip([0, *cuts], [*cuts, len(to_server)]):
        pieces.feed(TO_SERVER, to_server[start:end])
    step = data.draw(st.integers(1, 40))
    for i in range(0, len(to_client), step):
        pieces.feed(TO_CLIENT, to_client[i:i + step])
    assert _summary(pieces) == _summary(whole)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=10))
def test_random_bytes_never_raise(blob, sizes):
    parse_message(blob)
    udp = DnsUdpState()
    for direction in (TO_SERVER, TO_CLIENT):
        tx = udp.parse(direction, blob)
        if tx is not None:
            _render(tx)
    tcp = DnsTcpState()
    pos = 0
    for size in sizes + [len(blob)]:
        tcp.feed(TO_SERVER, blob[pos:pos + size])
        pos += size
    tcp.gap(TO_CLIENT, 5)
    tcp.feed(TO_CLIENT, blob)
    tcp.close(TO_SERVER)
    tcp.close(TO_CLIENT)
    for tx in tcp.txs:
        _render(tx)


def _render(tx) -> None:
    for version in (2, 3):
        for record in event_objects(tx, version):
            assert record["version"] == version
    assert alert_object(tx)["tx_id"] == tx.tx_id


# --- real captures against tshark ----------------------------------------------------

@cache
def dns_pcaps():
    require_tshark()
    return tuple(pcaps_with("dns"))


@pytest.mark.slow
def test_udp_messages_match_tshark():
    from applayer_corpus import udp_payloads
    checked = 0
    reasons: dict[str, int] = {}
    for pcap in dns_pcaps():
        oracle = dns_oracle(pcap)
        for frame, _sport, _dport, payload in udp_payloads(pcap, "dns && udp.port == 53"):
            if frame not in oracle:
                continue
            msg = parse_message(payload)
            problem = "parse" if msg is None else dns_disagreement(msg, oracle[frame])
            checked += 1
            if problem:
                reason = dns_disagreement_reason(payload, oracle[frame])
                reasons[reason] = reasons.get(reason, 0) + 1
                assert reason != "unexplained", (pcap.name, frame, problem)
    assert checked > 1000
    print(f"{checked} DNS messages; disagreements by reason: {reasons}")


@pytest.mark.slow
def test_tcp_queries_match_tshark():
    from applayer_corpus import tshark_fields
    compared = 0
    for pcap in dns_pcaps():
        rows = tshark_fields(pcap, "dns && tcp.port == 53 && dns.flags.response == 0",
                             ["tcp.stream", "dns.qry.name"])
        expected: dict[int, list[str]] = {}
        for stream, name in rows:
            expected.setdefault(int(stream), []).extend(name.split(","))
        streams = tcp_streams(pcap)
        for index, names_seen in expected.items():
            state = DnsTcpState()
            for kind, direction, data in streams[index].events:
                getattr(state, "feed" if kind == "data" else "gap")(direction, data)
            mine = [q.rrname.decode("latin-1") for tx in state.txs for q in tx.queries]
            assert mine == names_seen, (pcap.name, index)
            compared += 1
    assert compared, "no DNS over TCP in the corpus"


def _eve_dns_version(spec: dict) -> int:
    """The EVE dns version a suricata-verify case asks for (Suricata 8 and later: 3 unless set)."""
    return int((spec.get("env") or {}).get("SURICATA_EVE_DNS_VERSION", 3))


def _eve_records(pcap, version: int) -> list[dict]:
    """Our EVE dns records for the UDP port-53 traffic of ``pcap`` (one parser per flow)."""
    from applayer_corpus import udp_payloads
    states: dict[tuple[int, int], DnsUdpState] = {}
    records = []
    for frame, sport, dport, payload in udp_payloads(pcap, "udp.port == 53"):
        direction = TO_SERVER if dport == 53 else TO_CLIENT
        ports = (sport, dport) if direction == TO_SERVER else (dport, sport)
        tx = states.setdefault(ports, DnsUdpState()).parse(direction, payload)
        for record in event_objects(tx, version) if tx else ():
            records.append({"event_type": "dns", "pcap_cnt": frame, "proto": "UDP",
                            "src_port": ports[0], "dest_port": ports[1], "dns": record})
    return records


@pytest.mark.slow
@pytest.mark.parametrize("version", [2, 3])
def test_suricata_verify_dns_expectations(version):
    """Each dns filter check of the suricata-verify cases, in the EVE dns version each asks for."""
    from applayer_corpus import record_matches, sv_filter_checks
    cases = sv_filter_checks("dns", lambda spec: _eve_dns_version(spec) == version)
    if not cases:
        pytest.skip(f"no suricata-verify case checks EVE dns v{version} records")
    for pcap, checks in cases:
        records = _eve_records(pcap, version)
        for check in checks:
            known = {k: v for k, v in check["match"].items() if not k.startswith(("src_ip", "dest_ip"))}
            found = sum(record_matches(r, known) for r in records)
            assert found == check["count"], (pcap.parent.name, check)
