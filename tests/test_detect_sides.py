"""Detect's literal databases per direction (Suricata's toserver/toclient signature groups) and
the transaction buffers shared by the prefilter and the candidates' verification."""

from __future__ import annotations

from mirrorwatch.core.detect import buffers
from mirrorwatch.core.detect.plan import TCP
from tests.test_detect import Conv, engine, run, sids

BOTH_SIDES = """
alert tcp any any -> any any (flow:established,to_server; content:"needle"; sid:1;)
alert tcp any any -> any any (flow:established,to_client; content:"needle"; sid:2;)
alert tcp any any -> any any (content:"needle"; sid:3;)
"""


def _session(request: bytes, response: bytes) -> list:
    conv = Conv()
    return (conv.handshake() + [conv.client(request), conv.ack_from_server(), conv.server(response),
                                conv.ack_from_client()] + conv.close())


def test_each_direction_alerts_with_its_own_rules():
    eng = engine(BOTH_SIDES)
    alerts = run(eng, _session(b"a needle here", b"another needle there"))
    assert sorted(sids(alerts)) == [1, 2, 3, 3]
    assert all(a.stream == 1 for a in alerts)
    assert {a.rule.sid: a.to_server for a in alerts if a.rule.sid != 3} == {1: True, 2: False}


def test_a_response_does_not_wake_request_only_rules():
    eng = engine('alert tcp any any -> any any (flow:established,to_server; content:"needle"; sid:1;)')
    det = eng.detector
    assert det.stream_scan[1] is None and det.block[TCP][1] is None  # nothing to scan responses with
    assert run(eng, _session(b"GET / HTTP/1.0\r\n\r\n", b"needle " * 50)) == []
    assert det.counters()["candidates"] == 0 and det.c["stream_scans"] > 0


def test_directions_with_the_same_literals_share_one_database():
    det = engine('alert tcp any any -> any any (content:"needle"; sid:1;)').detector
    assert det.stream_scan[0].db is det.stream_scan[1].db
    assert det.block[TCP][0][0].db is det.block[TCP][1][0].db
    split = engine(BOTH_SIDES).detector
    assert split.stream_scan[0].db is split.stream_scan[1].db  # the same literal both ways
    assert split.stream_rules[0] != split.stream_rules[1]  # but not the same rules


def test_verification_reuses_the_buffers_the_prefilter_got(monkeypatch):
    got = []

    def counted(name: str) -> None:
        """Every read of the request side's ``name`` buffer is noted in ``got``."""
        row = buffers.lookup(name)
        request, response = row.get

        def get(tx):
            got.append(name)
            return request.fetch(tx)

        monkeypatch.setattr(row, "get", (buffers.Getter(buffers.CALL, get), response))

    counted("http.uri")
    counted("http.user_agent")
    eng = engine("""
alert http any any -> any any (msg:"ua"; http.user_agent; content:"curl"; sid:1;)
alert http any any -> any any (msg:"ua again"; http.user_agent; content:"curl/8"; sid:2;)
alert http any any -> any any (msg:"ua and uri"; http.user_agent; content:"curl"; http.uri; content:"/x"; sid:3;)
""")
    conv = Conv()
    request = b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.5\r\n\r\n"
    alerts = run(eng, conv.handshake() + [conv.client(request), conv.ack_from_server()] + conv.close())
    assert sorted(sids(alerts)) == [1, 2, 3]
    # one user agent for the prefilter (shared by all three rules), one uri for rule 3's check
    assert sorted(got) == ["http.uri", "http.user_agent"]
