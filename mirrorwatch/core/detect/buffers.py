"""The inspection buffers of application-layer transactions: one table, one row per buffer.

Each row says which protocol and which side of a transaction a sticky buffer reads,
how far that side must have progressed before the buffer is complete, and how to
get its bytes: a ``Getter``, an op code and its argument (an attribute, a header
name...) that ``Getter.fetch`` dispatches in C, as the transaction prefilter gets
some 36 buffers of every HTTP transaction.  A getter returns bytes, None (the
transaction has no such buffer, so a rule that needs it cannot match), or a tuple
of bytes for Suricata's multi-buffers (``dns.query``: each query name is
inspected on its own; a rule matches when one of them matches).

Buffers whose side depends on the rule (``http.header``, ``http.cookie``,
``http.content_type``, ``file.data``, ...) have a getter per side: the rule's
direction (``flow:to_client`` or a response-only buffer elsewhere in the rule)
picks it, as Suricata registers such buffers for both directions.

Adding a buffer is adding a row; the detect room has no per-buffer branch.
"""

from __future__ import annotations

from operator import attrgetter

import cython

from mirrorwatch.core.applayer.common import (
    PROGRESS_COMPLETE,
    PROGRESS_HEADERS,
    PROGRESS_LINE,
    TO_CLIENT,
    TO_SERVER,
)
from mirrorwatch.core.applayer.http.headers import header_value
from mirrorwatch.core.applayer.http.transaction import HttpTx

BOTH = -1  # a buffer with a getter for each side
# payload keywords (no sticky buffer) in an HTTP rule: Suricata inspects them against the raw
# stream beside the transaction; here against the transaction's whole message
MESSAGE = "http.message"


class Buffer:
    """One row of the table: ``get[side].fetch(tx)`` once ``tx``'s progress on that side reaches
    ``ready``; ``get[side]``: a ``Getter``, or None where the buffer has no such side."""

    __slots__ = ("name", "proto", "side", "ready", "get")

    def __init__(self, name: str, proto: str, side: int, ready: int, ts=None, tc=None):
        self.name = name
        self.proto = proto
        self.side = side
        self.ready = ready
        self.get = (ts, tc)

    def getter(self, side: int):
        return self.get[side]


# what a getter does (``Getter.op``): C branches of ``Getter.fetch``, no Python call per buffer
FIELD = 0         # the transaction's attribute ``arg`` as it is
TEXT = 1          # the attribute ``arg`` as bytes (a str encoded), None if empty
CALL = 2          # ``arg(tx)``: a buffer no branch makes (a multi-buffer's items)
# an HTTP transaction's side (``Getter.response``): its request's or its response's
HEADER = 3        # the value of the header named ``arg`` (lowercase)
HEADER_BLOCK = 4  # the normalised header block, the header named ``arg`` left out
HEADER_NAMES = 5  # the header names
HEADERS_RAW = 6   # the header block as sent, None if empty
START = 7         # the start line and the header block as sent (``parted``)
WHOLE = 8         # the whole message: the start line, the header block and the body (``parted``)
FIELD_, TEXT_, CALL_, HEADER_, HEADER_BLOCK_, HEADER_NAMES_, START_ = (  # C aliases (buffers.pxd)
    FIELD, TEXT, CALL, HEADER, HEADER_BLOCK, HEADER_NAMES, START)
_CRLF = b"\r\n"


