"""The inspection buffers of application-layer transactions: one table, one row per buffer.

Each row says which protocol and which side of a transaction a sticky buffer reads,
how far that side must have progressed before the buffer is complete, and how to
get its bytes.  A getter returns bytes, None (the transaction has no such buffer,
so a rule that needs it cannot match), or a tuple of bytes for Suricata's
multi-buffers (``dns.query``: each query name is inspected on its own; a rule
matches when one of them matches).

Buffers whose side depends on the rule (``http.header``, ``http.cookie``,
``http.content_type``, ``file.data``, ...) have a getter per side: the rule's
direction (``flow:to_client`` or a response-only buffer elsewhere in the rule)
picks it, as Suricata registers such buffers for both directions.

Adding a buffer is adding a row; the detect room has no per-buffer branch.
"""

from __future__ import annotations

from operator import attrgetter

from mirrorwatch.core.applayer.common import (
    PROGRESS_COMPLETE,
    PROGRESS_HEADERS,
    PROGRESS_LINE,
    TO_CLIENT,
    TO_SERVER,
)

BOTH = -1  # a buffer with a getter for each side
# payload keywords (no sticky buffer) in an HTTP rule: Suricata inspects them against the raw
# stream beside the transaction; here against the transaction's whole message
MESSAGE = "http.message"


class Buffer:
    """One row of the table: ``get[side](tx)`` once ``tx``'s progress on that side reaches ``ready``."""

    __slots__ = ("name", "proto", "side", "ready", "get")

    def __init__(self, name: str, proto: str, side: int, ready: int, ts=None, tc=None):
        self.name = name
        self.proto = proto
        self.side = side
        self.ready = ready
        self.get = (ts, tc)

    def getter(self, side: int):
        return self.get[side]


def _hdr(name: bytes):
    def ts(tx):
        return tx.request_header(name)

    def tc(tx):
        return tx.response_header(name)

    return ts, tc


def _header_block(headers, skip: bytes) -> bytes | None:
    """Suricata's normalised http.header: 'Name: value\\r\\n' per header (``skip``, the cookie
    header, left out)."""
    if not headers:
        return None
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
    parts: list = [b"\r\n"]
    for pair in headers:
        parts.append(pair[0])
        parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _start(line, raw) -> bytes | None:
    """The start line and the header block as sent (the block ends with its empty line)."""
    if line is None:
        return None
    return line + b"\r\n" + (raw or b"\r\n")


def _message(line, raw, body) -> bytes | None:
    """A whole message, start line, headers and (dechunked, decompressed) body: what payload
    keywords of an HTTP rule inspect in place of Suricata's raw stream."""
    start = _start(line, raw)
    return start + body if start is not None else None


def _content_len(headers) -> bytes | None:
    for n, v in headers:
        if n.lower() == b"content-length":
            return v
    return None


