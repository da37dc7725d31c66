"""The flow table's key (``table.flow_key``) and the application layer's calls into a parser
(``AppLayer._call``): what the compiled build does in C is what the interpreted one does."""

from __future__ import annotations

from types import SimpleNamespace

from mirrorwatch.core.applayer.session import AppFlow, AppLayer, uninspected
from mirrorwatch.core.decode.packet import ACK, Packet
from mirrorwatch.core.flows.table import FlowTable, flow_key
from mirrorwatch.core.settings import Settings

V4_A, V4_B = bytes([10, 0, 0, 1]), bytes([192, 0, 2, 80])
V6_A, V6_B = bytes(15) + b"\x01", b"\x20\x01\x0d\xb8" + bytes(11) + b"\x50"


def test_the_key_is_both_addresses_then_protocol_and_ports():
    ports = (6 << 32) | (40000 << 16) | 80
    assert flow_key(V4_A, V4_B, ports) == V4_A + V4_B + ports.to_bytes(5, "little")
    assert flow_key(V6_A, V6_B, ports) == V6_A + V6_B + ports.to_bytes(5, "little")
    assert flow_key(V4_A, V4_B, ports) != flow_key(V4_A, V4_B, ports + 1)


def packet(src: bytes, dst: bytes, sport: int, dport: int, vlan=None) -> Packet:
    p = Packet(0.0, 0, 1, b"\0" * 54)
    p.ipv, p.proto = (4 if len(src) == 4 else 6), 6
    p.src, p.dst, p.sport, p.dport, p.vlan_id = src, dst, sport, dport, vlan
    p.flags, p.seq, p.ack, p.win, p.payload = ACK, 1, 1, 65535, b""
    return p


def test_both_directions_meet_one_flow_and_other_sessions_stay_apart():
    ft = FlowTable(Settings({}))
    ev: list = []
    fwd, _ = ft.process(packet(V4_A, V4_B, 40000, 80), ev)
    back, _ = ft.process(packet(V4_B, V4_A, 80, 40000), ev)
    assert back is fwd
    others = [packet(V4_A, V4_B, 40001, 80), packet(V4_A, V4_B, 40000, 80, vlan=7),
              packet(V6_A, V6_B, 40000, 80), packet(V4_B, V4_A, 40000, 80)]
    flows = {id(ft.process(p, ev)[0]) for p in others}
    assert len(flows) == 4 and id(fwd) not in flows and len(ft.flows) == 5
    again, _ = ft.process(packet(V6_B, V6_A, 80, 40000), ev)
    assert again.client == V6_A and len(ft.flows) == 5


class Recorder:
    """A parser that records what it is asked (the app layer's generic path: not HTTP)."""

    def __init__(self, fail_on: bytes = b"") -> None:
        self.calls: list = []
        self.memuse = 0
        self.txs: list = []
        self.fail_on = fail_on

    def feed(self, d, data):
        if data == self.fail_on:
            raise ValueError("parser bug")
        self.calls.append(("feed", d, bytes(data)))

    def gap(self, d, n):
        self.calls.append(("gap", d, n))

    def close(self, d):
        self.calls.append(("close", d))

    def updated(self):
        self.calls.append(("updated",))
        return []


def test_a_parser_gets_its_feeds_gaps_and_ends_and_a_bug_stops_its_direction():
    layer = AppLayer(Settings({}))
    parser = Recorder(fail_on=b"boom")
    layer.factories["http"] = lambda: parser
    app = AppFlow()
    layer.stream_data(app, 0, b"GET / HTTP/1.1\r\n")  # detected: the kept bytes are replayed
    layer.stream_gap(app, 1, 5)
    layer.stream_data(app, 0, b"boom")
    layer.stream_data(app, 0, b"after")  # direction 0 was given up
    layer.stream_end(app, 1)
    assert parser.calls == [("feed", 0, b"GET / HTTP/1.1\r\n"), ("gap", 1, 5), ("close", 1)]
    assert layer.c["parser_errors"] == 1 and app.given_up == 1
    uninspected(app)
    assert parser.calls[-1] == ("updated",)


def test_http_gets_gaps_and_ends_and_hands_out_only_what_changed():
    layer = AppLayer(Settings({}))
    app = AppFlow()
    layer.stream_data(app, 0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    layer.stream_data(app, 1, b"HTTP/1.0 200 OK\r\n\r\nbody")
    http = app.parser
    assert http._dirty
    uninspected(app)
    assert not http._dirty and all(tx.reported for tx in http.txs)
    layer.stream_gap(app, 1, 3)
    assert http.stats.gaps == 1
    layer.stream_end(app, 1)  # the close-delimited body ends: the transaction is complete
    uninspected(app)
    done = layer.logged(SimpleNamespace(app=app))
    assert [tx.uri_raw for tx in done] == [b"/a"]
