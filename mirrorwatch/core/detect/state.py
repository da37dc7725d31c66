"""Detect's per-flow state: the scratch a flow carries (``flow.det``) and the gap keeper.

Per direction a flow remembers which header table its packets use, how far its
stream was inspected, the bytes a gap would have discarded before inspection and
its hyperscan stream; per flow its flowbits, flowints, by_flow thresholds and how far each
stream rule already alerted.
"""

from __future__ import annotations


class FlowDet:
    """Detect's per-flow scratch (``flow.det``)."""

    __slots__ = ("hdr0", "hdr1", "bits", "ints", "passed", "est", "est_after", "prog", "held", "gaps", "thr", "alerted_upto",
                 "piece_offs", "lead", "lits", "txp", "txa", "txprog", "guessed")

    def __init__(self) -> None:
        # Suricata's FLOW_PKT_ESTABLISHED for TCP: the session was established before the packet being
        # judged (the handshake's last ACK is not; a closing session stays so); ``est_after``: as of
        # the end of the last packet inspected
        self.est = False
        self.est_after = False
        # per direction: Detector's header-value table for the direction's protocol and ports
        # (None until the direction's first packet, which also gets the ip-only inspection)
        self.hdr0: dict | None = None
        self.hdr1: dict | None = None
        self.bits: set | None = None
        self.ints: dict | None = None  # flowint name -> value (``detect.flowint``)
        self.passed = False
        self.prog = [0, 0]  # stream offset up to which each direction was inspected
        # containers below stay None/empty until used: most sessions never need them
        self.held: list | None = None  # per direction: (offset, bytes, gap after) kept from before a gap
        # gap length before each piece of the current inspection (the first one's: a leading gap)
        self.gaps: tuple | list = ()
        # per direction: the gap the stream began with, shown before its first inspected bytes
        # (Suricata logs a stream alert's payload from the stream's start, gaps marked)
        self.lead: list | None = None
        self.thr: dict | None = None  # by_flow threshold counters
        # (direction, rule) -> stream offset up to which the rule already alerted
        self.alerted_upto: dict | None = None
        self.piece_offs: tuple | list = ()  # stream offset of each piece of the current inspection
        self.lits: list | None = None  # per direction: its hsdb.LiteralStream (stream-mode prefilter)
        self.txp: tuple | None = None  # per direction: {tx_id: transaction} changed since inspected
        self.txa: dict | None = None  # tx_id -> rule numbers that already alerted on that transaction
        self.txprog: dict | None = None  # tx_id -> tx.TxSeen (progress when last filed as pending, scans)
        self.guessed: dict | None = None  # tx_id -> packet/stream alerts given it (detect.guess-applayer-tx)

    def swap(self) -> None:
        """The flows room swapped client and server: every per-direction field follows."""
        self.hdr0, self.hdr1 = self.hdr1, self.hdr0
        self.prog.reverse()
        for per_dir in (self.held, self.lits, self.lead):
            if per_dir is not None:
                per_dir.reverse()
        if self.alerted_upto:
            self.alerted_upto = {(1 - d, num): upto for (d, num), upto in self.alerted_upto.items()}

    def close(self) -> None:
        """The flow ends: buffers go, hyperscan streams are closed (they hold native state)."""
        self.held = None
        if self.lits is not None:
            for ls in self.lits:
                if ls is not None:
                    ls.close()
            self.lits = None


class GapKeeper:
    """Reassembly observer: when a gap is declared, saves the not yet inspected
    bytes before it (the stream is about to drop them) for the next inspection."""

    __slots__ = ("fd", "d", "inner", "wants_data")

    def __init__(self, fd: FlowDet, d: int, inner) -> None:
        self.fd, self.d, self.inner = fd, d, inner
        # settled bytes matter only to a wrapped observer: without one the stream makes no
        # ``data`` calls (and keeps its fast paths)
        self.wants_data = inner is not None and getattr(inner, "wants_data", True)

    def data(self, stream, offset: int, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data(stream, offset, data)

    def gap(self, stream, offset: int, length: int) -> None:
        fd, d = self.fd, self.d
        start = fd.prog[d] if fd.prog[d] > stream.buf_base else stream.buf_base
        if stream.end > start:
            if fd.held is None:
                fd.held = [[], []]
            fd.held[d].append((start, bytes(stream.buf[start - stream.buf_base:]), length))
        elif offset == 0:  # the stream begins with a gap: its first inspected bytes are shown after it
            if fd.lead is None:
                fd.lead = [0, 0]
            fd.lead[d] = length
        fd.prog[d] = offset + length
        if self.inner is not None:
            self.inner.gap(stream, offset, length)

    def end(self, stream) -> None:
        if self.inner is not None:
            self.inner.end(stream)


class HeaderTable(dict):
    """Header value (TCP flags / ICMP type) -> candidate rules, for one (protocol, ports) ``key``."""

    __slots__ = ("key",)
