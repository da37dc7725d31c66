"""What every layer of the decoder reads and reports to (``DecodeContext``, the base of ``Decoder``).

A layer reads the tables (``linktypes``, ``ethertypes`` through its index by
EtherType, ``ip_protos`` indexed by protocol number, ``udp_dports``/``udp_sports``
for UDP tunnels) and hands the rest of the frame to the entry its header names
with ``call``; it reads ``max_layers``, ``check`` (``checksum.CHECK_*``) and
``defrag``; it bumps the per-protocol counters and reports through ``error``,
``fail``, ``invalid``, ``event``, ``note`` and ``verify_transport``.
Compiled (context.pxd) it is a C struct the layers reach without attribute
lookups; it lives apart from decoder.py, which imports every layer, so that the
layers can name its type without importing one another in a cycle.

The tables hold layer functions (``decode_x(d, p, f, off, end, depth)``, see
ethernet.py).  A compiled layer's entry is a ``Layer`` (``Layer.of``): a record of its
C function, which ``call`` calls as C, with no Python call, and which any other
caller still calls as a function.  Interpreted, an entry is the function itself.
"""

from __future__ import annotations

from contextlib import contextmanager

import cython

from mirrorwatch.core.decode.checksum import (
    CHECK_OFF,
    CHECK_ON,
    CHECK_SAMPLE,
    transport_ok,
)
from mirrorwatch.core.decode.decode_events import PACKET_EVENT_MAX
from mirrorwatch.core.decode.numbers import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
)
from mirrorwatch.core.decode.packet import Packet

ETHERTYPES = 1 << 16  # EtherType values: the length of the index ``set_ethertypes`` builds
# -k auto: more than one bad checksum in this many sampled means offloading (Suricata's CHECKSUM_INVALID_RATIO)
AUTO_INVALID_RATIO = 10
_CSUM_BAD = {PROTO_TCP: "tcp_csum_bad", PROTO_UDP: "udp_csum_bad", PROTO_ICMP: "icmpv4_csum_bad",
             PROTO_ICMPV6: "icmpv6_csum_bad"}


class Layer:
    """A compiled layer function as a table's entry (see the module docstring)."""

    def __call__(self, d, p, f, off, end, depth):
        return self.fn(d, p, f, off, end, depth)

    @staticmethod
    def of(fn):
        """The table entry of the layer function ``fn``: compiled, a ``Layer`` of its C function;
        interpreted, ``fn`` itself."""
        if not cython.compiled:
            return fn
        entry = Layer()
        entry.fn = fn
        return entry


def call(fn, d, p, f: bytes, off: int, end: int, depth: int):
    """Hand ``f[off:end]`` to the table entry ``fn``: compiled, a C call when it is a ``Layer``."""
    if cython.compiled and type(fn) is Layer:
        return cython.cast(Layer, fn).fn(d, p, f, off, end, depth)
    return fn(d, p, f, off, end, depth)


