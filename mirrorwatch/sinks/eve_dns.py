"""EVE ``dns`` objects as Suricata 8 and later write them (rust/src/dns/log.rs, output-json-dns.c).

Each DNS transaction is one message (``core.applayer.dns``). Two formats, chosen
by ``eve-log.dns.version`` (Suricata's ``outputs.eve-log.types.dns.version``):
version 2, the default here (the format SIEM pipelines built for Suricata 6/7
parse), writes one ``"type": "query"`` event per question of a query and one
``"type": "answer"`` event per response; version 3 (Suricata 8's default) one
``dns`` event per message, ``"type": "request"`` or ``"response"``, its header
flags, ``queries``, ``answers`` (detailed and grouped) and ``authorities``.
Alerts carry the version 3 object with detailed answers only (AlertJsonDns).
A message without a question is not logged as an event (SCDnsLogEnabled).
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import string_from_bytes
from mirrorwatch.core.applayer.dns_wire import (
    FLAG_AA,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    FLAG_Z,
    OPCODE_MASK,
    OPCODE_SHIFT,
    RCODE_MASK,
    DnsMessage,
    DnsRecord,
)

VERSION_2 = 2
VERSION_3 = 3
DEFAULT_VERSION = VERSION_2  # eve-log.dns.version's default (Suricata 8's own default is 3)

# Suricata's dns_rrtype_string (its spellings kept).
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

_FLAG_KEYS = (("qr", FLAG_QR), ("aa", FLAG_AA), ("tc", FLAG_TC), ("rd", FLAG_RD),
              ("ra", FLAG_RA), ("z", FLAG_Z))


def rrtype_name(rrtype: int) -> str:
    return RRTYPE_NAMES.get(rrtype, str(rrtype))


def rcode_name(flags: int) -> str:
    """Suricata logs only the header's 4 rcode bits."""
    rcode = flags & RCODE_MASK
    return RCODE_NAMES.get(rcode, str(rcode))


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


def _header(out: dict, flags: int) -> None:
    """flags (hex), the set flag bits by name, the opcode."""
    out["flags"] = format(flags, "x")
    out.update((key, True) for key, bit in _FLAG_KEYS if flags & bit)
    out["opcode"] = (flags >> OPCODE_SHIFT) & OPCODE_MASK


def _answers(out: dict, msg: DnsMessage, grouped: bool) -> None:
    if msg.answers:
        out["answers"] = [_record_detail(r) for r in msg.answers]
        if grouped:
            out["grouped"] = _grouped(msg.answers)
    if msg.authorities:
        out["authorities"] = [_record_detail(r) for r in msg.authorities]


def _question(query) -> dict:
    out = {"rrname": string_from_bytes(query.rrname), "rrtype": rrtype_name(query.rrtype)}
    if query.truncated:
        out["rrname_truncated"] = True
    return out


def v3_object(tx, grouped: bool = True) -> dict:
    """The version 3 ``dns`` object of one message (log.rs log_json)."""
    msg = tx.message
    out: dict = {"version": VERSION_3, "type": "request" if tx.request is not None else "response",
                 "tx_id": tx.tx_id, "id": msg.dns_id}
    _header(out, msg.flags)
    out["rcode"] = rcode_name(msg.flags)
    if msg.queries:
        out["queries"] = [_question(q) for q in msg.queries]
    _answers(out, msg, grouped)
    return out


def _v2_query(tx, query) -> dict:
    """One question of a query (log.rs dns_log_query)."""
    request = tx.request
    out: dict = {"version": VERSION_2, "type": "query", "id": request.dns_id,
                 "rrname": string_from_bytes(query.rrname)}
    if query.truncated:
        out["rrname_truncated"] = True
    out["rrtype"] = rrtype_name(query.rrtype)
    out["tx_id"] = tx.tx_id
    if request.flags & FLAG_Z:
        out["z"] = True
    out["opcode"] = request.opcode
    return out


def _v2_answer(response: DnsMessage) -> dict:
    """The answer record of a response (log.rs dns_log_json_answer)."""
    out: dict = {"version": VERSION_2, "type": "answer", "id": response.dns_id}
    _header(out, response.flags)
    query = response.queries[0]
    out["rrname"] = string_from_bytes(query.rrname)
    if query.truncated:
        out["rrname_truncated"] = True
    out["rrtype"] = rrtype_name(query.rrtype)
    out["rcode"] = rcode_name(response.flags)
    _answers(out, response, grouped=True)
    return out


def _v2_records(tx) -> list[dict]:
    if tx.request is not None:
        return [_v2_query(tx, q) for q in tx.request.queries]
    return [_v2_answer(tx.response)]


def event_objects(tx, version: int = DEFAULT_VERSION) -> list[dict]:
    """The ``dns`` objects of the events one message gives (none for a message without a question)."""
    if not tx.message.queries:
        return []
    if version == VERSION_2:
        return _v2_records(tx)
    return [v3_object(tx)]


def alert_object(tx) -> dict:
    """The ``dns`` object of an alert on ``tx`` (AlertJsonDns: version 3, detailed answers)."""
    return v3_object(tx, grouped=False)
