"""DNS over UDP and TCP: transactions and Suricata's EVE dns (version 2) records.

A transaction pairs a query with the response carrying the same DNS id
(per flow). A query waits in a bounded list (``max_pending``); when the list
is full the oldest waiting query is closed unanswered. A response whose query
was not seen is a transaction of its own. Over TCP the 2-byte length prefix
frames the messages; a message longer than ``max_message_len`` is skipped
unbuffered.

Suricata 7 itself keeps queries and responses as separate transactions; the
EVE records built here carry the same fields (``tx_id`` numbers the pairs).
"""

from __future__ import annotations

from collections import OrderedDict

from mirrorwatch.core.applayer.common import (
    PROGRESS_COMPLETE,
    PROGRESS_NONE,
    TO_CLIENT,
    TO_SERVER,
    ParserStats,
    TxTracker,
    string_from_bytes,
)
from mirrorwatch.core.applayer.dns_wire import (
    FLAG_AA,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    FLAG_Z,
    HEADER_LEN,
    OPCODE_MASK,
    OPCODE_SHIFT,
    RCODE_MASK,
    DnsMessage,
    DnsRecord,
    header_valid,
    parse_header,
    parse_message,
)

DEFAULT_MAX_PENDING = 256
DEFAULT_MAX_MESSAGE_LEN = 0xFFFF
TCP_LENGTH_LEN = 2
EVE_VERSION = 2

# Suricata 7 rust/src/dns/log.rs dns_rrtype_string (its spellings kept).
RRTYPE_NAMES = {
    1: "A", 2: "NS", 3: "ND", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP",
    18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAPPT", 24: "SIG", 25: "KEY",
    26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 33: "SRV", 34: "ATMA", 35: "NAPTR",
    36: "KX", 37: "CERT", 38: "A6", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP",
    45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3",
    51: "NSEC3PARAM", 52: "TLSA", 55: "HIP", 59: "CDS", 60: "CDSNKEY", 65: "HTTPS", 99: "SPF",
    249: "TKEY", 250: "TSIG", 254: "MAILA", 255: "ANY", 256: "URI",
}

# Suricata's dns_rcode_string; it reads the header's 4 rcode bits, so 16+ never show.
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}


def rrtype_name(rrtype: int) -> str:
    return RRTYPE_NAMES.get(rrtype, str(rrtype))


def rcode_name(flags: int) -> str:
    """Suricata logs only the header's 4 rcode bits."""
    rcode = flags & RCODE_MASK
    return RCODE_NAMES.get(rcode, str(rcode))


class DnsStats(ParserStats):
    __slots__ = ("not_request", "skipped_bytes", "unanswered")

    def __init__(self) -> None:
        super().__init__()
        self.unanswered = 0
        self.not_request = 0
        self.skipped_bytes = 0