class DecodeContext:
    """The tables, checksum mode and counters the layers share (see the module docstring)."""

    def __init__(self, check: int, sample: int, max_layers: int):
        self.check = check
        self.sample = sample
        self.max_layers = max_layers
        self.linktypes: dict = {}
        self.ethertypes: dict = {}
        self.ethertype_slot = bytes(ETHERTYPES)  # EtherType -> index in ethertype_entry (set_ethertypes)
        self.ethertype_entry: list = [None]
        self.ip_protos: list = []
        self.udp_dports: dict = {}
        self.udp_sports: dict = {}
        self.defrag = None
        self.pkts = 0
        self.errors = 0
        self.n_invalid = 0
        self.n_ipv4 = self.n_ipv6 = self.n_tcp = self.n_udp = self.n_icmpv4 = self.n_icmpv6 = self.n_vlan = 0
        self.n_eth = 0  # Ethernet headers decoded, the wire's and carried ones (Suricata's decoder.ethernet)
        self.csum_checked = self.csum_bad = 0
        self.auto_disabled = 0
        self.auto_sample: tuple[int, int] | None = None  # -k auto: (bad, checked) it decided on
        self.notes: dict[str, int] = {}  # protocol / encapsulation counts
        self.errs: dict[str, int] = {}  # per-reason error counts
        self.events: dict[str, int] = {}  # per decoder event (Suricata's name) counts

    def set_ethertypes(self, table: dict) -> None:
        """The EtherType table ``ethertypes`` and its index, which the layers read: a byte per
        EtherType (``ethertype_slot``), the index of its entry in ``ethertype_entry`` (the
        table's distinct entries after None, the entry of an EtherType not in the table)."""
        entry = [None, *dict.fromkeys(table.values())]
        slot = bytearray(ETHERTYPES)
        for etype, fn in table.items():
            slot[etype] = entry.index(fn)
        self.ethertypes = table
        self.ethertype_slot = bytes(slot)
        self.ethertype_entry = entry

    # -- what the layers report ---------------------------------------------------
    def error(self, reason: str) -> None:
        """A malformed or unsupported frame that Suricata names no event for: counted by reason, no packet."""
        self.errors += 1
        e = self.errs
        e[reason] = e.get(reason, 0) + 1

    def fail(self, p: Packet, event: str, reason: str) -> Packet:
        """A header the frame cannot be decoded past, which Suricata flags with ``event``: counted
        by reason as ``error``, and the packet goes on as Suricata's does, flagged invalid (no
        flow) with the event and the layers decoded before it, for the rules on decoder events."""
        self.errors += 1
        return self._flag(p, reason, event)

    def invalid(self, p: Packet, reason: str, event: str) -> Packet:
        """Valid IP, malformed transport header (Suricata's ``event``): the packet goes on flagged
        (Suricata: no flow, IP-only rules)."""
        self.n_invalid += 1
        return self._flag(p, reason, event)

    def _flag(self, p: Packet, reason: str, event: str) -> Packet:
        """``p`` flagged invalid for ``reason`` (counted) with the decoder event ``event``."""
        e = self.errs
        e[reason] = e.get(reason, 0) + 1
        p.invalid = reason
        self.event(p, event)
        return p

    def event(self, p: Packet, event: str) -> None:
        """The decoder event ``event`` on ``p``, counted; beyond Suricata's cap per packet neither."""
        if len(p.events) < PACKET_EVENT_MAX:
            p.events += (event,)
            c = self.events
            c[event] = c.get(event, 0) + 1

    def note(self, what: str) -> None:
        n = self.notes
        n[what] = n.get(what, 0) + 1

    def verify_transport(self, p: Packet, f: bytes, l4: int, end: int, proto: int) -> None:
        """The checksum of the segment ``f[l4:end]``: judged into ``p.csum_ok`` (an IPv4 header
        found bad stays bad), or under ``-k auto`` only sampled until the decision."""
        ok = transport_ok(f, p.ipv, p.ip_off, l4, end, proto)
        self.csum_checked += 1
        if not ok:
            self.csum_bad += 1
            self.note(_CSUM_BAD[proto])
        if self.check == CHECK_SAMPLE:
            if self.csum_checked >= self.sample:
                self._decide()
        elif not ok:
            p.csum_ok = False
        elif p.csum_ok is None:
            p.csum_ok = True

    def _decide(self) -> None:
        """``-k auto``: the sample is in; more than one bad checksum in ten means offloading."""
        self.auto_sample = (self.csum_bad, self.csum_checked)
        if self.csum_bad * AUTO_INVALID_RATIO > self.csum_checked:
            self.check = CHECK_OFF
            self.auto_disabled = 1
        else:
            self.check = CHECK_ON

    @contextmanager
    def unverified(self):
        """Frames decoded inside are not checksum-verified (nor sampled by ``-k auto``): the
        kernel that handed them over has not filled their checksums in yet (an inline
        source's CHECKSUM_PARTIAL and GSO packets), so a wrong-looking one is not bad."""
        check = self.check
        self.check = CHECK_OFF
        try:
            yield
        finally:
            self.check = check
