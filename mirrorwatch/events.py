"""What the core returns: plain event records, turned into effects by the sinks.

The core never prints, writes or sends; it hands these to whoever drives it
(replay, listen, tests).  Each record carries exactly what a sink needs, so an
EVE writer, the live table and the injector can all consume the same list.
"""

from __future__ import annotations

from typing import Any


class Alert:
    """A rule matched.  ``stream`` is 1 when it matched reassembled stream data.

    ``pkt`` is the packet the alert is attached to (Suricata's ``pcap_cnt``);
    ``to_server`` tells the direction of that packet within ``flow`` (None for
    flowless packets).  ``action`` is the EVE ``alert.action`` ("allowed" or
    "blocked"); ``verdict`` is the EVE ``verdict`` object for killing rules.
    """

    __slots__ = ("ts", "pkt", "flow", "to_server", "rule", "stream", "action", "verdict", "payload", "kind")

    def __init__(self, pkt, flow, to_server, rule, stream=0, payload=b"", kind="packet"):
        self.ts = pkt.ts
        self.pkt = pkt
        self.flow = flow
        self.to_server = to_server
        self.rule = rule
        self.stream = stream
        self.action = "allowed"
        self.verdict = None
        self.payload = payload
        self.kind = kind


class FlowEnded:
    """A session left the table: ``reason`` is Suricata's flow.reason (timeout, forced, shutdown)."""

    __slots__ = ("ts", "flow", "reason")

    def __init__(self, ts: float, flow, reason: str):
        self.ts = ts
        self.flow = flow
        self.reason = reason


class Kill:
    """A decision to end a session: the frames the injector must write, as plain values.

    ``frames`` is a list of ``inject.ForgedSegment`` values (one per target
    direction); ``trigger`` names why (the alert's sid, or 'challenge-ack',
    'refire'); ``dry_run`` tells sinks to log without sending.
    """

    __slots__ = ("ts", "flow", "frames", "trigger", "dry_run", "pcap_cnt")

    def __init__(self, ts: float, flow, frames: list, trigger: str, dry_run: bool = False, pcap_cnt: int = 0):
        self.ts = ts
        self.flow = flow
        self.frames = frames
        self.trigger = trigger
        self.dry_run = dry_run
        self.pcap_cnt = pcap_cnt


class Stats:
    """Counters of the whole engine at one moment (the EVE ``stats`` event)."""

    __slots__ = ("ts", "counters")

    def __init__(self, ts: float, counters: dict[str, Any]):
        self.ts = ts
        self.counters = counters
