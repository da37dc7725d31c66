"""Application protocol detection from the first bytes of each flow direction.

TCP: each direction runs the matchers of its table over its first
``probe_window`` bytes, in priority order: Suricata's detection patterns
(app-layer-detect-proto: http methods / "HTTP/1.x", TLS record headers,
EHLO/HELO, FTP commands and the "220 (" banner, "SSH-", the SMB magic after
a NetBIOS header, the DCERPC v5 header) first, then probing parsers (DNS's
length prefix and message). A matcher answers a protocol, "no" or "wait for
more bytes"; a direction decides when a matcher answers a protocol and every
matcher before it answered "no", so the answer does not depend on how the
bytes were segmented.

Where Suricata relies on ports (its probing parsers for DNS, the FTP and SMTP
banners, SMB session setup), detection here is by content: a DNS message must
parse completely, have a question and the direction's QR bit; a "220" banner
names FTP or SMTP; a request line with an unknown upper-case method and an
HTTP/1.x version is HTTP; "AUTH TLS"/"AUTH SSL" as the first command is FTP;
the DCERPC header also needs a connection-oriented PDU type and a fragment
length that holds it (SOCKS5 replies start 05 00 too).

Until the flow's protocol is known each direction's bytes are kept, once, in
its own buffer (the parser then made replays them, ``kept``; ``memuse`` is what
they hold); the caller charges them against ``app-layer.memcap``.

The first direction to decide sets the flow's protocol (Suricata's
app-layer.c keeps the protocol whose parser already ran); a later, different
answer from the other direction is counted in ``mismatch``. When both
directions said "no", or a direction sent ``max_detect_bytes`` without a
decision, the flow is ``FAILED``.

UDP: by the datagram's ports (either), then the protocol's probe, as
Suricata's probing parsers (``UDP_PROBES``): DNS on 53 when the datagram
passes rs_dns_probe; NTP on 123 when it is an NTPv3/v4 header (the
ntp-parser crate's parse_ntp: 48 bytes, version 3 or 4); DHCP on 67 and 68
when it holds a whole BOOTP header (rs_dhcp_probing_parser: 240 bytes).
NTP and DHCP are named only (no parser here), as SMTP and FTP are on TCP.
"""

from __future__ import annotations

from collections.abc import Callable

from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.dns_wire import (
    FLAG_QR,
    HEADER_LEN,
    header_valid,
    parse_header,
    parse_message,
)

HTTP = "http"
TLS = "tls"
DNS = "dns"
SMTP = "smtp"
FTP = "ftp"
SSH = "ssh"
SMB = "smb"
DCERPC = "dcerpc"
NTP = "ntp"
DHCP = "dhcp"
FAILED = "failed"

DEFAULT_PROBE_WINDOW = 4096
DEFAULT_MAX_DETECT_BYTES = 100_000
DNS_UDP_PORTS = frozenset({53})
NTP_UDP_PORTS = frozenset({123})  # Suricata's default port for its NTP probe
DHCP_UDP_PORTS = frozenset({67, 68})
NTP_HEADER_LEN = 48  # an NTPv3/v4 header, without extensions or authenticator
NTP_VERSIONS = (3, 4)
DHCP_HEADER_LEN = 240  # op .. the magic cookie: what parse_header reads


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


WAIT = _Wait()
Verdict = str | None | _Wait
Matcher = Callable[[bytes], Verdict]

HTTP_METHODS = frozenset({
    b"GET", b"PUT", b"POST", b"HEAD", b"TRACE", b"OPTIONS", b"CONNECT", b"DELETE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"CHECKOUT",
    b"UNCHECKOUT", b"CHECKIN", b"UPDATE", b"LABEL", b"REPORT", b"MKWORKSPACE", b"MKACTIVITY",
    b"MERGE", b"INVALID", b"VERSION-CONTROL", b"BASELINE-CONTROL",
})
HTTP_METHOD_SEPARATORS = b" \t"
MAX_METHOD_LEN = 32
HTTP1_VERSIONS = (b"HTTP/0.9", b"HTTP/1.0", b"HTTP/1.1")
TCP_DNS_PREFIX = 2
NBSS_SESSION_MESSAGE = 0x00
NBSS_TYPES = frozenset({0x00, 0x81, 0x82, 0x83, 0x84, 0x85})
NBSS_HEADER_LEN = 4
NBSS_SMALL_FIRST_MESSAGE = 256
SMB_MAGICS = (b"\xffSMB", b"\xfeSMB", b"\xfdSMB")
SMB_MAGIC_LEN = 4
DCERPC_HEADER_LEN = 16
DCERPC_VERSION = b"\x05\x00"
DCERPC_DREP_LITTLE_ENDIAN = 0x10
DCERPC_CO_PDU_TYPES = frozenset({0, 2, 3, 11, 12, 13, 14, 15, 16, 17, 18, 19})
BANNER_220 = (b"220 ", b"220-")
_UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_METHOD_CHARS = _UPPER | frozenset(b"0123456789_-")


