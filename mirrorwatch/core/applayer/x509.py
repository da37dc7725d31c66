"""A compact DER reader for the X.509 fields Suricata logs from a TLS certificate.

Subject and issuer are rendered as Suricata does through the x509-parser
crate (0.15): RDNs in certificate order joined by ", ", the attributes of one
RDN joined by " + ", each ``SN=value`` where SN is the abbreviation
(CN, C, L, ST, O, OU, DC, Email), else the OID registry's short name, else
``OID(1.2.3)``. Values of string types are decoded (a value that is not valid
UTF-8, or UTF-16 for BMPString, makes the whole name
``<X509Error: Invalid X.509 name>``); other value types are upper-case hex.
Serial: the INTEGER's content bytes as upper-case hex joined by ':'.
Fingerprint: SHA-1 of the DER, lower-case hex joined by ':'.
Validity: ``YYYY-MM-DDTHH:MM:SS`` in UTC.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

TAG_INTEGER = 0x02
TAG_OID = 0x06
TAG_UTF8 = 0x0C
TAG_SEQUENCE = 0x30
TAG_SET = 0x31
TAG_UTCTIME = 0x17
TAG_GENERALIZEDTIME = 0x18
TAG_BMPSTRING = 0x1E
TAG_VERSION = 0xA0
MAX_LENGTH_OCTETS = 4
UTCTIME_PIVOT = 50
ZONE_OFFSET_LEN = 5
INVALID_NAME = "<X509Error: Invalid X.509 name>"

# Universal string types x509-parser decodes as UTF-8: Numeric, Printable,
# T61, Videotex, IA5, Graphic, Visible, General, UTF8, ObjectDescriptor.
_UTF8_STRING_TAGS = frozenset({0x12, 0x13, 0x14, 0x15, 0x16, 0x19, 0x1A, 0x1B, TAG_UTF8, 0x07})

_ABBREVIATIONS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "0.9.2342.19200300.100.1.25": "DC", "1.2.840.113549.1.9.1": "Email",
}

# Short names of attribute types in oid-registry 0.6 (features x509, pkcs9).
_SHORT_NAMES = {
    "0.9.2342.19200300.100.1.1": "uid",
    "1.3.6.1.4.1.311.60.2.1.1": "msJurisdictionLocality",
    "1.3.6.1.4.1.311.60.2.1.2": "msJurisdictionStateOrProvince",
    "1.3.6.1.4.1.311.60.2.1.3": "msJurisdictionCountry",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.3": "contentType",
    "1.2.840.113549.1.9.7": "challengePassword",
    "1.2.840.113549.1.9.20": "friendlyName",
    "2.5.4.0": "objectClass", "2.5.4.1": "aliasedEntryName", "2.5.4.2": "knowledgeInformation",
    "2.5.4.4": "surname", "2.5.4.5": "serialNumber", "2.5.4.9": "streetAddress",
    "2.5.4.12": "title", "2.5.4.13": "description", "2.5.4.14": "searchGuide",
    "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress", "2.5.4.17": "postalCode",
    "2.5.4.41": "name", "2.5.4.42": "givenName", "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier", "2.5.4.45": "uniqueIdentifier", "2.5.4.46": "dnQualifier",
}


class DerError(Exception):
    """Malformed DER; caught by ``parse_certificate``."""


class CertInfo(NamedTuple):
    subject: str
    issuer: str
    serial: str
    fingerprint: str
    notbefore: str
    notafter: str
    notbefore_ts: int
    notafter_ts: int


def read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``."""
    if pos + 2 > end:
        raise DerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in certificates")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        octets = first & 0x7F
        if octets == 0 or octets > MAX_LENGTH_OCTETS or pos + octets > end:
            raise DerError("bad length")
        length = int.from_bytes(data[pos:pos + octets], "big")
        pos += octets
    if pos + length > end:
        raise DerError("element runs past its container")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = read_tlv(data, pos, end)
    if got != tag:
        raise DerError(f"expected tag {tag:#x}, got {got:#x}")
    return start, stop


def _children(data: bytes, start: int, end: int):
    pos = start
    while pos < end:
        tag, cstart, cend = read_tlv(data, pos, end)
        yield tag, cstart, cend
        pos = cend