class DnsTransaction:
    """A query and its response (either may be missing)."""

    __slots__ = ("progress_tc", "progress_ts", "request", "response", "tx_id")

    def __init__(self, tx_id: int) -> None:
        self.tx_id = tx_id
        self.request: DnsMessage | None = None
        self.response: DnsMessage | None = None
        self.progress_ts = PROGRESS_NONE
        self.progress_tc = PROGRESS_NONE

    def _message(self) -> DnsMessage:
        return self.response if self.response is not None else self.request

    @property
    def dns_id(self) -> int:
        return self._message().dns_id

    @property
    def flags(self) -> int:
        """Header flags of the response, or of the query while unanswered."""
        return self._message().flags

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def qr(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def rcode(self) -> int | None:
        """Response code; None while there is no response."""
        return None if self.response is None else self.response.rcode

    @property
    def queries(self) -> tuple:
        """The questions of the query (Suricata's dns.query inspects requests only)."""
        return () if self.request is None else self.request.queries

    @property
    def answers(self) -> tuple[DnsRecord, ...]:
        return () if self.response is None else self.response.answers

    @property
    def authorities(self) -> tuple[DnsRecord, ...]:
        return () if self.response is None else self.response.authorities


class _DnsFlow:
    """Pairing of queries and responses shared by the UDP and TCP states."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.stats = DnsStats()
        self.failed = False
        self._tracker = TxTracker()
        self._pending: OrderedDict[int, DnsTransaction] = OrderedDict()

    @property
    def txs(self) -> list:
        return self._tracker.txs

    def updated(self) -> list:
        return self._tracker.updated()

    def pop_done(self) -> list:
        return self._tracker.pop_done()

    def _on_message(self, direction: int, payload: bytes) -> DnsTransaction | None:
        msg = parse_message(payload)
        if msg is None:
            self.stats.parse_errors += 1
            return None
        if direction == TO_SERVER:
            if msg.is_response:
                self.stats.not_request += 1
                return None
            return self._add_query(msg)
        return self._add_response(msg)

    def _new_tx(self) -> DnsTransaction:
        tx = DnsTransaction(self._tracker.next_id())
        self._tracker.add(tx)
        self.stats.txs += 1
        return tx

    def _add_query(self, msg: DnsMessage) -> DnsTransaction:
        tx = self._new_tx()
        tx.request = msg
        tx.progress_ts = PROGRESS_COMPLETE
        self._pending[tx.tx_id] = tx
        while len(self._pending) > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            self._close_unanswered(oldest)
        return tx

    def _add_response(self, msg: DnsMessage) -> DnsTransaction:
        tx = next((t for t in self._pending.values() if t.request.dns_id == msg.dns_id), None)
        if tx is None:
            tx = self._new_tx()
            tx.progress_ts = PROGRESS_COMPLETE
        else:
            del self._pending[tx.tx_id]
            self._tracker.touch(tx)
        tx.response = msg
        tx.progress_tc = PROGRESS_COMPLETE
        return tx

    def _close_unanswered(self, tx: DnsTransaction) -> None:
        tx.progress_tc = PROGRESS_COMPLETE
        self.stats.unanswered += 1
        self._tracker.touch(tx)

    def _flush_pending(self) -> None:
        while self._pending:
            _, tx = self._pending.popitem(last=False)
            self._close_unanswered(tx)


class DnsUdpState(_DnsFlow):
    """DNS over UDP for one flow: one message per datagram."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        super().__init__(max_pending)

    def parse(self, direction: int, payload: bytes | memoryview) -> DnsTransaction | None:
        """Parse one datagram; the transaction it created or completed, or None."""
        return self._on_message(direction, bytes(payload))

    def close(self, direction: int = TO_CLIENT) -> None:
        """No more responses (the flow ended): queries still waiting are closed unanswered."""
        if direction == TO_CLIENT:
            self._flush_pending()


class _TcpDirection:
    __slots__ = ("buf", "resync", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0
        self.resync = False


class DnsTcpState(_DnsFlow):
    """DNS over TCP for one flow: length-prefixed messages on each direction."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING,
                 max_message_len: int = DEFAULT_MAX_MESSAGE_LEN) -> None:
        super().__init__(max_pending)
        self.max_message_len = max_message_len
        self._dirs = (_TcpDirection(), _TcpDirection())

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
        if direction == TO_CLIENT:
            self._flush_pending()


def looks_like_tcp_message(data: bytes) -> bool:
    """Suricata's probe_tcp on a header: a length prefix and a valid DNS header."""
    if len(data) < TCP_LENGTH_LEN + HEADER_LEN:
        return False
    length = int.from_bytes(data[:TCP_LENGTH_LEN], "big")
    header = parse_header(data[TCP_LENGTH_LEN:])
    return length >= HEADER_LEN and header_valid(header[2], header[1], length)


# --- EVE -------------------------------------------------------------------

def _record_detail(record: DnsRecord) -> dict:
    out: dict = {"rrname": string_from_bytes(record.rrname)}
    if record.rrname_truncated:
        out["rrname_truncated"] = True
    out["rrtype"] = rrtype_name(record.rrtype)
    out["ttl"] = record.ttl
    if record.detail is not None:
        key, value = record.detail
        out[key] = value
    elif record.rdata is not None:
        out["rdata"] = record.rdata
        if record.rdata_truncated:
            out["rdata_truncated"] = True
    return out


def _grouped(answers: tuple[DnsRecord, ...]) -> dict:
    grouped: dict[str, list] = {}
    for record in answers:
        if record.detail is not None:
            value = record.detail[1]
        elif record.rdata is not None:
            value = record.rdata
        else:
            continue
        grouped.setdefault(rrtype_name(record.rrtype), []).append(value)
    return grouped


_FLAG_KEYS = (("qr", FLAG_QR), ("aa", FLAG_AA), ("tc", FLAG_TC), ("rd", FLAG_RD),
              ("ra", FLAG_RA), ("z", FLAG_Z))


def _query_record(tx: DnsTransaction, index: int) -> dict | None:
    request = tx.request
    if request is None or index >= len(request.queries):
        return None
    query = request.queries[index]
    out: dict = {"version": EVE_VERSION, "type": "query", "id": request.dns_id,
                 "rrname": string_from_bytes(query.rrname)}
    if query.truncated:
        out["rrname_truncated"] = True
    out["rrtype"] = rrtype_name(query.rrtype)
    out["tx_id"] = tx.tx_id
    if request.flags & FLAG_Z:
        out["z"] = True
    out["opcode"] = request.opcode
    return out


def _answer_record(tx: DnsTransaction) -> dict | None:
    response = tx.response
    if response is None or not response.queries:
        return None
    out: dict = {"version": EVE_VERSION, "type": "answer", "id": response.dns_id,
                 "flags": format(response.flags, "x")}
    out.update((key, True) for key, bit in _FLAG_KEYS if response.flags & bit)
    out["opcode"] = response.opcode
    query = response.queries[0]
    out["rrname"] = string_from_bytes(query.rrname)
    if query.truncated:
        out["rrname_truncated"] = True
    out["rrtype"] = rrtype_name(query.rrtype)
    out["rcode"] = rcode_name(response.flags)
    if response.answers:
        out["answers"] = [_record_detail(r) for r in response.answers]
        out["grouped"] = _grouped(response.answers)
    if response.authorities:
        out["authorities"] = [_record_detail(r) for r in response.authorities]
    return out


def eve_record(tx: DnsTransaction, direction: int, index: int = 0) -> dict | None:
    """The EVE ``dns`` object (version 2) Suricata 7 writes for one side of ``tx``.

    TO_SERVER: the query record of question ``index`` (Suricata writes one
    record per question). TO_CLIENT: the answer record, None when the
    response has no question (Suricata does not log it) or is missing.
    """
    if direction == TO_SERVER:
        return _query_record(tx, index)
    return _answer_record(tx)
