"""DNS wire format: header, names with defensive decompression, records.

The parsing rules follow Suricata (rust/src/dns/parser.rs): a name is at most
``MAX_NAME_LEN`` characters (longer names are truncated and flagged), at most
``MAX_NAME_SEGMENTS`` labels/pointers are followed (then the name is cut, or
the message rejected when no pointer was followed yet), a pointer to itself
is a loop. TXT rdata becomes one record per character-string, empty rdata
gives no record, and the additional section is walked only to tell whether
the message is well formed (``DnsMessage.complete``).

Every function here is pure; malformed input raises ``DnsMalformed``, which
the message-level ``parse_message`` turns into ``None``. The name steps of a
whole message are bounded too (``_Message``).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from mirrorwatch.core.applayer.common import string_from_bytes as _text

HEADER_LEN = 12
MAX_NAME_LEN = 1025
MAX_NAME_SEGMENTS = 255
MIN_NAME_STEPS = 4096

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_Z = 0x0040
OPCODE_SHIFT = 11
OPCODE_MASK = 0xF
RCODE_MASK = 0x000F

# DNSName flags (Suricata's DNSNameFlags).
NAME_INFINITE_LOOP = 0x01
NAME_TRUNCATED = 0x02
NAME_LABEL_LIMIT = 0x04

_LABEL_KIND_MASK = 0xC0
_POINTER = 0xC0
_POINTER_OFFSET_MASK = 0x3FFF
_LABEL_SEPARATOR = 0x2E  # '.'

RR_A = 1
RR_NS = 2
RR_CNAME = 5
RR_SOA = 6
RR_NULL = 10
RR_PTR = 12
RR_MX = 15
RR_TXT = 16
RR_AAAA = 28
RR_SRV = 33
RR_SSHFP = 44

_HEADER = struct.Struct("!6H")
_QUERY_TAIL = struct.Struct("!HH")
_RR_TAIL = struct.Struct("!HHIH")
_SOA_TAIL = struct.Struct("!5I")
_SRV_HEAD = struct.Struct("!3H")


class DnsMalformed(Exception):
    """The message does not parse; caught by ``parse_message``."""


class DnsName(NamedTuple):
    value: bytes
    flags: int


class DnsQuery(NamedTuple):
    """One question. ``rrname`` and ``rrtype`` first, as the rules use them."""

    rrname: bytes
    rrtype: int
    rrclass: int = 1
    truncated: bool = False


class DnsRecord(NamedTuple):
    """One answer/authority record.

    ``rdata`` is the text Suricata logs for A/AAAA/CNAME/MX/NS/PTR/TXT/NULL
    and a dig-style line for SOA/SRV/SSHFP; ``detail`` is the EVE object for
    those three (("soa", {...})), None otherwise.
    """

    rrname: bytes
    rrtype: int
    ttl: int
    rdata: str | None
    detail: tuple[str, dict] | None = None
    rrname_truncated: bool = False
    rdata_truncated: bool = False
    rdata_name: bytes | None = None


class DnsMessage(NamedTuple):
    dns_id: int
    flags: int
    counts: tuple[int, int, int, int]
    queries: tuple[DnsQuery, ...]
    answers: tuple[DnsRecord, ...]
    authorities: tuple[DnsRecord, ...]
    name_flags: int
    complete: bool

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & OPCODE_MASK

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK


def header_valid(counts: tuple[int, ...], flags: int, length: int) -> bool:
    """Suricata's probe_header_validity: the record counts fit ``length`` (7.0's
    size test), a message without records is a bare header and a query has a
    question (main's additions)."""
    records = sum(counts)
    if HEADER_LEN + 2 * records > length:
        return False
    if records == 0 and length > HEADER_LEN:
        return False
    return not (not flags & FLAG_QR and counts[0] == 0)


def parse_header(msg: bytes) -> tuple[int, int, tuple[int, int, int, int]] | None:
    if len(msg) < HEADER_LEN:
        return None
    dns_id, flags, qd, an, ns, ar = _HEADER.unpack_from(msg)
    return dns_id, flags, (qd, an, ns, ar)


class _Message:
    """One message being parsed, with its budget of name steps (labels and pointers).

    Suricata bounds each name (``MAX_NAME_SEGMENTS``); the budget also bounds the
    whole message, so thousands of records pointing into long pointer chains
    cannot make one datagram cost seconds: ``max(MIN_NAME_STEPS, len(message))``.
    """

    __slots__ = ("data", "steps")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.steps = max(MIN_NAME_STEPS, len(data))

    def name(self, pos: int, end: int) -> tuple[DnsName, int]:
        """The name at ``pos`` (labels before the first pointer end by ``end``), and
        the offset just past it in the original data."""
        msg = self.data
        name = bytearray()
        flags = 0
        after_pointer = -1
        limit = end
        count = 0
        while pos < limit:
            length = msg[pos]
            if length == 0:
                pos += 1
                break
            if length & _LABEL_KIND_MASK == 0:
                if pos + 1 + length > limit:
                    raise DnsMalformed("label runs past its data")
                if not flags & NAME_TRUNCATED:
                    if name:
                        name.append(_LABEL_SEPARATOR)
                    name += msg[pos + 1:pos + 1 + length]
                pos += 1 + length
            elif length & _LABEL_KIND_MASK == _POINTER:
                if pos + 2 > limit:
                    raise DnsMalformed("pointer runs past its data")
                offset = ((length << 8) | msg[pos + 1]) & _POINTER_OFFSET_MASK
                if offset > len(msg):
                    raise DnsMalformed("pointer past the message")
                if offset == pos and limit == len(msg):  # Suricata's self-reference test
                    flags |= NAME_INFINITE_LOOP
                    if after_pointer < 0:
                        raise DnsMalformed("name points to itself")
                    break
                if after_pointer < 0:
                    after_pointer = pos + 2
                pos, limit = offset, len(msg)
            else:
                raise DnsMalformed("reserved label type")
            count += 1
            self.steps -= 1
            if self.steps < 0:
                raise DnsMalformed("name steps of the message exhausted")
            if count > MAX_NAME_SEGMENTS:
                flags |= NAME_LABEL_LIMIT
                if after_pointer < 0:
                    raise DnsMalformed("too many labels")
                flags |= NAME_TRUNCATED
                break
            if len(name) > MAX_NAME_LEN:
                del name[MAX_NAME_LEN:]
                flags |= NAME_TRUNCATED
                if after_pointer >= 0:
                    break
        return DnsName(bytes(name), flags), (after_pointer if after_pointer >= 0 else pos)


def parse_name(msg: bytes, pos: int, end: int) -> tuple[DnsName, int]:
    """The name at ``pos`` of ``msg`` (labels before the first pointer end by ``end``)."""
    return _Message(msg).name(pos, end)


def format_address(addr: bytes) -> str:
    """Suricata's dns_print_addr: dotted quad, or 8 uncompressed hex groups."""
    if len(addr) == 4:
        return ".".join(str(b) for b in addr)
    if len(addr) == 16:
        return ":".join(addr[i:i + 2].hex() for i in range(0, 16, 2))
    return ""


# Each rdata decoder: (message, start, end) -> [(rdata text, detail, name, name flags)].
def _rdata_address(m: _Message, start: int, end: int) -> list:
    return [(format_address(m.data[start:end]), None, None, 0)]


def _rdata_name(m: _Message, start: int, end: int) -> list:
    name, _ = m.name(start, end)
    return [(_text(name.value), None, name.value, name.flags)]


def _rdata_mx(m: _Message, start: int, end: int) -> list:
    if start + 2 > end:
        raise DnsMalformed("short MX")
    return _rdata_name(m, start + 2, end)


def _rdata_txt(m: _Message, start: int, end: int) -> list:
    msg = m.data
    out = []
    pos = start
    while pos < end:
        length = msg[pos]
        if pos + 1 + length > end:
            if not out:
                raise DnsMalformed("TXT string runs past its data")
            break
        out.append((_text(msg[pos + 1:pos + 1 + length]), None, None, 0))
        pos += 1 + length
    return out


def _rdata_null(m: _Message, start: int, end: int) -> list:
    return [(_text(m.data[start:end]), None, None, 0)]


def _rdata_soa(m: _Message, start: int, end: int) -> list:
    mname, pos = m.name(start, end)
    rname, pos = m.name(pos, end)
    if pos + _SOA_TAIL.size > end:
        raise DnsMalformed("short SOA")
    serial, refresh, retry, expire, minimum = _SOA_TAIL.unpack_from(m.data, pos)
    soa: dict = {"mname": _text(mname.value)}
    if mname.flags & NAME_TRUNCATED:
        soa["mname_truncated"] = True
    soa["rname"] = _text(rname.value)
    if rname.flags & NAME_TRUNCATED:
        soa["rname_truncated"] = True
    soa.update(serial=serial, refresh=refresh, retry=retry, expire=expire, minimum=minimum)
    text = f"{soa['mname']} {soa['rname']} {serial} {refresh} {retry} {expire} {minimum}"
    return [(text, ("soa", soa), None, mname.flags | rname.flags)]


def _rdata_srv(m: _Message, start: int, end: int) -> list:
    if start + _SRV_HEAD.size > end:
        raise DnsMalformed("short SRV")
    priority, weight, port = _SRV_HEAD.unpack_from(m.data, start)
    target, _ = m.name(start + _SRV_HEAD.size, end)
    srv = {"priority": priority, "weight": weight, "port": port, "name": _text(target.value)}
    return [(f"{priority} {weight} {port} {srv['name']}", ("srv", srv), target.value, target.flags)]


def _rdata_sshfp(m: _Message, start: int, end: int) -> list:
    msg = m.data
    if start + 2 > end:
        raise DnsMalformed("short SSHFP")
    fingerprint = ":".join(f"{b:02x}" for b in msg[start + 2:end])
    sshfp = {"fingerprint": fingerprint, "algo": msg[start], "type": msg[start + 1]}
    return [(f"{msg[start]} {msg[start + 1]} {fingerprint}", ("sshfp", sshfp), None, 0)]


def _rdata_unknown(_m: _Message, _start: int, _end: int) -> list:
    return [(None, None, None, 0)]


_RDATA_DECODERS = {
    RR_A: _rdata_address, RR_AAAA: _rdata_address,
    RR_CNAME: _rdata_name, RR_NS: _rdata_name, RR_PTR: _rdata_name, RR_MX: _rdata_mx,
    RR_TXT: _rdata_txt, RR_NULL: _rdata_null,
    RR_SOA: _rdata_soa, RR_SRV: _rdata_srv, RR_SSHFP: _rdata_sshfp,
}


def _parse_query(m: _Message, pos: int) -> tuple[DnsQuery, int, int]:
    name, pos = m.name(pos, len(m.data))
    if pos + _QUERY_TAIL.size > len(m.data):
        raise DnsMalformed("short question")
    rrtype, rrclass = _QUERY_TAIL.unpack_from(m.data, pos)
    query = DnsQuery(name.value, rrtype, rrclass, bool(name.flags & NAME_TRUNCATED))
    return query, pos + _QUERY_TAIL.size, name.flags


def _parse_record(m: _Message, pos: int, out: list[DnsRecord]) -> tuple[int, int]:
    """Append the record(s) at ``pos`` to ``out``; return (next offset, name flags)."""
    name, pos = m.name(pos, len(m.data))
    if pos + _RR_TAIL.size > len(m.data):
        raise DnsMalformed("short record header")
    rrtype, _rrclass, ttl, rdlength = _RR_TAIL.unpack_from(m.data, pos)
    start = pos + _RR_TAIL.size
    end = start + rdlength
    if end > len(m.data):
        raise DnsMalformed("rdata runs past the message")
    flags = name.flags
    if rdlength:
        decoder = _RDATA_DECODERS.get(rrtype, _rdata_unknown)
        for text, detail, rdata_name, rdata_flags in decoder(m, start, end):
            flags |= rdata_flags
            out.append(DnsRecord(name.value, rrtype, ttl, text, detail,
                                 bool(name.flags & NAME_TRUNCATED),
                                 bool(rdata_flags & NAME_TRUNCATED), rdata_name))
    return end, flags


def _parse_section(m: _Message, pos: int, count: int) -> tuple[list[DnsRecord], int, int]:
    records: list[DnsRecord] = []
    flags = 0
    for _ in range(count):
        pos, name_flags = _parse_record(m, pos, records)
        flags |= name_flags
    return records, pos, flags


def _walk_additionals(m: _Message, pos: int, count: int) -> bool:
    """True when the additional section parses and ends the message exactly."""
    scratch: list[DnsRecord] = []
    try:
        for _ in range(count):
            pos, _flags = _parse_record(m, pos, scratch)
            scratch.clear()
    except (DnsMalformed, IndexError, struct.error):
        return False
    return pos == len(m.data)


def parse_message(msg: bytes) -> DnsMessage | None:
    """Parse one DNS message; None when the header or a section is malformed.

    As Suricata (DNS parser of 7.0/main): the header must pass
    ``header_valid``, the questions and answers must parse, a malformed
    authority section is kept up to the failure point.
    """
    header = parse_header(msg)
    if header is None:
        return None
    dns_id, flags, counts = header
    if not header_valid(counts, flags, len(msg)):
        return None
    m = _Message(msg)
    try:
        pos = HEADER_LEN
        queries = []
        name_flags = 0
        for _ in range(counts[0]):
            query, pos, qflags = _parse_query(m, pos)
            queries.append(query)
            name_flags |= qflags
        answers, pos, aflags = _parse_section(m, pos, counts[1])
        name_flags |= aflags
    except (DnsMalformed, IndexError, struct.error):
        return None
    authorities: list[DnsRecord] = []
    complete = True
    try:
        for _ in range(counts[2]):
            pos, rflags = _parse_record(m, pos, authorities)
            name_flags |= rflags
        complete = _walk_additionals(m, pos, counts[3])
    except (DnsMalformed, IndexError, struct.error):
        complete = False
    return DnsMessage(dns_id, flags, counts, tuple(queries), tuple(answers),
                      tuple(authorities), name_flags, complete)