def oid_text(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80:
        raise DerError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _attribute_value(tag: int, raw: bytes) -> str:
    if tag in _UTF8_STRING_TAGS:
        return raw.decode("utf-8")
    if tag == TAG_BMPSTRING:
        return raw.decode("utf-16-be")
    return raw.hex().upper()


def _attribute_name(oid: str) -> str:
    return _ABBREVIATIONS.get(oid) or _SHORT_NAMES.get(oid) or f"OID({oid})"


def format_name(data: bytes, start: int, end: int) -> str:
    """The Name (SEQUENCE OF RDN) between ``start`` and ``end`` as x509-parser prints it."""
    rdns = []
    try:
        for tag, rstart, rend in _children(data, start, end):
            if tag != TAG_SET:
                raise DerError("RDN is not a SET")
            attributes = []
            for atag, astart, aend in _children(data, rstart, rend):
                if atag != TAG_SEQUENCE:
                    raise DerError("attribute is not a SEQUENCE")
                ostart, oend = _expect(data, astart, aend, TAG_OID)
                vtag, vstart, vend = read_tlv(data, oend, aend)
                value = _attribute_value(vtag, data[vstart:vend])
                attributes.append(f"{_attribute_name(oid_text(data[ostart:oend]))}={value}")
            rdns.append(" + ".join(attributes))
    except UnicodeDecodeError:
        return INVALID_NAME
    return ", ".join(rdns)


def _parse_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == TAG_UTCTIME:
        year = int(text[:2])
        text = f"{2000 + year if year < UTCTIME_PIVOT else 1900 + year}{text[2:]}"
    elif tag != TAG_GENERALIZEDTIME:
        raise DerError("validity is not a time")
    if text.endswith("Z"):
        body, zone = text[:-1], ""
    elif len(text) > ZONE_OFFSET_LEN and text[-ZONE_OFFSET_LEN] in "+-":
        body, zone = text[:-ZONE_OFFSET_LEN], text[-ZONE_OFFSET_LEN:]
    else:
        raise DerError("time without a zone")
    whole = body.split(".")[0]
    if len(whole) == len("YYYYMMDDHHMM"):
        whole += "00"
    if len(whole) != len("YYYYMMDDHHMMSS") or not whole.isdigit():
        raise DerError("bad time")
    moment = datetime(int(whole[0:4]), int(whole[4:6]), int(whole[6:8]), int(whole[8:10]), int(whole[10:12]),
                      int(whole[12:14]), tzinfo=UTC)  # ValueError when out of range, as strptime's
    if zone:
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        moment = moment - offset if zone[0] == "+" else moment + offset
    return moment


def _validity(data: bytes, start: int, end: int) -> tuple[datetime, datetime]:
    times = [(tag, data[s:e]) for tag, s, e in _children(data, start, end)]
    if len(times) != 2:
        raise DerError("validity needs two times")
    try:
        return _parse_time(*times[0]), _parse_time(*times[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise DerError("bad time") from exc


def _timestamp_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def parse_certificate(der: bytes) -> CertInfo | None:
    """The logged fields of one DER certificate, None when it does not parse."""
    try:
        cstart, cend = _expect(der, 0, len(der), TAG_SEQUENCE)
        tstart, tend = _expect(der, cstart, cend, TAG_SEQUENCE)
        fields = list(_children(der, tstart, tend))
        if fields and fields[0][0] == TAG_VERSION:
            fields = fields[1:]
        if len(fields) < 6:
            raise DerError("short TBSCertificate")
        (stag, sstart, send), algorithm, issuer, validity, subject = fields[:5]
        if stag != TAG_INTEGER or send == sstart:
            raise DerError("serial is not an INTEGER")
        if any(part[0] != TAG_SEQUENCE for part in (algorithm, issuer, validity, subject)):
            raise DerError("TBSCertificate field is not a SEQUENCE")
        notbefore, notafter = _validity(der, validity[1], validity[2])
        return CertInfo(
            subject=format_name(der, subject[1], subject[2]),
            issuer=format_name(der, issuer[1], issuer[2]),
            serial=":".join(f"{b:02X}" for b in der[sstart:send]),
            fingerprint=":".join(f"{b:02x}" for b in hashlib.sha1(der).digest()),
            notbefore=_timestamp_text(notbefore), notafter=_timestamp_text(notafter),
            notbefore_ts=int(notbefore.timestamp()), notafter_ts=int(notafter.timestamp()),
        )
    except (DerError, IndexError, ValueError):
        return None