class Getter:
    """How one side of a row gets its bytes from a transaction: an op code (``FIELD``...), its
    argument and, for an HTTP op, the side of the transaction it reads.  ``parted``: the bytes
    are joined from parts the transaction keeps (``parts``, ``join``), which stand for them:
    equal parts make equal bytes, and the parts' hashes are kept by the bytes objects."""

    __slots__ = ("op", "arg", "response", "parted")

    def __init__(self, op: int, arg=None, response: bool = False):
        self.op = op
        self.arg = arg
        self.response = response
        self.parted = op in (START, WHOLE)

    def fetch(self, tx):
        """The buffer's bytes for ``tx`` (a tuple for a multi-buffer), or None if it has none."""
        op = self.op
        if op == FIELD_:
            return getattr(tx, self.arg)
        if op == TEXT_:
            return _text(getattr(tx, self.arg, None))
        if op == CALL_:
            return self.arg(tx)
        if self.parted:
            parts = self.parts(tx)
            return None if parts is None else self.join(parts)
        h = cython.cast(HttpTx, tx, typecheck=True)
        headers = h.response_headers if self.response else h.request_headers
        if op == HEADER_:
            return header_value(headers, self.arg)
        if op == HEADER_BLOCK_:
            return _header_block(headers, self.arg)
        if op == HEADER_NAMES_:
            return _header_names(headers)
        raw = h.response_headers_raw if self.response else h.request_headers_raw
        return raw or None  # HEADERS_RAW

    def parts(self, tx):
        """A ``parted`` buffer's parts in ``tx``: the start line and the header block as sent (the
        block ends with its empty line), then for ``WHOLE`` the (dechunked, decompressed) body;
        None without a start line."""
        h = cython.cast(HttpTx, tx, typecheck=True)
        line = h.response_line if self.response else h.request_line
        if line is None:
            return None
        raw = (h.response_headers_raw if self.response else h.request_headers_raw) or _CRLF
        if self.op == START_:
            return (line, raw)
        return (line, raw, h.response_body if self.response else h.request_body)

    def join(self, parts: tuple) -> bytes:
        """A ``parted`` buffer's bytes: its parts, the start line ended by CRLF.  A whole message
        is what payload keywords of an HTTP rule inspect in place of Suricata's raw stream."""
        data = parts[0] + _CRLF + parts[1]
        return data + parts[2] if len(parts) == 3 else data

    def size(self, parts: tuple) -> int:
        """The length of ``join(parts)``."""
        size = len(_CRLF)
        for part in parts:
            size += len(part)
        return size


def _text(v):
    if not v:
        return None
    return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v


def _header_block(headers, skip: bytes) -> bytes | None:
    """Suricata's normalised http.header: 'Name: value\\r\\n' per header (``skip``, the cookie
    header, left out)."""
    if not headers:
        return None
    if cython.compiled:
        return _fill_headers(headers, skip, True)
    parts: list = []  # one join over the pieces: no intermediate bytes per header, no generator
    for pair in headers:
        name = pair[0]
        if len(name) != len(skip) or name.lower() != skip:
            parts.append(name)
            parts.append(b": ")
            parts.append(pair[1])
            parts.append(b"\r\n")
    return b"".join(parts)


def _header_names(headers) -> bytes | None:
    if not headers:
        return None
    if cython.compiled:
        return _fill_headers(headers, None, False)
    parts: list = [b"\r\n"]
    for pair in headers:
        parts.append(pair[0])
        parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _field(name: str) -> Getter:
    return Getter(FIELD, name)


def _text_field(name: str) -> Getter:
    return Getter(TEXT, name)


def _sides(op: int, ts_arg=None, tc_arg=None) -> tuple[Getter, Getter]:
    """The request's and the response's getter of an HTTP op."""
    return Getter(op, ts_arg), Getter(op, tc_arg, True)


def _hdr(name: bytes) -> tuple[Getter, Getter]:
    return _sides(HEADER, name, name)


def _http() -> list[Buffer]:
    H, L, C = PROGRESS_HEADERS, PROGRESS_LINE, PROGRESS_COMPLETE
    f = _field
    rows = [
        Buffer("http.uri", "http", TO_SERVER, L, f("uri_normalized")),
        Buffer("http.uri.raw", "http", TO_SERVER, L, f("uri_raw")),
        Buffer("http.method", "http", TO_SERVER, L, f("method")),
        Buffer("http.request_line", "http", TO_SERVER, L, f("request_line")),
        Buffer("http.host", "http", TO_SERVER, H, f("host")),
        Buffer("http.host.raw", "http", TO_SERVER, H, f("host_raw")),
        Buffer("http.user_agent", "http", TO_SERVER, H, _hdr(b"user-agent")[0]),
        Buffer("http.referer", "http", TO_SERVER, H, _hdr(b"referer")[0]),
        Buffer("http.accept", "http", TO_SERVER, H, _hdr(b"accept")[0]),
        Buffer("http.accept_enc", "http", TO_SERVER, H, _hdr(b"accept-encoding")[0]),
        Buffer("http.accept_lang", "http", TO_SERVER, H, _hdr(b"accept-language")[0]),
        Buffer("http.request_body", "http", TO_SERVER, C, f("request_body")),
        Buffer("http.stat_code", "http", TO_CLIENT, L, None, f("status")),
        Buffer("http.stat_msg", "http", TO_CLIENT, L, None, f("status_msg")),
        Buffer("http.response_line", "http", TO_CLIENT, L, None, f("response_line")),
        Buffer("http.server", "http", TO_CLIENT, H, None, _hdr(b"server")[1]),
        Buffer("http.location", "http", TO_CLIENT, H, None, _hdr(b"location")[1]),
        Buffer("http.response_body", "http", TO_CLIENT, C, None, f("response_body")),
        Buffer("http.protocol", "http", BOTH, L, f("protocol"), f("response_protocol")),
        Buffer("http.header", "http", BOTH, H, *_sides(HEADER_BLOCK, b"cookie", b"set-cookie")),
        Buffer("http.header.raw", "http", BOTH, H, *_sides(HEADERS_RAW)),
        Buffer("http.header_names", "http", BOTH, H, *_sides(HEADER_NAMES)),
        Buffer("http.cookie", "http", BOTH, H, _hdr(b"cookie")[0], _hdr(b"set-cookie")[1]),
        Buffer("http.content_type", "http", BOTH, H, *_hdr(b"content-type")),
        Buffer("http.content_len", "http", BOTH, H, *_hdr(b"content-length")),
        Buffer("http.connection", "http", BOTH, H, *_hdr(b"connection")),
        Buffer("http.start", "http", BOTH, H, *_sides(START)),
        Buffer("file.data", "http", BOTH, C, f("request_body"), f("response_body")),
        Buffer(MESSAGE, "http", BOTH, C, *_sides(WHOLE)),
    ]
    return rows


