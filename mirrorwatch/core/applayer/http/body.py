"""Message bodies: the bytes kept for inspection and content decoding.

A body's wire bytes (already de-chunked) go through the Content-Encoding
layers (gzip, deflate; at most ``decompress_layer_limit`` of them), and the
first ``limit`` decoded bytes are kept. Decoding stops for good once it has
produced ``compression_bomb_limit`` bytes (counted as a decompression bomb):
libhtp's output bound. A body that fails to decode before yielding anything
is kept raw, as libhtp passes undecodable data through.
"""

from __future__ import annotations

import zlib

from mirrorwatch.core.applayer.http.config import UNLIMITED
from mirrorwatch.core.applayer.http.headers import list_tokens

GZIP_WBITS = zlib.MAX_WBITS | 32      # gzip or zlib header, detected
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_ZLIB_METHOD_DEFLATE = 8
_ZLIB_CHECK = 31
_ZLIB_HEADER_LEN = 2
IDENTITY = b"identity"
GZIP_NAMES = frozenset((b"gzip", b"x-gzip"))
DEFLATE_NAMES = frozenset((b"deflate", b"x-deflate"))


class _Stage:
    """One decoding layer. Deflate is sent both zlib-wrapped and raw in the
    wild: the first two bytes decide, as browsers do."""

    __slots__ = ("_inflater", "_deflate", "_head", "produced")

    def __init__(self, deflate: bool) -> None:
        self._deflate = deflate
        self._inflater = None if deflate else zlib.decompressobj(GZIP_WBITS)
        self._head = b""
        self.produced = 0

    def feed(self, data: bytes, budget: int) -> tuple[bytes, bool]:
        """(output, over_budget). Raises zlib.error on corrupt input."""
        if self._inflater is None:
            self._head += data
            if len(self._head) < _ZLIB_HEADER_LEN:
                return b"", False
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            zlib_wrapped = (cmf & 0x0F) == _ZLIB_METHOD_DEFLATE and ((cmf << 8) | flg) % _ZLIB_CHECK == 0
            self._inflater = zlib.decompressobj(ZLIB_WBITS if zlib_wrapped else RAW_DEFLATE_WBITS)
        if budget <= 0:
            return b"", bool(data)
        out = self._inflater.decompress(data, budget)
        self.produced += len(out)
        return out, bool(self._inflater.unconsumed_tail)


def content_layers(content_encoding: bytes | None, layer_limit: int) -> tuple[list[bool], bool]:
    """(stages in decoding order as is-deflate flags, usable) for a Content-Encoding.

    Unknown codings (br, compress...) or more layers than allowed leave the
    body undecoded (usable False)."""
    if content_encoding is None:
        return [], True
    stages: list[bool] = []
    for token in list_tokens(content_encoding):
        if token in GZIP_NAMES:
            stages.append(False)
        elif token in DEFLATE_NAMES:
            stages.append(True)
        elif token != IDENTITY:
            return [], False
    if layer_limit and len(stages) > layer_limit:
        return [], False
    stages.reverse()
    return stages, True


class BodyCollector:
    """Decoded body bytes of one message, kept up to a limit.

    ``kept`` is the list of the kept pieces, joined only when the body is read (``HttpTx``):
    a body of many segments is not grown (and moved) piece by piece."""

    __slots__ = ("limit", "bomb_limit", "kept", "raw", "truncated", "memcapped", "bombed",
                 "decode_failed", "stopped", "decoded", "hashers", "_stages", "kept_len")

    def __init__(self, limit: int, bomb_limit: int, stages: list[bool], hashers: tuple = ()) -> None:
        self.limit = limit
        self.bomb_limit = bomb_limit
        self.kept: list[bytes] = []
        self.kept_len = 0
        self.raw = bytearray()          # wire bytes kept while decoding has produced nothing
        self.truncated = False
        self.memcapped = False          # truncated by the flow's memcap, not the body limit
        self.bombed = False
        self.decode_failed = False
        self.stopped = False            # a gap: nothing after it is kept
        self.decoded = 0                # decoded bytes seen, kept or not (the file's size)
        self.hashers = hashers          # hashlib objects fed every decoded byte (the file's hashes)
        self._stages = tuple([_Stage(deflate) for deflate in stages])

    def add(self, data: bytes, room: int) -> int:
        """Take wire bytes; ``room`` is what the flow's memcap still allows.
        Returns how many bytes were added to ``kept``."""
        if self.stopped or not data:
            return 0
        if not self._stages:
            return self._keep(data, room)
        if self.decode_failed or self.bombed:
            return 0
        if not _any_produced(self._stages):
            self.raw += data[:self._space(room) - len(self.raw)]
        try:
            decoded = self._decode(data)
        except zlib.error:
            return self._fail(room)
        if decoded and self.raw:
            self.raw.clear()
        return self._keep(decoded, room)

    def _decode(self, data: bytes) -> bytes:
        for stage in self._stages:
            data, over = stage.feed(data, self.bomb_limit - stage.produced)
            if over:
                self.bombed = True
        return data

    def _fail(self, room: int) -> int:
        self.decode_failed = True
        raw = bytes(self.raw)
        self.raw.clear()
        if _any_produced(self._stages):
            return 0
        self._stages = ()
        return self._keep(raw, room)

    def _space(self, room: int) -> int:
        space = room if self.limit == UNLIMITED else min(room, self.limit - self.kept_len)
        return max(space, 0)

    def _keep(self, data: bytes, room: int) -> int:
        self.decoded += len(data)
        for hasher in self.hashers:
            hasher.update(data)
        space = self._space(room)
        if len(data) > space:
            self.truncated = True
            self.memcapped |= space == room
            data = data[:space]
        if not data:
            return 0
        self.kept.append(bytes(data))  # no copy of bytes
        self.kept_len += len(data)
        return len(data)

    def stop(self) -> None:
        """A gap: keep nothing more (no match may span the hole)."""
        self.stopped = True


def _any_produced(stages: tuple[_Stage, ...]) -> bool:
    """Has any decoding layer produced output yet?"""
    return any(stage.produced for stage in stages)
