"""DNS over UDP and TCP: one transaction per message, as Suricata 8 and later.

Every query and every response is a transaction of its own, complete as soon
as it is parsed (Suricata's stateless DNS parser: ``tx_get_alstate_progress``
is always 1), numbered in the order the messages are seen on the flow. So a
query is logged on its own packet, a response on its own, an unanswered query
and an unsolicited response are logged like any other, and ``tx_id`` counts
messages. Over TCP the 2-byte length prefix frames the messages; a message
longer than ``max_message_len`` is skipped unbuffered. The EVE rendering is
``mirrorwatch.sinks.eve_dns``.

"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import (
    PROGRESS_COMPLETE,
    TO_SERVER,
    ParserStats,
    TxTracker,
)
from mirrorwatch.core.applayer.dns_wire import (
    FLAG_QR,
    HEADER_LEN,
    OPCODE_MASK,
    OPCODE_SHIFT,
    DnsMessage,
    DnsRecord,
    header_valid,
    parse_header,
    parse_message,
)

DEFAULT_MAX_MESSAGE_LEN = 0xFFFF
TCP_LENGTH_LEN = 2


class DnsStats(ParserStats):
    __slots__ = ("not_request", "skipped_bytes")

    def __init__(self) -> None:
        super().__init__()
        self.not_request = 0
        self.skipped_bytes = 0


class DnsTransaction:
    """One message: a query (``request``) or a response (``response``), the other None.

    Complete in both directions from the start, as Suricata's DNS transactions.
    """

    __slots__ = ("progress_tc", "progress_ts", "request", "response", "size", "tx_id")

    def __init__(self, tx_id: int, msg: DnsMessage, is_request: bool, size: int) -> None:
        self.tx_id = tx_id
        self.size = size  # wire bytes of its message (what it is charged for in ``memuse``)
        self.request: DnsMessage | None = msg if is_request else None
        self.response: DnsMessage | None = None if is_request else msg
        self.progress_ts = PROGRESS_COMPLETE
        self.progress_tc = PROGRESS_COMPLETE

    @property
    def message(self) -> DnsMessage:
        return self.request if self.request is not None else self.response

    @property
    def dns_id(self) -> int:
        return self.message.dns_id

    @property
    def flags(self) -> int:
        return self.message.flags

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def qr(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def rcode(self) -> int | None:
        """Response code; None for a query."""
        return None if self.response is None else self.response.rcode

    @property
    def queries(self) -> tuple:
        """The questions of a query (Suricata's dns.query inspects requests only)."""
        return () if self.request is None else self.request.queries

    @property
    def answers(self) -> tuple[DnsRecord, ...]:
        return () if self.response is None else self.response.answers

    @property
    def authorities(self) -> tuple[DnsRecord, ...]:
        return () if self.response is None else self.response.authorities


class _DnsFlow:
    """The transactions of one flow, shared by the UDP and TCP states."""

    # A transaction is complete when made: the engine logs it on the packet that made it, as
    # Suricata's transaction loggers, without waiting for rules of the other direction.
    logs_when_made = True

    def __init__(self) -> None:
        self.stats = DnsStats()
        self.failed = False
        self._tracker = TxTracker()
        self._held = 0  # wire bytes of the messages its transactions hold

    @property
    def txs(self) -> list:
        return self._tracker.txs

    @property
    def memuse(self) -> int:
        """Bytes held: the messages of transactions not yet logged (by their wire size)."""
        return self._held

    def updated(self) -> list:
        return self._tracker.updated()

    def pop_done(self) -> list:
        done = self._tracker.pop_done()
        for tx in done:
            self._held -= tx.size
        return done

    def _on_message(self, direction: int, payload: bytes, msg: DnsMessage | None = None) -> DnsTransaction | None:
        """One message of ``direction``; ``msg``: ``payload`` already parsed (by detection)."""
        if msg is None:
            msg = parse_message(payload)
        if msg is None:
            self.stats.parse_errors += 1
            return None
        if direction == TO_SERVER and msg.is_response:
            self.stats.not_request += 1  # Suricata's NotRequest event: not a transaction
            return None
        tx = DnsTransaction(self._tracker.next_id(), msg, direction == TO_SERVER, len(payload))
        self._tracker.add(tx)
        self.stats.txs += 1
        self._held += tx.size
        return tx


class DnsUdpState(_DnsFlow):
    """DNS over UDP for one flow: one message per datagram."""

    def parse(self, direction: int, payload: bytes | memoryview, msg=None) -> DnsTransaction | None:
        """Parse one datagram (``msg``: already parsed); the transaction it made, or None."""
        return self._on_message(direction, bytes(payload), msg)


class _TcpDirection:
    __slots__ = ("buf", "resync", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0
        self.resync = False


class DnsTcpState(_DnsFlow):
    """DNS over TCP for one flow: length-prefixed messages on each direction."""

    def __init__(self, max_message_len: int = DEFAULT_MAX_MESSAGE_LEN) -> None:
        super().__init__()
        self.max_message_len = max_message_len
        self._dirs = (_TcpDirection(), _TcpDirection())

    @property
    def memuse(self) -> int:
        """Bytes held: the transactions' messages and partial messages."""
        return self._held + len(self._dirs[0].buf) + len(self._dirs[1].buf)

    def feed(self, direction: int, data: bytes | memoryview) -> None:
        side = self._dirs[direction]
        data = bytes(data)
        if side.resync:
            if not looks_like_tcp_message(data):
                self.stats.skipped_bytes += len(data)
                return
            side.resync = False
        if side.skip:
            step = min(side.skip, len(data))
            side.skip -= step
            self.stats.skipped_bytes += step
            data = data[step:]
        side.buf += data
        self._drain(direction, side)

    def _drain(self, direction: int, side: _TcpDirection) -> None:
        buf = side.buf
        pos = 0
        while len(buf) - pos >= TCP_LENGTH_LEN:
            length = int.from_bytes(buf[pos:pos + TCP_LENGTH_LEN], "big")
            start = pos + TCP_LENGTH_LEN
            if length > self.max_message_len:
                available = len(buf) - start
                self.stats.memcap_hits += 1
                self.stats.skipped_bytes += min(length, available)
                side.skip = max(0, length - available)
                pos = min(len(buf), start + length)
                continue
            if len(buf) - start < length:
                break
            if length:
                self._on_message(direction, bytes(buf[start:start + length]))
            pos = start + length
        del buf[:pos]

    def gap(self, direction: int, size: int) -> None:
        """Bytes lost: drop the partial message and wait for one that looks like DNS."""
        side = self._dirs[direction]
        self.stats.gaps += 1
        side.buf.clear()
        side.skip = 0
        side.resync = True

    def close(self, direction: int) -> None:
        side = self._dirs[direction]
        if side.buf:
            self.stats.parse_errors += 1
            side.buf.clear()


def looks_like_tcp_message(data: bytes) -> bool:
    """Suricata's probe_tcp on a header: a length prefix and a valid DNS header."""
    if len(data) < TCP_LENGTH_LEN + HEADER_LEN:
        return False
    length = int.from_bytes(data[:TCP_LENGTH_LEN], "big")
    header = parse_header(data[TCP_LENGTH_LEN:])
    return length >= HEADER_LEN and header_valid(header[2], header[1], length)
