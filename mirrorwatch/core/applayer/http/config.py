"""Settings and counters of the HTTP/1.x parser.

Every bound is a named setting with a default; the defaults are Suricata's
(``app-layer.protocols.http.libhtp.default-config.*``) or libhtp's own where
Suricata does not expose the value. One ``HttpConfig`` is shared by every flow.
"""

from __future__ import annotations

import cython

from mirrorwatch.core.applayer.common import ParserStats

# app-layer.protocols.http.libhtp.default-config.request-body-limit
DEFAULT_REQUEST_BODY_LIMIT = 4096
# app-layer.protocols.http.libhtp.default-config.response-body-limit
DEFAULT_RESPONSE_BODY_LIMIT = 4096
# app-layer.protocols.http.libhtp.default-config.compression-bomb-limit
DEFAULT_COMPRESSION_BOMB_LIMIT = 1024 * 1024
# app-layer.protocols.http.libhtp.default-config.response-body-decompress-layer-limit
DEFAULT_DECOMPRESS_LAYER_LIMIT = 2
# app-layer.protocols.http.libhtp.default-config.max-tx
DEFAULT_MAX_TX = 512
# libhtp field_limit_hard (Suricata keeps libhtp's 18000): longest line kept.
DEFAULT_FIELD_LIMIT = 18000
# mirrorwatch: bytes one flow may hold for HTTP (unfinished header blocks,
# bytes waiting on a CONNECT answer, bodies kept for inspection).
DEFAULT_FLOW_MEMCAP = 256 * 1024
# libhtp HTP_MAX_HEADERS_REPETITIONS: repeats of one header name folded in.
DEFAULT_HEADER_REPETITIONS = 64
# app-layer.protocols.http.libhtp.default-config.headers-limit: header fields kept per message.
DEFAULT_MAX_HEADERS = 1024

UNLIMITED = 0


class HttpConfig:
    """Limits shared by every HTTP flow.

    A body limit, max_tx or max_headers of 0 means unlimited (as in Suricata);
    the compression bomb limit, field limit and flow memcap are always bounded.
    """

    __slots__ = (
        "request_body_limit", "response_body_limit", "compression_bomb_limit",
        "decompress_layer_limit", "max_tx", "field_limit", "flow_memcap",
        "header_repetitions", "max_headers", "file_hashes",
    )

    def __init__(
        self, *,
        request_body_limit: int = DEFAULT_REQUEST_BODY_LIMIT,
        response_body_limit: int = DEFAULT_RESPONSE_BODY_LIMIT,
        compression_bomb_limit: int = DEFAULT_COMPRESSION_BOMB_LIMIT,
        decompress_layer_limit: int = DEFAULT_DECOMPRESS_LAYER_LIMIT,
        max_tx: int = DEFAULT_MAX_TX,
        field_limit: int = DEFAULT_FIELD_LIMIT,
        flow_memcap: int = DEFAULT_FLOW_MEMCAP,
        header_repetitions: int = DEFAULT_HEADER_REPETITIONS,
        max_headers: int = DEFAULT_MAX_HEADERS,
        file_hashes: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.request_body_limit = request_body_limit
        self.response_body_limit = response_body_limit
        self.compression_bomb_limit = max(1, compression_bomb_limit)
        self.decompress_layer_limit = decompress_layer_limit
        self.max_tx = max_tx
        self.field_limit = max(1, field_limit)
        self.flow_memcap = max(1, flow_memcap)
        self.header_repetitions = header_repetitions
        self.max_headers = max_headers
        self.file_hashes = tuple(file_hashes)  # hashlib names computed over every body (force-hash)


DEFAULT_CONFIG = HttpConfig()


class HttpStats(ParserStats):
    """Per-flow HTTP counters on top of the shared ones."""

    __slots__ = (
        "ignored_lines", "truncated_lines", "header_errors", "body_truncated",
        "decompress_errors", "decompression_bombs", "chunk_errors", "unmatched_responses",
        "interim_responses", "tunnels", "tunnel_bytes", "ignored_bytes", "gap_resyncs",
        "directions_failed", "max_tx_hits",
    )

    def __init__(self) -> None:
        if not cython.compiled:  # compiled, the counters are C numbers that start at 0
            super().__init__()
            for name in HttpStats.__slots__:
                setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        names = ParserStats.__slots__ + HttpStats.__slots__
        return {name: getattr(self, name) for name in names}
