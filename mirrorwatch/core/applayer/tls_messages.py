"""TLS handshake message bodies (ClientHello, ServerHello, Certificate) as Suricata reads them.

Field order and failure handling follow TLSDecodeHandshakeHello: a bad length
before the extensions ends the parse without fingerprints; a malformed
extension ends the extension list (the fingerprints keep the extensions
before it). Versions: a ServerHello legacy version of TLS 1.3 or a 0x7fxx
draft means an early TLS 1.3 draft, whose ServerHello has no session id and
no compression method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mirrorwatch.core.applayer import ja
from mirrorwatch.core.applayer.x509 import CertInfo, parse_certificate

RANDOM_LEN = 32
CERT_LENGTH_LEN = 3
SNI_HOST_NAME = 0
SNI_MAX_LEN = 255

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SESSION_TICKET = 35
EXT_EARLY_DATA = 42
EXT_SUPPORTED_VERSIONS = 43

SSL_VERSION_2 = 0x0200
SSL_VERSION_3 = 0x0300
TLS_VERSION_10 = 0x0301
TLS_VERSION_12 = 0x0303
TLS_VERSION_13 = 0x0304
TLS13_PRE_DRAFT16 = 0x7F01
TLS13_DRAFT_MAJOR = 0x7F
TLS13_DRAFT16 = 0x7F10

# TLSVersionValid (app-layer-ssl.h): SSLv3 to TLS 1.3 and the TLS 1.3 drafts.
VALID_VERSIONS = frozenset(
    [SSL_VERSION_3, TLS_VERSION_10, 0x0302, TLS_VERSION_12, TLS_VERSION_13, TLS13_PRE_DRAFT16]
    + list(range(TLS13_DRAFT16, 0x7F1D)) + [0xFB14, 0xFB15, 0xFB16, 0xFB17, 0xFB1A])


class MessageError(Exception):
    """A length field does not fit; the message is cut here."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, size: int) -> bytes:
        if self.pos + size > self.end:
            raise MessageError("field runs past the message")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u16_list(self, size: int) -> list[int]:
        raw = self.take(size)
        return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, size - 1, 2)]

    def remaining(self) -> int:
        return self.end - self.pos


@dataclass(slots=True)
class Hello:
    """What one ClientHello or ServerHello carried."""

    client: bool
    legacy_version: int = 0
    version: int = 0
    draft_layout: bool = False
    supported_versions: list[int] = field(default_factory=list)
    session_id: bytes = b""
    ciphers: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    point_formats: list[int] = field(default_factory=list)
    signature_algorithms: list[int] = field(default_factory=list)
    alpn: list[bytes] = field(default_factory=list)
    sni: bytes | None = None
    session_ticket: bool = False
    early_data: bool = False
    complete: bool = False

    def ja3_string(self) -> str | None:
        if not self.complete:
            return None
        if self.client:
            return ja.ja3_string(self.legacy_version, self.ciphers, self.extensions,
                                 self.groups, self.point_formats)
        return ja.ja3s_string(self.legacy_version, self.ciphers[0], self.extensions)

    def ja4(self) -> str | None:
        if not self.client or not self.complete:
            return None
        return ja.ja4(self.ja4_version(), EXT_SERVER_NAME in self.extensions, self.ciphers,
                      self.extensions, self.signature_algorithms,
                      self.alpn[0] if self.alpn else None)

    def first_supported_version(self) -> int | None:
        """The first valid entry of supported_versions (Suricata skips GREASE and noise)."""
        return next((v for v in self.supported_versions if v in VALID_VERSIONS), None)

    def ja4_version(self) -> int:
        """Suricata: the highest of the legacy version and the first supported version."""
        offered = [v for v in (self.legacy_version, self.first_supported_version())
                   if v is not None and v not in ja.GREASE]
        return max(offered, default=0)


def _ext_sni(hello: Hello, r: _Reader) -> None:
    if not r.remaining():
        return
    r.u16()
    if r.u8() != SNI_HOST_NAME:
        raise MessageError("SNI type is not host_name")
    length = r.u16()
    if length == 0 or length > SNI_MAX_LEN:
        raise MessageError("SNI length out of range")
    name = r.take(length)
    if hello.sni is None:
        hello.sni = name


def _ext_supported_versions(hello: Hello, r: _Reader) -> None:
    if not r.remaining():
        return
    if hello.client:
        length = r.u8()
        if length < 2:
            raise MessageError("empty supported_versions")
        hello.supported_versions = r.u16_list(length)
        first_valid = hello.first_supported_version()
        if first_valid is not None:
            hello.version = first_valid
    else:
        hello.version = r.u16()
        hello.supported_versions = [hello.version]