def _prefix(proto: str, pattern: bytes, offset: int = 0, nocase: bool = False) -> Matcher:
    """Match ``pattern`` at ``offset`` (Suricata's offset/depth content pattern)."""
    wanted = pattern.lower() if nocase else pattern

    def match(buf: bytes) -> Verdict:
        seen = buf[offset:offset + len(pattern)]
        if nocase:
            seen = seen.lower()
        if not wanted.startswith(seen):
            return None
        if len(buf) < offset + len(pattern):
            return WAIT
        return proto
    return match


def _any_of(*matchers: Matcher) -> Matcher:
    def match(buf: bytes) -> Verdict:
        verdicts = [m(buf) for m in matchers]
        found = next((v for v in verdicts if isinstance(v, str)), None)
        if found is not None:
            return found
        return WAIT if WAIT in verdicts else None
    return match


def _http_method(buf: bytes) -> Verdict:
    """A registered method followed by a space or a tab, any case."""
    head = buf[:MAX_METHOD_LEN].upper()
    for index, byte in enumerate(head):
        if byte in HTTP_METHOD_SEPARATORS:
            return HTTP if head[:index] in HTTP_METHODS else None
    if any(method.startswith(head) for method in HTTP_METHODS):
        return WAIT
    return None


def _method_token_ok(token: bytes, terminated: bool) -> bool:
    """An upper-case method token (possibly still arriving when not ``terminated``)."""
    if len(token) > MAX_METHOD_LEN:
        return False
    if not token:
        return not terminated
    return token[0] in _UPPER and all(c in _METHOD_CHARS for c in token)


def _version_ok(text: bytes, complete: bool) -> bool:
    """An HTTP/1 version, or its start while the line is still arriving ("PRI * HTTP/2.0"
    is the HTTP/2 preface, not HTTP/1). A CR can only end the version."""
    if text.endswith(b"\r"):
        return text[:-1] in HTTP1_VERSIONS
    if complete:
        return text in HTTP1_VERSIONS
    return any(version.startswith(text) for version in HTTP1_VERSIONS)


def _http_request_line(buf: bytes) -> Verdict:
    """Any upper-case method token, a target and an HTTP/x.y version on the first line."""
    end = buf.find(b"\n")
    complete = end >= 0
    parts = (buf[:end] if complete else buf).split(b" ")
    if len(parts) > 3 or not _method_token_ok(parts[0], complete or len(parts) > 1):
        return None
    if len(parts) >= 2 and not all(0x21 <= c <= 0x7E for c in parts[1]):
        return None
    if len(parts) == 3 and (not parts[1] or not _version_ok(parts[2], complete)):
        return None
    if complete:
        return HTTP if len(parts) == 3 else None
    return WAIT


def _banner_220(buf: bytes) -> Verdict:
    """A 220 greeting naming FTP or SMTP (content stands in for Suricata's ports)."""
    verdict = _BANNER_START(buf)
    if verdict is not FTP:
        return verdict
    end = buf.find(b"\n")
    if end < 0:
        return WAIT
    line = buf[:end].upper()
    if b"SMTP" in line:
        return SMTP
    return FTP if b"FTP" in line else None


_BANNER_START = _any_of(*(_prefix(FTP, p) for p in BANNER_220))