def _dns_queries(tx):
    qs = tx.queries
    return tuple(q[0] for q in qs) if qs else None


def _certs(tx):
    return tuple(tx.certs) if tx.certs else None


def _others() -> list[Buffer]:
    C = PROGRESS_COMPLETE
    H = PROGRESS_HEADERS
    t = _text_field
    return [
        Buffer("dns.query", "dns", TO_SERVER, PROGRESS_LINE, Getter(CALL, _dns_queries)),
        Buffer("tls.sni", "tls", TO_SERVER, H, t("sni")),
        Buffer("ja3.hash", "tls", TO_SERVER, H, t("ja3_hash")),
        Buffer("ja3.string", "tls", TO_SERVER, H, t("ja3_string")),
        Buffer("ja4.hash", "tls", TO_SERVER, H, t("ja4")),
        Buffer("ja3s.hash", "tls", TO_CLIENT, H, None, t("ja3s_hash")),
        Buffer("ja3s.string", "tls", TO_CLIENT, H, None, t("ja3s_string")),
        Buffer("tls.cert_subject", "tls", TO_CLIENT, C, None, t("subject")),
        Buffer("tls.cert_issuer", "tls", TO_CLIENT, C, None, t("issuer")),
        Buffer("tls.cert_serial", "tls", TO_CLIENT, C, None, t("serial")),
        Buffer("tls.cert_fingerprint", "tls", TO_CLIENT, C, None, t("fingerprint")),
        Buffer("tls.certs", "tls", TO_CLIENT, C, None, Getter(CALL, _certs)),
        Buffer("ssh.proto", "ssh", BOTH, PROGRESS_LINE, t("client_proto"), t("server_proto")),
        Buffer("ssh.software", "ssh", BOTH, PROGRESS_LINE, t("client_software"), t("server_software")),
    ]


BUFFERS: dict[str, Buffer] = {b.name: b for b in _http() + _others()}
ALIASES = {"file_data": "file.data",
           "tls.subject": "tls.cert_subject", "tls.issuerdn": "tls.cert_issuer"}


def lookup(name: str) -> Buffer | None:
    return BUFFERS.get(ALIASES.get(name, name))


class ValueKeyword:
    """A keyword that compares a value the parser keeps, not a buffer (Suricata's AppLayerTxMatch
    keywords): ``get[side](tx)`` reads the value the packet's direction compares; such a keyword
    names no side of its own (Suricata registers its list for both directions)."""

    __slots__ = ("name", "proto", "get")

    def __init__(self, name: str, proto: str, ts, tc):
        self.name = name
        self.proto = proto
        self.get = (ts, tc)


# tls.version (detect-tls-version.c): a to-server packet compares the client's version
# (client_connp.version), a to-client one the server's, the negotiated one (server_connp.version)
VALUE_KEYWORDS: dict[str, ValueKeyword] = {
    k.name: k for k in (ValueKeyword("tls.version", "tls", attrgetter("client_version"), attrgetter("version_num")),)
}
