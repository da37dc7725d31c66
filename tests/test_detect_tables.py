"""The per-packet tables record (``detect.tables``): the detector's own tables, and header tables
shared by ports no rule names and bounded in number."""

from __future__ import annotations

from mirrorwatch.core.detect import Detector, tables
from mirrorwatch.core.detect.plan import ADDED, TCP, UDP
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, parse_rule

RULES = """
alert tcp any any -> any 80 (flags:S; sid:1;)
alert tcp any any -> any 81 (flags:S; sid:2;)
alert tcp any any -> any 82 (flags:S; sid:3;)
alert tcp any any -> any any (content:"abc"; depth:3; sid:4;)
alert udp any any -> any 53 (content:"xyz"; sid:5;)
"""


def detector() -> Detector:
    s = Settings()
    ctx = RuleContext(s, {})
    return Detector([parse_rule(line, ctx)[0] for line in RULES.strip().splitlines()], s)


def test_the_record_holds_the_detectors_tables():
    det = detector()
    t = det.tables
    assert t.blk_tcp is det.block[TCP] and t.blk_added is det.block[ADDED] and t.blk_udp is det.block[UDP]
    assert t.c is det.c and t.stream_scan is det.stream_scan and t.has_stream == det.has_stream


def test_header_tables_shared_by_unnamed_ports_and_bounded(monkeypatch):
    det = detector()
    t = det.tables
    eph = tables.header_table(t, TCP, 40000, 50000)
    assert tables.header_table(t, TCP, 40001, 50001) is eph  # ports no rule names share one table
    port80 = tables.header_table(t, TCP, 80, 50000)
    assert port80 is not eph and tables.header_table(t, TCP, 80, 50001) is port80
    assert port80.key == (TCP, 80, -1) and eph.key == (TCP, -1, -1)
    monkeypatch.setattr(tables, "HEADER_TABLES_MAX", 2)
    tables.header_table(t, TCP, 81, 50000)  # a third table: the kept ones go first
    assert len(t.static) == 1
    assert tables.header_table(t, TCP, 80, 50000) is not port80