def _ext_groups(hello: Hello, r: _Reader) -> None:
    if r.remaining():
        hello.groups = r.u16_list(r.u16())


def _ext_point_formats(hello: Hello, r: _Reader) -> None:
    if r.remaining():
        hello.point_formats = list(r.take(r.u8()))


def _ext_sigalgs(hello: Hello, r: _Reader) -> None:
    if not r.remaining():
        return
    length = r.u16()
    if length % 2:
        raise MessageError("odd signature_algorithms length")
    hello.signature_algorithms = r.u16_list(length)


def _ext_alpn(hello: Hello, r: _Reader) -> None:
    if not r.remaining():
        return
    length = r.u16()
    inner = _Reader(r.data, r.pos, r.pos + length)
    if inner.end > r.end:
        raise MessageError("ALPN list runs past the extension")
    while inner.remaining():
        length = inner.u8()
        if length > inner.remaining():
            break
        hello.alpn.append(inner.take(length))


def _ext_session_ticket(hello: Hello, _r: _Reader) -> None:
    hello.session_ticket = hello.client


def _ext_early_data(hello: Hello, _r: _Reader) -> None:
    hello.early_data = hello.client


_EXTENSION_DECODERS = {
    EXT_SERVER_NAME: _ext_sni, EXT_SUPPORTED_VERSIONS: _ext_supported_versions,
    EXT_SUPPORTED_GROUPS: _ext_groups, EXT_EC_POINT_FORMATS: _ext_point_formats,
    EXT_SIGNATURE_ALGORITHMS: _ext_sigalgs, EXT_ALPN: _ext_alpn,
    EXT_SESSION_TICKET: _ext_session_ticket, EXT_EARLY_DATA: _ext_early_data,
}


def _extensions(hello: Hello, r: _Reader) -> None:
    if r.remaining() < 2:
        return
    total = r.u16()
    if total > r.remaining():
        raise MessageError("extensions run past the message")
    end = r.pos + total
    while r.pos < end:
        ext_type = r.u16()
        length = r.u16()
        data = _Reader(r.data, r.pos, r.pos + length)
        if data.end > r.end:
            raise MessageError("extension runs past the message")
        r.pos = data.end
        decoder = _EXTENSION_DECODERS.get(ext_type)
        if decoder is not None:
            try:
                decoder(hello, data)
            except MessageError:
                return
        hello.extensions.append(ext_type)


def _draft_version(version: int) -> int:
    """Suricata folds 0x7f01-0x7f0f and a TLS 1.3 legacy version into "draft <16"."""
    if TLS13_PRE_DRAFT16 <= version < TLS13_DRAFT16 or version == TLS_VERSION_13:
        return TLS13_PRE_DRAFT16
    return version


def parse_hello(body: bytes, client: bool) -> Hello:
    """Decode a hello body; ``complete`` tells whether fingerprints can be computed."""
    hello = Hello(client=client)
    r = _Reader(body)
    try:
        hello.legacy_version = r.u16()
        hello.draft_layout = not client and (
            hello.legacy_version == TLS_VERSION_13 or hello.legacy_version >> 8 == TLS13_DRAFT_MAJOR)
        hello.version = _draft_version(hello.legacy_version)
        r.take(RANDOM_LEN)
        if not hello.draft_layout:
            hello.session_id = r.take(r.u8())
        if client:
            length = r.u16()
            if length % 2:
                raise MessageError("odd cipher suites length")
            hello.ciphers = r.u16_list(length)
        else:
            hello.ciphers = [r.u16()]
        if not hello.draft_layout:
            r.take(r.u8() if client else 1)
        _extensions(hello, r)
    except MessageError:
        return hello
    hello.complete = True
    return hello


def parse_certificate_message(body: bytes) -> tuple[list[bytes], CertInfo | None]:
    """The DER chain of a (TLS <= 1.2) Certificate message and the first cert's fields.

    As Suricata's TlsDecodeHSCertificates: a chain length that does not fit
    gives nothing, a certificate that does not fit ends the chain.
    """
    r = _Reader(body)
    certs: list[bytes] = []
    try:
        chain_len = int.from_bytes(r.take(CERT_LENGTH_LEN), "big")
        r.end = r.pos + chain_len
        if r.end > len(body):
            return [], None
        while r.remaining():
            certs.append(r.take(int.from_bytes(r.take(CERT_LENGTH_LEN), "big")))
    except MessageError:
        pass
    return certs, (parse_certificate(certs[0]) if certs else None)
