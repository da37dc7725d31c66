"""The TLS record layer of one direction and its handshake-message reassembly.

Records are followed by their headers; handshake records are joined into
one handshake byte stream so messages may span records and segments. Only
the message types the caller decodes are buffered, up to
``max_handshake_len`` bytes each; every other message, handshake records
after ChangeCipherSpec (encrypted) and application data are skipped and
counted. SSLv2 records (first byte with one of the top bits set) are
skipped by their 2- or 3-byte header.

Header checks follow SSLv3Decode (app-layer-ssl.c): an unknown content type
is skipped after a TLS 1.0/1.1 record and fatal otherwise; a zero or
oversized length or an unknown version is fatal (``RecordError``).
"""

from __future__ import annotations


from mirrorwatch.core.applayer.common import ParserStats
from mirrorwatch.core.applayer.tls_messages import SSL_VERSION_2, VALID_VERSIONS

RECORD_HEADER_LEN = 5
RECORD_MAX_LEN = (1 << 14) + 1024
HANDSHAKE_HEADER_LEN = 4
DEFAULT_MAX_HANDSHAKE_LEN = 1 << 18
SSLV2_LONG_HEADER_LEN = 2
SSLV2_SHORT_HEADER_LEN = 3
SSLV2_MSB = 0x80
SSLV2_MASK = 0xC0
SSLV2_LONG_LEN_MASK = 0x7F
SSLV2_SHORT_LEN_MASK = 0x3F

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_HEARTBEAT = 24
KNOWN_CONTENT_TYPES = frozenset(range(CT_CHANGE_CIPHER_SPEC, CT_HEARTBEAT + 1))
LENIENT_RECORD_VERSIONS = frozenset({0x0301, 0x0302})


class RecordError(Exception):
    """A record header Suricata treats as fatal for the flow."""


class TlsStats(ParserStats):
    __slots__ = ("encrypted_bytes", "encrypted_records", "records", "skipped_handshakes")

    def __init__(self) -> None:
        super().__init__()
        self.records = 0
        self.encrypted_records = 0
        self.encrypted_bytes = 0
        self.skipped_handshakes = 0


def _header_len(first: int) -> int:
    if first & SSLV2_MSB:
        return SSLV2_LONG_HEADER_LEN
    return SSLV2_SHORT_HEADER_LEN if first & SSLV2_MASK else RECORD_HEADER_LEN


class DirectionReader:
    """Record layer of one direction: complete wanted handshake messages collect in
    ``messages`` ((type, body) in order) and ``encrypted`` turns true at the first
    encrypted record; the owner drains them after each feed (no callbacks into the
    owner, so a parser is never a reference cycle)."""

    __slots__ = (
        "ccs",
        "ctype",
        "header",
        "hello_seen",
        "hs",
        "hs_skip",
        "max_handshake_len",
        "encrypted",
        "messages",
        "remaining",
        "stats",
        "version",
        "wanted",
    )

    def __init__(self, stats: TlsStats, max_handshake_len: int, wanted: frozenset[int],
                 ) -> None:
        self.stats = stats
        self.max_handshake_len = max_handshake_len
        self.wanted = wanted
        self.messages: list[tuple[int, bytes]] = []
        self.encrypted = False
        self.header = bytearray()
        self.ctype = 0
        self.remaining = 0
        self.hs = bytearray()
        self.hs_skip = 0
        self.ccs = False
        self.version = 0
        self.hello_seen = False

    def feed(self, data: bytes | memoryview) -> None:
        pos = 0
        while pos < len(data):
            if self.remaining:
                step = min(self.remaining, len(data) - pos)
                self._body(data, pos, step)
                self.remaining -= step
                pos += step
            else:
                pos = self._header_bytes(data, pos)

    def skip_gap(self, size: int) -> bool:
        """Account for ``size`` lost bytes inside a record we skip anyway; False otherwise."""
        if self.header or self.remaining < size or (self.ctype == CT_HANDSHAKE and not self.ccs):
            return False
        self.remaining -= size
        return True

    def _header_bytes(self, data: bytes | memoryview, pos: int) -> int:
        first = self.header[0] if self.header else data[pos]
        if not self.header and first & SSLV2_MASK:
            self.version = SSL_VERSION_2
        want = _header_len(first)
        take = min(want - len(self.header), len(data) - pos)
        self.header += data[pos:pos + take]
        if len(self.header) == want:
            header = bytes(self.header)
            self.header.clear()
            self.stats.records += 1
            if want == RECORD_HEADER_LEN:
                self._start_record(header)
            else:
                mask = SSLV2_LONG_LEN_MASK if first & SSLV2_MSB else SSLV2_SHORT_LEN_MASK
                self.ctype = 0
                self.remaining = ((header[0] & mask) << 8) | header[1]
        return pos + take

    def _start_record(self, header: bytes) -> None:
        ctype = header[0]
        version = int.from_bytes(header[1:3], "big")
        length = int.from_bytes(header[3:5], "big")
        previous = self.version
        if previous in (SSL_VERSION_2, 0) or not self.hello_seen:
            self.version = version
        if ctype not in KNOWN_CONTENT_TYPES:
            if previous not in LENIENT_RECORD_VERSIONS:
                raise RecordError("unknown record type")
            self.version = previous
        elif length == 0 or length > RECORD_MAX_LEN or version not in VALID_VERSIONS:
            raise RecordError("bad record header")
        self.ctype = ctype
        self.remaining = length
        if ctype == CT_CHANGE_CIPHER_SPEC:
            self.ccs = True
        if ctype in (CT_APPLICATION_DATA, CT_CHANGE_CIPHER_SPEC):
            self.encrypted = True

    def _body(self, data: bytes | memoryview, pos: int, size: int) -> None:
        """``size`` bytes of the current record's body, at ``pos``: only cleartext
        handshake bytes are looked at, the rest is counted."""
        if self.ctype == CT_APPLICATION_DATA or (self.ctype == CT_HANDSHAKE and self.ccs):
            self.stats.encrypted_bytes += size
            if self.remaining == size:
                self.stats.encrypted_records += 1
        elif self.ctype == CT_HANDSHAKE:
            self._handshake_bytes(data[pos:pos + size])

    def _handshake_bytes(self, chunk: bytes | memoryview) -> None:
        pos = 0
        while pos < len(chunk):
            if self.hs_skip:
                step = min(self.hs_skip, len(chunk) - pos)
                self.hs_skip -= step
                pos += step
                continue
            if len(self.hs) < HANDSHAKE_HEADER_LEN:
                need = HANDSHAKE_HEADER_LEN - len(self.hs)
            else:
                need = HANDSHAKE_HEADER_LEN + int.from_bytes(self.hs[1:4], "big") - len(self.hs)
            take = min(need, len(chunk) - pos)
            self.hs += chunk[pos:pos + take]
            pos += take
            if take == need:
                self._handshake_progress()

    def _handshake_progress(self) -> None:
        """A message header or a whole message is buffered."""
        msg_type = self.hs[0]
        length = int.from_bytes(self.hs[1:4], "big")
        if len(self.hs) == HANDSHAKE_HEADER_LEN:
            if msg_type not in self.wanted or length > self.max_handshake_len:
                self.stats.skipped_handshakes += 1
                self.stats.memcap_hits += length > self.max_handshake_len
                self.hs_skip = length
                self.hs.clear()
                return
            if length:
                return
        body = bytes(self.hs[HANDSHAKE_HEADER_LEN:])
        self.hs.clear()
        self.messages.append((msg_type, body))
