"""A side prefiltering both ``file.data`` and ``http.message`` scans the body once (``detect.tx``,
``shared_body``): the body's database also holds the message's literals, and the message's
scans only its head and as much of the body as a literal can cross into.  Every candidate of
scanning the body and the whole message on their own is still found, and no other."""

from __future__ import annotations

from mirrorwatch.core.detect import tx as tx_room
from tests.test_detect import Conv, engine
from tests.test_detect import run as run_frames

BODY = b"<html>" + b"x" * 3000 + b"deep-marker" + b"y" * 3000 + b"the-end</html>"
RESPONSE = (b"HTTP/1.1 200 OK\r\nX-Trace: abc\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY
REQUEST = b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 8\r\n\r\npostdata"
RULES = """
alert http any any -> any any (msg:"body starts"; flow:to_client; file.data; content:"<html>"; sid:31;)
alert http any any -> any any (msg:"head into body"; flow:to_client; content:"|0a|<html>xxxxxxxxxxxxxxxxxx"; http.stat_code; content:"200"; sid:32;)
alert http any any -> any any (msg:"deep in body"; flow:to_client; content:"deep-marker"; http.stat_code; content:"200"; sid:33;)
alert http any any -> any any (msg:"in the head"; flow:to_client; content:"X-Trace|3a| abc"; http.stat_code; content:"200"; sid:34;)
alert http any any -> any any (msg:"body end"; flow:to_client; content:"the-end</html>"; http.stat_code; content:"200"; sid:35;)
alert http any any -> any any (msg:"header, not body"; flow:to_client; file.data; content:"X-Trace"; sid:36;)
alert http any any -> any any (msg:"border, not body"; flow:to_client; file.data; content:"|0d 0a|<html>"; sid:37;)
alert http any any -> any any (msg:"absent"; flow:to_client; content:"no-such-literal"; http.stat_code; content:"200"; sid:38;)
alert http any any -> any any (msg:"req body start"; flow:to_server; file.data; content:"post"; sid:41;)
alert http any any -> any any (msg:"req border"; flow:to_server; content:"|0a|postdata"; http.method; content:"POST"; sid:42;)
"""


def exchange(conv: Conv) -> list:
    return (conv.handshake() + [conv.client(REQUEST), conv.ack_from_server(), conv.client(b"", flags="A"),
                                conv.server(RESPONSE), conv.ack_from_client(), conv.server(b"", flags="A")]
            + conv.close())


def run(rules: str = RULES) -> tuple[list, dict, object]:
    eng = engine(rules)
    alerts = sorted(e.rule.sid for e in run_frames(eng, exchange(Conv())))
    return alerts, eng.detector.c, eng.detector


def test_the_body_is_scanned_once_and_every_candidate_is_found(monkeypatch):
    alerts, c, det = run()
    assert alerts == [31, 32, 33, 34, 35, 41, 42]
    for side in (0, 1):
        scanners = {s.group.name: s for s in det.tx_pref[("http", side)]}
        assert scanners["file.data"].reach == -1
        # the longest message literal less a byte: each side's border-crossing one, its first
        # byte the head's last, its last the last byte of the body scanned with the head
        assert scanners["http.message"].reach == (24 if side else 8)
    monkeypatch.setattr(tx_room, "shared_body", lambda entries: (list(entries), {}))
    alerts_apart, c_apart, det_apart = run()
    assert all(s.reach == -1 for k in det_apart.tx_pref for s in det_apart.tx_pref[k])
    assert alerts_apart == alerts
    # no candidate more or less: the same rules judged on the same transactions
    assert c_apart["tx_inspected"] == c["tx_inspected"]


def test_a_side_without_both_buffers_is_left_as_it_was():
    rules = ('alert http any any -> any any (flow:to_client; file.data; content:"deep-marker"; sid:51;)\n'
             'alert http any any -> any any (flow:to_server; content:"|0d 0a 0d 0a|po"; '
             'http.method; content:"POST"; sid:52;)\n')
    alerts, _, det = run(rules)
    assert alerts == [51, 52]
    assert all(s.reach == -1 for k in det.tx_pref for s in det.tx_pref[k])
    body = next(s for s in det.tx_pref[("http", 1)] if s.group.name == "file.data")
    assert len(body.rules) == 1  # no literal added where there is no message database


def test_shared_body_adds_the_message_literals_to_the_body_database():
    fd = (("file.data", 1, ()), [b"abc"], [0], ((1,),))
    msg = (("http.message", 1, ()), [b"wxyz", b"q"], [0, 0], ((2,), (3,)))
    other = (("http.start", 1, ()), [b"zz"], [0], ((4,),))
    entries, reach = tx_room.shared_body((fd, msg, other))
    assert entries == [(fd[0], [b"abc", b"wxyz", b"q"], [0, 0, 0], ((1,), (2,), (3,))), msg, other]
    assert reach == {msg[0]: 3}
    transformed = (("file.data", 1, ("to_lowercase",)),) + fd[1:]
    assert tx_room.shared_body((transformed, msg)) == ([transformed, msg], {})
