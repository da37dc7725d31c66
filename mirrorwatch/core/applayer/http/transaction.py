"""One HTTP transaction: request i paired with response i of a flow."""

from __future__ import annotations

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, PROGRESS_NONE
from mirrorwatch.core.applayer.http.headers import header_value
from mirrorwatch.core.applayer.http.uri import request_uri_normalized

Headers = list[tuple[bytes, bytes]]
# ``_uri_normalized`` before anyone asked for it: made from ``uri_raw`` on first use
_FROM_URI = object()


class HttpTx:
    """Buffers and fields of one request/response pair (bytes unless noted).

    Header lists hold one entry per distinct name, in first-seen order, with
    repeated fields joined by ", " as libhtp's header table does; a repeated
    Content-Length keeps its first value. ``uri_normalized`` (the ``http.uri``
    buffer) is made from ``uri_raw`` when first asked for: most transactions
    are never inspected by a rule on it. Likewise a body (``request_body``,
    ``response_body``) is copied out of the parser's buffer when first read
    after it grew, not at every segment.
    """

    __slots__ = (
        "tx_id", "progress_ts", "progress_tc",
        # request
        "method", "uri_raw", "protocol", "request_line", "request_headers",
        "request_headers_raw", "_request_body", "_request_kept", "request_body_len",
        "request_body_truncated",
        "_uri_normalized", "host", "host_raw", "port", "is_http09",
        # response
        "response_protocol", "status", "status_code", "status_msg", "response_line",
        "response_headers", "response_headers_raw", "_response_body", "_response_kept",
        "response_body_len", "response_body_truncated",
        # files (Suricata's file tracking: files.py), None until a body's first byte
        "request_file", "response_file",
        # bookkeeping for updated() / pop_done()
        "dirty", "reported",
    )

    def __init__(self, tx_id: int) -> None:
        self.tx_id = tx_id
        self.progress_ts = PROGRESS_NONE
        self.progress_tc = PROGRESS_NONE
        self.method: bytes | None = None
        self.uri_raw: bytes | None = None
        self.protocol: bytes | None = None
        self.request_line: bytes | None = None
        self.request_headers: Headers = []
        self.request_headers_raw = b""
        self._request_body = b""
        self._request_kept: list[bytes] | None = None   # the body's live pieces, not yet joined
        self.request_body_len = 0
        self.request_body_truncated = False
        self._uri_normalized: object = None
        self.host: bytes | None = None
        self.host_raw: bytes | None = None
        self.port: int | None = None
        self.is_http09 = False
        self.response_protocol: bytes | None = None
        self.status: bytes | None = None
        self.status_code: int | None = None
        self.status_msg: bytes | None = None
        self.response_line: bytes | None = None
        self.response_headers: Headers = []
        self.response_headers_raw = b""
        self._response_body = b""
        self._response_kept: list[bytes] | None = None
        self.response_body_len = 0
        self.response_body_truncated = False
        self.request_file = None
        self.response_file = None
        self.dirty = False
        self.reported = False

    def request_header(self, name: bytes | str) -> bytes | None:
        """Value of a request header (case-insensitive name), or None."""
        return header_value(self.request_headers, name)

    def response_header(self, name: bytes | str) -> bytes | None:
        """Value of a response header (case-insensitive name), or None."""
        return header_value(self.response_headers, name)

    @property
    def uri_normalized(self) -> bytes | None:
        """The ``http.uri`` buffer: the normalised path, decoded query and fragment (None without a URI)."""
        value = self._uri_normalized
        if value is _FROM_URI:
            value = self._uri_normalized = request_uri_normalized(self.uri_raw)
        return value

    @uri_normalized.setter
    def uri_normalized(self, value: bytes | None) -> None:
        self._uri_normalized = value

    def normalize_uri_later(self) -> None:
        """``uri_normalized`` is to be made from ``uri_raw`` when first asked for."""
        self._uri_normalized = _FROM_URI

    @property
    def request_body(self) -> bytes:
        """The request body kept for inspection (decoded, up to the body limit)."""
        if self._request_kept is not None:
            self._request_body = b"".join(self._request_kept)  # one piece: itself, no copy
            self._request_kept = None
        return self._request_body

    @property
    def response_body(self) -> bytes:
        """The response body kept for inspection (decoded, up to the body limit)."""
        if self._response_kept is not None:
            self._response_body = b"".join(self._response_kept)
            self._response_kept = None
        return self._response_body

    def body_grew(self, request: bool, kept: list[bytes]) -> None:
        """The body kept so far is ``kept``: the parser's list of its pieces, which changes
        only by growing (each time followed by this call); joined when the body is next read."""
        if request:
            self._request_kept = kept
        else:
            self._response_kept = kept

    def held(self) -> int:
        """Bytes held for this transaction: its header blocks and kept bodies."""
        request = len(self._request_body) if self._request_kept is None else _size(self._request_kept)
        response = len(self._response_body) if self._response_kept is None else _size(self._response_kept)
        return len(self.request_headers_raw) + len(self.response_headers_raw) + request + response

    @property
    def done(self) -> bool:
        """Both directions complete."""
        return self.progress_ts == PROGRESS_COMPLETE and self.progress_tc == PROGRESS_COMPLETE

    def __repr__(self) -> str:
        return (f"HttpTx({self.tx_id}, {self.method!r} {self.uri_raw!r} -> {self.status_code}, "
                f"ts={self.progress_ts} tc={self.progress_tc})")


def _size(pieces: list[bytes]) -> int:
    size = 0
    for piece in pieces:
        size += len(piece)
    return size
