"""What the core returns: plain event records, turned into effects by the sinks.

The core never prints, writes or sends; it hands these to whoever drives it
(replay, listen, tests).  Each record carries exactly what a sink needs, so an
EVE writer, the live table and the injector can all consume the same list.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any, NamedTuple

DEFAULT_TTL = 64  # TTL / hop limit of a forged segment when the flow gave none


class Alert:
    """A rule matched.  ``stream`` is 1 when it matched reassembled stream data.

    ``pkt`` is the packet the alert is attached to (Suricata's ``pcap_cnt``);
    ``to_server`` tells the direction of that packet within ``flow`` (None for
    flowless packets).  ``action`` is the EVE ``alert.action`` ("allowed" or
    "blocked"); ``verdict`` is the EVE ``verdict`` object for killing rules.
    ``tx`` is the application-layer transaction an app-layer rule matched (its
    protocol is ``flow.app.proto``), else None; or, ``tx_guessed``, the one a
    packet or stream alert was given (``detect.guess-applayer-tx``).
    """

    __slots__ = ("ts", "pkt", "flow", "to_server", "rule", "stream", "action", "verdict", "payload", "kind", "tx",
                 "tx_guessed")

    def __init__(self, pkt, flow, to_server, rule, stream=0, payload=b"", kind="packet", tx=None):
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
        self.tx = tx
        self.tx_guessed = False


class AppTx:
    """An application-layer transaction is complete (or its flow ended): the EVE http/dns/tls
    record.  ``proto`` is Suricata's name; ``pcap_cnt`` the number of the packet whose
    processing completed it, 0 when it is logged at the flow's end (Suricata logs those on
    its flow-timeout pseudo packet, which has no number)."""

    __slots__ = ("ts", "flow", "proto", "tx", "pcap_cnt")

    def __init__(self, ts: float, flow, proto: str, tx, pcap_cnt: int = 0):
        self.ts = ts
        self.flow = flow
        self.proto = proto
        self.tx = tx
        self.pcap_cnt = pcap_cnt


class TaggedPacket:
    """A packet a ``tag`` keyword marked (Suricata's PKT_HAS_TAG): an EVE ``packet`` record."""

    __slots__ = ("ts", "pkt", "flow")

    def __init__(self, pkt, flow):
        self.ts = pkt.ts
        self.pkt = pkt
        self.flow = flow


class DecodeAnomaly:
    """A packet the decoder flagged with events (``Packet.events``, Suricata's decoder events):
    EVE ``anomaly`` records of type ``decode``, one per event, when those are logged."""

    __slots__ = ("ts", "pkt")

    def __init__(self, pkt):
        self.ts = pkt.ts
        self.pkt = pkt


class FlowEnded:
    """A session left the table: ``reason`` is Suricata's flow.reason (timeout, forced, shutdown)."""

    __slots__ = ("ts", "flow", "reason")

    def __init__(self, ts: float, flow, reason: str):
        self.ts = ts
        self.flow = flow
        self.reason = reason


class FlowEmergency:
    """The flow table entered (``entered`` True) or left emergency mode, as Suricata's
    FLOW_EMERGENCY: ``cap`` is the setting whose limit was hit (entering), ``active``
    the sessions and ``memuse`` the flow table's estimated bytes at that moment."""

    __slots__ = ("ts", "entered", "cap", "active", "memuse")

    def __init__(self, ts: float, entered: bool, cap: str, active: int, memuse: int):
        self.ts = ts
        self.entered = entered
        self.cap = cap
        self.active = active
        self.memuse = memuse


class Kill:
    """A decision to end a session: the frames the injector must write, as plain values.

    ``frames`` is a list of ``ForgedSegment`` values (each target's exact
    segment, then the boundaries predicted after it: ``core.forge``);
    ``trigger`` names why (the alert's sid, or 'challenge-ack', 'refire',
    'peer-data'); ``dry_run`` tells sinks to log without sending.
    """

    __slots__ = ("ts", "flow", "frames", "trigger", "dry_run", "pcap_cnt")

    def __init__(self, ts: float, flow, frames: list, trigger: str, dry_run: bool = False, pcap_cnt: int = 0):
        self.ts = ts
        self.flow = flow
        self.frames = frames
        self.trigger = trigger
        self.dry_run = dry_run
        self.pcap_cnt = pcap_cnt


# Verdict.action values (inline mode)
ACCEPT, DROP_FLOW, REJECT, PASS_FLOW = "accept", "drop-flow", "reject", "pass-flow"


class Verdict:
    """Inline (IPS) mode: what becomes of the packet an inline source holds; the source keeps the
    packet's id and applies this (``Engine.process_inline`` returns it with the events).

    ``action``: ``accept``; ``drop-flow`` (drop it and every later packet of its flow: the source
    has the kernel remember the flow); ``reject`` (as drop-flow, and the endpoints are reset: the
    ``Kill`` among the events carries the segments); ``pass-flow`` (accept it and let the kernel
    pass the rest of its flow uninspected: Suricata's bypass).  ``reason``: why (``sid:N drop``,
    ``pass rule``, ``stream depth``), empty for accept.
    """

    __slots__ = ("action", "reason")

    def __init__(self, action: str, reason: str = ""):
        self.action = action
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Verdict {self.action}{' (' + self.reason + ')' if self.reason else ''}>"


ACCEPTED = Verdict(ACCEPT)  # the verdict of almost every packet: one shared value


INLINE, BYPASS = "inline", "bypass"  # BypassSwitch.state values


class BypassSwitch(NamedTuple):
    """Inline mode: the fail-open bypass switch turned (reported by the watchdog process).

    ``state``: "inline" or "bypass"; ``ts``: wall clock; ``released``: packets the kernel held
    for a stalled engine that were accepted uninspected; ``switch_s``: seconds the change took.
    """

    ts: float
    state: str
    reason: str
    released: int
    switch_s: float


class Stats:
    """Counters of the whole engine at one moment (the EVE ``stats`` event)."""

    __slots__ = ("ts", "counters")

    def __init__(self, ts: float, counters: dict[str, Any]):
        self.ts = ts
        self.counters = counters


# What the engine hands to the sinks (``Verdict`` goes to the inline source, not to the sinks).
EVENT_TYPES = (Alert, AppTx, TaggedPacket, FlowEnded, FlowEmergency, Kill, BypassSwitch, Stats, DecodeAnomaly)


class ForgedSegment:
    """One forged TCP segment, decided by the core: every header value is fixed here.

    ``to_server`` is the direction it travels (True: impersonates the client and
    resets the server).  ``vlans`` is the raw (tpid, tci) stack, outermost first.
    """

    __slots__ = ("to_server", "ipv", "src", "dst", "sport", "dport", "seq", "ack", "flags", "win",
                 "ttl", "ip_id", "src_mac", "dst_mac", "vlans")

    def __init__(self, to_server, ipv, src, dst, sport, dport, seq, ack, flags, ttl, ip_id,
                 src_mac=b"", dst_mac=b"", vlans=(), win=0):
        self.to_server = to_server
        self.ipv = ipv
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.seq = seq & 0xFFFFFFFF
        self.ack = ack & 0xFFFFFFFF
        self.flags = flags
        self.win = win
        self.ttl = ttl or DEFAULT_TTL
        self.ip_id = ip_id & 0xFFFF
        self.src_mac = src_mac or b""
        self.dst_mac = dst_mac or b""
        self.vlans = tuple(vlans or ())

    def key(self) -> tuple:
        """What identifies this frame when it comes back on the mirror (see Killer.own_frame)."""
        return (self.src, self.dst, self.sport, self.dport, self.seq, self.ack, self.flags,
                self.ip_id if self.ipv == 4 else 0)

    def __repr__(self) -> str:
        return (f"<ForgedSegment {ip_address(self.src)}:{self.sport} -> {ip_address(self.dst)}:{self.dport} "
                f"flags=0x{self.flags:02x} seq={self.seq} ack={self.ack}>")