def _dns_tcp(query: bool) -> Matcher:
    """Suricata's TCP DNS probe, strict: the whole first message parses, with a question."""
    def match(buf: bytes) -> Verdict:
        if len(buf) < TCP_DNS_PREFIX + HEADER_LEN:
            return WAIT
        length = int.from_bytes(buf[:TCP_DNS_PREFIX], "big")
        _dns_id, flags, counts = parse_header(buf[TCP_DNS_PREFIX:])
        if (not header_valid(counts, flags, length) or counts[0] == 0
                or bool(flags & FLAG_QR) == query):
            return None
        if len(buf) < TCP_DNS_PREFIX + length:
            return WAIT
        msg = parse_message(buf[TCP_DNS_PREFIX:TCP_DNS_PREFIX + length])
        return DNS if msg is not None and msg.complete else None
    return match


def _smb(buf: bytes) -> Verdict:
    """NetBIOS session message carrying an SMB1/2/3 header, possibly after a short NBSS message."""
    if not buf:
        return WAIT
    if buf[0] not in NBSS_TYPES:
        return None
    if len(buf) < NBSS_HEADER_LEN + SMB_MAGIC_LEN:
        return WAIT
    if buf[0] == NBSS_SESSION_MESSAGE:
        return SMB if buf[NBSS_HEADER_LEN:NBSS_HEADER_LEN + SMB_MAGIC_LEN] in SMB_MAGICS else None
    first_len = int.from_bytes(buf[1:NBSS_HEADER_LEN], "big")
    if first_len >= NBSS_SMALL_FIRST_MESSAGE:
        return None
    second = NBSS_HEADER_LEN + first_len
    if len(buf) < second + NBSS_HEADER_LEN + SMB_MAGIC_LEN:
        return WAIT
    magic = buf[second + NBSS_HEADER_LEN:second + NBSS_HEADER_LEN + SMB_MAGIC_LEN]
    return SMB if buf[second] == NBSS_SESSION_MESSAGE and magic in SMB_MAGICS else None


def _dcerpc(buf: bytes) -> Verdict:
    """DCERPC v5.0 connection-oriented header: Suricata's drep check, plus a known PDU
    type and a fragment length that holds the header (SOCKS5 also starts 05 00)."""
    verdict = _prefix(DCERPC, DCERPC_VERSION)(buf)
    if verdict is not DCERPC:
        return verdict
    if len(buf) < DCERPC_HEADER_LEN:
        return WAIT
    order = "little" if buf[4] & DCERPC_DREP_LITTLE_ENDIAN else "big"
    frag_len = int.from_bytes(buf[8:10], order)
    auth_len = int.from_bytes(buf[10:12], order)
    sane = (buf[2] in DCERPC_CO_PDU_TYPES and buf[4] & 0xEE == 0 and buf[5] <= 3
            and frag_len >= DCERPC_HEADER_LEN + auth_len)
    return DCERPC if sane else None


def _tls_records(types: bytes) -> Matcher:
    return _any_of(*(_prefix(TLS, bytes([t, 3, v])) for t in types for v in range(4)))


def _sslv2_client_hello(buf: bytes) -> Verdict:
    """Suricata's "|01 00 02|" at offset 2 confirmed by the SSLv2 record header."""
    verdict = _prefix(TLS, b"\x01\x00\x02", offset=2)(buf)
    if verdict is TLS and not (buf[0] & 0x80 and buf[2] == 1):
        return None
    return verdict


_TO_SERVER_MATCHERS: tuple[Matcher, ...] = (
    _http_method,
    _any_of(_tls_records(b"\x16\x01"), _sslv2_client_hello),
    _any_of(_prefix(SMTP, b"EHLO", nocase=True), _prefix(SMTP, b"HELO", nocase=True)),
    _any_of(_prefix(FTP, b"FEAT", nocase=True), _prefix(FTP, b"USER "),
            _prefix(FTP, b"PORT ", nocase=True), _prefix(FTP, b"AUTH TLS", nocase=True),
            _prefix(FTP, b"AUTH SSL", nocase=True)),
    _prefix(SSH, b"SSH-"),
    _smb,
    _dcerpc,
    _http_request_line,
    _dns_tcp(query=True),
)

