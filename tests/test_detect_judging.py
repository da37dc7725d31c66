"""Judging (``detect.judge``): the typed record the judging functions read and count in, and the
order of a packet's alerts when packet and transaction candidates are judged together."""

from __future__ import annotations

from types import SimpleNamespace

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, PROGRESS_LINE, PROGRESS_NONE, TO_CLIENT, TO_SERVER
from mirrorwatch.core.detect import Detector
from mirrorwatch.core.events import Alert
from mirrorwatch.core.settings import Settings
from tests.test_detect import Conv, engine, rules_of

# the detector's counters in the order the stats have always shown them
STATS_ORDER = ["packets", "inspected", "csum_skipped", "scans", "stream_scans", "stream_bytes", "stream_lost_bytes",
               "candidates", "alerts", "alerts_dropped_max", "suppressed", "passed_flows", "errors", "tx_scans",
               "tx_inspected"]

# rule numbers follow load order here: 1 and 3 judge the request, 2 the packet carrying its body
RULES = """
alert http any any -> any any (flow:to_server; http.method; content:"POST"; sid:1;)
alert tcp-pkt any any -> any any (content:"BODY"; sid:2;)
alert http any any -> any any (flow:to_server; http.uri; content:"/up"; sid:3;)
alert tcp-pkt any any -> any any (content:"BO"; sid:4;)
pass http any any -> any any (flow:to_client; http.stat_code; content:"200"; sid:5;)
"""


def test_the_record_holds_the_detectors_objects_and_a_reloads_stores():
    s = Settings()
    old = Detector(rules_of(RULES, s), s)
    det = Detector(rules_of(RULES, s), s, previous=old)
    j = det.judging
    assert j.crules is det.crules and j.tx_bufs is det.tx_bufs and j.skipped is det.skipped
    # threshold counters and xbits carried over by the reload are the ones judging uses
    assert j.thresholds is old.thresholds is det.thresholds and j.xbits is old.xbits is det.xbits
    assert j.flowints is old.flowints is det.flowints
    assert j.alert_max == s["detect.packet-alert-max"] and j.lookback == det.lookback


def test_packet_and_transaction_candidates_alert_in_rule_order_and_are_counted():
    conv = Conv()
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n"
    eng = engine(RULES, **{"detect.packet-alert-max": 2})
    frames = conv.handshake() + [conv.client(head), conv.ack_from_server()]
    for i, f in enumerate(frames):
        eng.process(1000.0 + i * 0.01, 1, bytes(f))
    # the request's transaction is inspected on the next to-server packet: the body's, which
    # wakes packet rules 2 and 4 too; alerts go in rule order, 4 is past packet-alert-max
    body = [e for e in eng.process(1001.0, 1, bytes(conv.client(b"BODY"))) if isinstance(e, Alert)]
    assert [a.rule.sid for a in body] == [1, 2]
    c = eng.detector.counters()
    assert list(c)[:len(STATS_ORDER)] == STATS_ORDER
    assert c["alerts"] == 2 and c["alerts_dropped_max"] == 2 and c["tx_inspected"] == 2 and c["errors"] == 0
    assert c["candidates"] >= 4 and c["passed_flows"] == 0
    # the response matches the pass rule: the flow is passed
    for i, f in enumerate([conv.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conv.ack_from_client(),
                           conv.server(b"", flags="A")]):
        eng.process(1002.0 + i * 0.01, 1, bytes(f))
    assert eng.detector.counters()["passed_flows"] == 1


def test_a_transaction_match_writes_its_flowints_before_later_rules_are_judged():
    """A transaction rule's flowint modifiers apply at match time, as a packet rule's: the packet
    rule after it in rule order, judged on the same packet, sees the count."""
    conv = Conv()
    eng = engine("""
alert http any any -> any any (flow:to_server; http.method; content:"POST"; flowint:posts,+,1; noalert; sid:10;)
alert tcp-pkt any any -> any any (content:"BODY"; flowint:posts,==,1; sid:11;)
""")
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n"
    for i, f in enumerate(conv.handshake() + [conv.client(head), conv.ack_from_server()]):
        eng.process(1000.0 + i * 0.01, 1, bytes(f))
    body = [e for e in eng.process(1001.0, 1, bytes(conv.client(b"BODY"))) if isinstance(e, Alert)]
    assert [a.rule.sid for a in body] == [11]
    c = eng.detector.counters()
    assert c["tx_inspected"] == 1 and c["flowint.refused"] == 0 and c["errors"] == 0


def test_a_transaction_rule_is_ready_on_its_side_once_its_buffers_are():
    s = Settings()
    det = Detector(rules_of(RULES, s), s)
    spec = next(cr for cr in (det.crule(n) for n in range(len(det.crules))) if cr.rule.sid == 3).tx
    uri_read = SimpleNamespace(progress_ts=PROGRESS_LINE, progress_tc=PROGRESS_NONE)
    assert spec.ready(uri_read, TO_SERVER)
    assert not spec.ready(uri_read, TO_CLIENT)  # a request rule is not inspected on responses
    assert not spec.ready(SimpleNamespace(progress_ts=PROGRESS_NONE, progress_tc=PROGRESS_COMPLETE), TO_SERVER)
