"""Files of HTTP transactions, as Suricata tracks them (app-layer-htp.c, util-file.c).

A response body is a file from its first decoded byte: named by the
response's ``Content-Disposition`` ``filename=`` when there is one, else by the
request's normalised URI path (empty without one). A request body is a file when the method is
``POST`` or ``PUT`` (libhtp's method numbers: exact spelling), named by the URI
path; a multipart ``POST`` (a boundary in its Content-Type) is split into its
parts by Suricata, which is not done here, so it gives no file. The size is
the decoded bytes (de-chunked, decompressed: what libhtp hands Suricata), not
bounded by the inspection limits. A file is CLOSED when its body ended as
framed, TRUNCATED when it was cut (the connection or the flow ended first).
With Suricata's ``force-hash`` (``HttpConfig.file_hashes``) its decoded bytes are
hashed as they pass (``hashers``: the body's, from its first byte).
"""

from __future__ import annotations

from mirrorwatch.core.applayer.http.headers import header_value
from mirrorwatch.core.applayer.http.uri import normalize_path, split_uri

FILENAME_MAX = 4096  # Suricata's SC_FILENAME_MAX: longer names are cut
STATE_OPEN = "OPEN"
STATE_CLOSED = "CLOSED"
STATE_TRUNCATED = "TRUNCATED"
FILE_METHODS = frozenset((b"POST", b"PUT"))
CONTENT_DISPOSITION = b"content-disposition"
CONTENT_TYPE = b"content-type"
FILENAME_PARAM = b"filename="
BOUNDARY_PARAM = b"boundary="
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
_SEMICOLON = ord(";")


class HttpFile:
    """One file of a transaction: its name, decoded size, gaps and state.

    A file named by its request's URI (``name`` None, ``uri_raw``) is given
    that name (``uri_path``) when it is first asked for: most are never logged."""

    __slots__ = ("gaps", "_name", "_uri_raw", "size", "state", "hashers")

    def __init__(self, name: bytes | None, hashers: tuple = (), uri_raw: bytes | None = None) -> None:
        self._name = None if name is None else name[:FILENAME_MAX]
        self._uri_raw = uri_raw
        self.size = 0
        self.gaps = False
        self.state = STATE_OPEN
        self.hashers = hashers  # hashlib objects over the decoded bytes (force-hash), by ``.name``

    @property
    def name(self) -> bytes:
        if self._name is None:
            self._name = uri_path(self._uri_raw)[:FILENAME_MAX]
        return self._name

    def close(self, complete: bool) -> None:
        if self.state == STATE_OPEN:
            self.state = STATE_CLOSED if complete else STATE_TRUNCATED


def open_file(tx, request: bool, hashers: tuple = ()) -> HttpFile | None:
    """The file a body of ``tx`` opens on its first byte, or None when Suricata tracks none;
    ``hashers`` are the body's (they have seen every decoded byte of it)."""
    if request:
        if tx.method not in FILE_METHODS or _is_multipart(tx):
            return None
        name = None
    else:
        name = disposition_filename(header_value(tx.response_headers, CONTENT_DISPOSITION))
    return HttpFile(name, hashers, tx.uri_raw)


def uri_path(uri_raw: bytes | None) -> bytes:
    """libhtp's parsed URI path (normalised), the name a file gets from its request: empty
    when the request line had no URI, or when the response came without a request line
    (libhtp's transaction for it has an empty URI, and its file an empty name)."""
    path = split_uri(uri_raw or b"").path
    return normalize_path(path) if path else b""


def disposition_filename(value: bytes | None) -> bytes | None:
    """The ``filename=`` parameter of a Content-Disposition value (Suricata's
    HTTPParseContentDispositionHeader: ``;``-separated tokens outside quotes,
    one pair of surrounding quotes dropped), or None."""
    if not value:
        return None
    line = value.lstrip()
    for token in _tokens(line):
        if len(token) > len(FILENAME_PARAM) and token[:len(FILENAME_PARAM)].lower() == FILENAME_PARAM:
            name = token[len(FILENAME_PARAM):]
            if name[:1] == b'"':
                name = name[1:]
            if name[-1:] == b'"':
                name = name[:-1]
            return name
    return None


def _tokens(line: bytes):
    """The ``;``-separated tokens of ``line``; a ``;`` inside quotes (or escaped) does not split."""
    quotes = 0
    start = 0
    for pos in range(1, len(line)):
        escaped = line[pos - 1] == _BACKSLASH
        if line[pos] == _QUOTE and not escaped:
            quotes += 1
        last = pos + 1 == len(line)
        if ((line[pos] == _SEMICOLON and not escaped) or last) and quotes % 2 == 0:
            yield line[start:pos + 1 if last else pos]
            start = pos + 1
            while start < len(line) and line[start:start + 1].isspace():
                start += 1


def _is_multipart(tx) -> bool:
    content_type = header_value(tx.request_headers, CONTENT_TYPE)
    return content_type is not None and BOUNDARY_PARAM in content_type.lower()