_TO_CLIENT_MATCHERS: tuple[Matcher, ...] = (
    _any_of(*(_prefix(HTTP, v, nocase=True) for v in HTTP1_VERSIONS)),
    _tls_records(b"\x15\x16\x17"),
    _any_of(_prefix(FTP, b"220 (", nocase=True), _banner_220),
    _prefix(SSH, b"SSH-"),
    _smb,
    _dcerpc,
    _dns_tcp(query=False),
)

MATCHERS = {TO_SERVER: _TO_SERVER_MATCHERS, TO_CLIENT: _TO_CLIENT_MATCHERS}


def classify(buf: bytes, matchers: tuple[Matcher, ...], window_full: bool) -> Verdict:
    """The protocol of a direction's first bytes, None (no match), or WAIT."""
    for matcher in matchers:
        verdict = matcher(buf)
        if isinstance(verdict, str):
            return verdict
        if verdict is WAIT and not window_full:
            return WAIT
    return None


class _Direction:
    __slots__ = ("buf", "done", "proto", "seen")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seen = 0
        self.done = False
        self.proto: str | None = None


class ProtoDetect:
    """Protocol detection of one TCP flow."""

    __slots__ = ("_dirs", "max_detect_bytes", "mismatch", "probe_window", "proto")

    def __init__(self, probe_window: int = DEFAULT_PROBE_WINDOW,
                 max_detect_bytes: int = DEFAULT_MAX_DETECT_BYTES) -> None:
        self.probe_window = probe_window
        self.max_detect_bytes = max_detect_bytes
        self.proto: str | None = None
        self.mismatch = False
        self._dirs = (_Direction(), _Direction())

    def kept(self, direction: int) -> bytearray:
        """Every byte ``direction`` sent so far (for the parser made once the protocol is known)."""
        return self._dirs[direction].buf

    @property
    def memuse(self) -> int:
        """Bytes the kept buffers hold."""
        return len(self._dirs[0].buf) + len(self._dirs[1].buf)

    def direction_proto(self, direction: int) -> str | None:
        """What ``direction`` alone detected (None while undecided or without a match)."""
        return self._dirs[direction].proto

    def probe(self, direction: int, data: bytes | memoryview) -> str | None:
        """Feed the next bytes of ``direction``; the flow's protocol, None, or FAILED."""
        if self.proto == FAILED:
            return FAILED
        side = self._dirs[direction]
        side.seen += len(data)
        side.buf += data
        if not side.done:
            self._classify(direction, side)
        if self.proto is None and self._undecidable(side):
            self.proto = FAILED
        return self.proto

    def _classify(self, direction: int, side: _Direction) -> None:
        window_full = len(side.buf) >= self.probe_window
        verdict = classify(bytes(side.buf[:self.probe_window]), MATCHERS[direction], window_full)
        if verdict is WAIT:
            return
        side.done = True
        side.proto = verdict
        if verdict is None:
            return
        if self.proto is None:
            self.proto = verdict
        elif self.proto != verdict:
            self.mismatch = True

    def _undecidable(self, side: _Direction) -> bool:
        dirs = self._dirs
        first, second = dirs[0], dirs[1]
        return (first.done and second.done) or side.seen >= self.max_detect_bytes


def _dns(payload) -> tuple[str, object] | None:
    msg = parse_message(bytes(payload))
    return (DNS, msg) if msg is not None else None


def _ntp(payload) -> tuple[str, object] | None:
    return (NTP, None) if len(payload) >= NTP_HEADER_LEN and payload[0] >> 3 & 7 in NTP_VERSIONS else None


def _dhcp(payload) -> tuple[str, object] | None:
    return (DHCP, None) if len(payload) >= DHCP_HEADER_LEN else None


# (ports, probe): a datagram to or from one of the ports goes through the probe
UDP_PROBES = ((DNS_UDP_PORTS, _dns), (NTP_UDP_PORTS, _ntp), (DHCP_UDP_PORTS, _dhcp))


def probe_udp(payload: bytes | memoryview, sport: int, dport: int) -> tuple[str, object] | None:
    """The protocol of a UDP datagram and the message its probe parsed (the parser takes it
    rather than parsing the datagram again), or None (see the module's text)."""
    for ports, probe in UDP_PROBES:
        if sport in ports or dport in ports:
            found = probe(payload)
            if found is not None:
                return found
    return None