def _http() -> list[Buffer]:
    H, L, C = PROGRESS_HEADERS, PROGRESS_LINE, PROGRESS_COMPLETE
    rows = [
        Buffer("http.uri", "http", TO_SERVER, L, lambda tx: tx.uri_normalized),
        Buffer("http.uri.raw", "http", TO_SERVER, L, lambda tx: tx.uri_raw),
        Buffer("http.method", "http", TO_SERVER, L, lambda tx: tx.method),
        Buffer("http.request_line", "http", TO_SERVER, L, lambda tx: tx.request_line),
        Buffer("http.host", "http", TO_SERVER, H, lambda tx: tx.host),
        Buffer("http.host.raw", "http", TO_SERVER, H, lambda tx: tx.host_raw),
        Buffer("http.user_agent", "http", TO_SERVER, H, _hdr(b"user-agent")[0]),
        Buffer("http.referer", "http", TO_SERVER, H, _hdr(b"referer")[0]),
        Buffer("http.accept", "http", TO_SERVER, H, _hdr(b"accept")[0]),
        Buffer("http.accept_enc", "http", TO_SERVER, H, _hdr(b"accept-encoding")[0]),
        Buffer("http.accept_lang", "http", TO_SERVER, H, _hdr(b"accept-language")[0]),
        Buffer("http.request_body", "http", TO_SERVER, C, lambda tx: tx.request_body),
        Buffer("http.stat_code", "http", TO_CLIENT, L, None, lambda tx: tx.status),
        Buffer("http.stat_msg", "http", TO_CLIENT, L, None, lambda tx: tx.status_msg),
        Buffer("http.response_line", "http", TO_CLIENT, L, None, lambda tx: tx.response_line),
        Buffer("http.server", "http", TO_CLIENT, H, None, _hdr(b"server")[1]),
        Buffer("http.location", "http", TO_CLIENT, H, None, _hdr(b"location")[1]),
        Buffer("http.response_body", "http", TO_CLIENT, C, None, lambda tx: tx.response_body),
        Buffer("http.protocol", "http", BOTH, L, lambda tx: tx.protocol, lambda tx: tx.response_protocol),
        Buffer("http.header", "http", BOTH, H, lambda tx: _header_block(tx.request_headers, b"cookie"),
               lambda tx: _header_block(tx.response_headers, b"set-cookie")),
        Buffer("http.header.raw", "http", BOTH, H, lambda tx: tx.request_headers_raw or None,
               lambda tx: tx.response_headers_raw or None),
        Buffer("http.header_names", "http", BOTH, H, lambda tx: _header_names(tx.request_headers),
               lambda tx: _header_names(tx.response_headers)),
        Buffer("http.cookie", "http", BOTH, H, _hdr(b"cookie")[0], _hdr(b"set-cookie")[1]),
        Buffer("http.content_type", "http", BOTH, H, *_hdr(b"content-type")),
        Buffer("http.content_len", "http", BOTH, H, lambda tx: _content_len(tx.request_headers),
               lambda tx: _content_len(tx.response_headers)),
        Buffer("http.connection", "http", BOTH, H, *_hdr(b"connection")),
        Buffer("http.start", "http", BOTH, H, lambda tx: _start(tx.request_line, tx.request_headers_raw),
               lambda tx: _start(tx.response_line, tx.response_headers_raw)),
        Buffer("file.data", "http", BOTH, C, lambda tx: tx.request_body, lambda tx: tx.response_body),
        Buffer(MESSAGE, "http", BOTH, C, lambda tx: _message(tx.request_line, tx.request_headers_raw, tx.request_body),
               lambda tx: _message(tx.response_line, tx.response_headers_raw, tx.response_body)),
    ]
    return rows


def _attr(name: str):
    def get(tx):
        v = getattr(tx, name, None)
        if not v:
            return None
        return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v

    return get


def _dns_queries(tx):
    qs = tx.queries
    return tuple(q[0] for q in qs) if qs else None


def _others() -> list[Buffer]:
    C = PROGRESS_COMPLETE
    H = PROGRESS_HEADERS
    return [
        Buffer("dns.query", "dns", TO_SERVER, PROGRESS_LINE, _dns_queries),
        Buffer("tls.sni", "tls", TO_SERVER, H, _attr("sni")),
        Buffer("ja3.hash", "tls", TO_SERVER, H, _attr("ja3_hash")),
        Buffer("ja3.string", "tls", TO_SERVER, H, _attr("ja3_string")),
        Buffer("ja4.hash", "tls", TO_SERVER, H, _attr("ja4")),
        Buffer("ja3s.hash", "tls", TO_CLIENT, H, None, _attr("ja3s_hash")),
        Buffer("ja3s.string", "tls", TO_CLIENT, H, None, _attr("ja3s_string")),
        Buffer("tls.cert_subject", "tls", TO_CLIENT, C, None, _attr("subject")),
        Buffer("tls.cert_issuer", "tls", TO_CLIENT, C, None, _attr("issuer")),
        Buffer("tls.cert_serial", "tls", TO_CLIENT, C, None, _attr("serial")),
        Buffer("tls.cert_fingerprint", "tls", TO_CLIENT, C, None, _attr("fingerprint")),
        Buffer("tls.certs", "tls", TO_CLIENT, C, None, lambda tx: tuple(tx.certs) if tx.certs else None),
        Buffer("ssh.proto", "ssh", BOTH, PROGRESS_LINE, _attr("client_proto"), _attr("server_proto")),
        Buffer("ssh.software", "ssh", BOTH, PROGRESS_LINE, _attr("client_software"), _attr("server_software")),
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
