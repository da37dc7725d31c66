"""Message bodies and message ends, common to both directions: the body states
of the table in state.py (Content-Length, chunked, until close), the bytes
kept for inspection and the body's file, gaps inside a body."""

from __future__ import annotations

import hashlib

from mirrorwatch.core.applayer.common import PROGRESS_BODY, PROGRESS_COMPLETE, TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.http.body import BodyCollector, content_layers
from mirrorwatch.core.applayer.http.files import open_file
from mirrorwatch.core.applayer.http.framing import Framing
from mirrorwatch.core.applayer.http.headers import header_value
from mirrorwatch.core.applayer.http.stream import Phase, Side, StreamMachine
from mirrorwatch.core.applayer.http.transaction import HttpTx

# libhtp is_chunked_ctl_char: bytes skipped around a chunk size.
CHUNK_CTL = b"\r\n \t\x0b\x0c"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
MAX_CHUNK_SIZE = 0x7FFFFFFF     # libhtp rejects chunk sizes above INT32_MAX
CONTENT_ENCODING = b"content-encoding"


class MessageMachine(StreamMachine):
    """Body states, the end of a message and giving up a direction, for both directions."""

    __slots__ = ()

    def _message_done(self, side: Side) -> None:
        tx = side.tx
        if tx is not None:
            self._finish_body(side)
            complete_progress(tx, side.direction)
            self._touch(tx)
        side.tx = None
        side.remaining = 0
        side.phase = Phase.IDLE

    def _fail(self, side: Side) -> None:
        """Give up this direction for good (counted; the flow keeps its protocol)."""
        if side.tx is not None:
            self._message_done(side)
        side.phase = Phase.FAILED
        self.stats.directions_failed += 1
        self.stats.ignored_bytes += side.drop_buffer()
        self.failed = True
        if side.direction == TO_CLIENT:
            self._complete_responses()

    def _complete_responses(self) -> None:
        """No more response bytes will be parsed: every transaction's response is complete."""
        for tx in self.txs:
            if tx.progress_tc != PROGRESS_COMPLETE:
                tx.progress_tc = PROGRESS_COMPLETE
                self._touch(tx)

    def _start_body(self, side: Side, framing: Framing, length: int) -> None:
        tx = side.tx
        request = side.direction == TO_SERVER
        headers = tx.request_headers if request else tx.response_headers
        stages, usable = content_layers(header_value(headers, CONTENT_ENCODING),
                                        self.config.decompress_layer_limit)
        if not usable:
            self.stats.decompress_errors += 1
        side.file_checked = False
        side.wire = 0
        side.remaining = length
        if framing == Framing.NONE:  # no body: nothing to collect
            self._message_done(side)
            return
        limit = self.config.request_body_limit if request else self.config.response_body_limit
        side.collector = BodyCollector(limit, self.config.compression_bomb_limit, stages,
                                       tuple([hashlib.new(name) for name in self.config.file_hashes]))
        side.phase = _BODY_PHASES[framing]
        if request:
            tx.progress_ts = PROGRESS_BODY
        else:
            tx.progress_tc = PROGRESS_BODY
        self._touch(tx)

    def _body_bytes(self, side: Side, data: bytes) -> None:
        side.wire += len(data)
        self._keep(side, data)

    def _length_body_segment(self, side: Side, data: bytes | memoryview) -> int:
        """Bytes of a Content-Length body, nothing buffered before them: ``_body_length``'s work
        in one step, without their trip through the direction's buffer. Returns how many of
        ``data`` the body took (when it took its last byte, the message is done)."""
        size = min(len(data), side.remaining)
        self._body_bytes(side, bytes(data[:size]) if size < len(data) else bytes(data))
        side.remaining -= size
        if side.remaining == 0:
            self._message_done(side)
        return size

    def _keep(self, side: Side, data: bytes) -> None:
        collector = side.collector
        added = collector.add(data, self._room())
        self._held += added
        tx = side.tx
        if collector.decoded:
            _track_file(side, tx, collector.decoded)
        if side.direction == TO_SERVER:
            tx.request_body_len = side.wire
        else:
            tx.response_body_len = side.wire
        if added:
            tx.body_grew(side.direction == TO_SERVER, collector.kept)
            self._touch(tx)

    def _body_length(self, side: Side) -> bool:
        size = min(side.remaining, side.available())
        if size:
            self._body_bytes(side, side.take(size))
            side.remaining -= size
        if side.remaining == 0 or (side.closed and not side.available()):
            self._message_done(side)
            return True
        return False

    def _body_close(self, side: Side) -> bool:
        if side.available():
            self._body_bytes(side, side.take(side.available()))
        if side.closed:
            self._message_done(side)
            return True
        return False

    def _chunk_size(self, side: Side) -> bool:
        if not _chunk_size_plausible(side):
            self.stats.chunk_errors += 1
            self._message_done(side)
            return True
        line = self._next_line(side)
        if line is None:
            if side.closed:
                self._message_done(side)
                return True
            return False
        side.wire += len(line)
        text = line.strip(CHUNK_CTL)
        if not text:
            return True
        size = _chunk_length(text)
        if size is None:
            self.stats.chunk_errors += 1
            self._message_done(side)
        elif size:
            side.remaining = size
            side.phase = Phase.CHUNK_DATA
        else:
            side.phase = Phase.TRAILERS
        return True

    def _chunk_data(self, side: Side) -> bool:
        size = min(side.remaining, side.available())
        if size:
            self._body_bytes(side, side.take(size))
            side.remaining -= size
        if side.remaining == 0:
            side.phase = Phase.CHUNK_END
            return True
        if side.closed:
            self._message_done(side)
            return True
        return False

    def _chunk_end(self, side: Side) -> bool:
        """Skip whatever ends the chunk's data, up to its LF (as libhtp)."""
        lf = side.buf.find(b"\n", side.pos)
        if lf < 0:
            side.wire += side.available()
            side.pos = len(side.buf)
            if side.closed:
                self._message_done(side)
                return True
            return False
        side.wire += lf + 1 - side.pos
        side.pos = lf + 1
        side.phase = Phase.CHUNK_SIZE
        return True

    def _trailers(self, side: Side) -> bool:
        if not self._read_block(side):
            return False
        tx = side.tx
        if side.direction == TO_SERVER:
            tx.request_headers_raw += self._take_block(side, tx.request_headers)
        else:
            tx.response_headers_raw += self._take_block(side, tx.response_headers)
        self._message_done(side)
        return True

    # -- gaps inside bodies --------------------------------------------------
    def _gap_in_body(self, side: Side, size: int) -> bool:
        """Account a gap inside a delimited body; False if it ran past the
        message (the caller then resynchronises)."""
        side.collector.stop()
        side.wire += size
        file = side.tx.request_file if side.direction == TO_SERVER else side.tx.response_file
        if file is not None:
            file.gaps = True
        if side.phase == Phase.BODY_CLOSE:
            return True
        if side.phase in (Phase.BODY_LENGTH, Phase.CHUNK_DATA) and size <= side.remaining:
            side.remaining -= size
            if side.remaining == 0:
                if side.phase == Phase.BODY_LENGTH:
                    self._message_done(side)
                else:
                    side.phase = Phase.CHUNK_END
            return True
        return False

    def _finish_body(self, side: Side) -> None:
        """Count what the body collector saw; called when a message ends."""
        collector = side.collector
        if collector is None:
            return
        self.stats.body_truncated += collector.truncated
        self.stats.memcap_hits += collector.memcapped
        self.stats.decompression_bombs += collector.bombed
        self.stats.decompress_errors += collector.decode_failed
        tx = side.tx
        if side.direction == TO_SERVER:
            tx.request_body_truncated = collector.truncated
            tx.request_body_len = side.wire
            file = tx.request_file
        else:
            tx.response_body_truncated = collector.truncated
            tx.response_body_len = side.wire
            file = tx.response_file
        if file is not None:
            file.close(_body_complete(side))
        side.collector = None


_BODY_PHASES = {
    Framing.LENGTH: Phase.BODY_LENGTH,
    Framing.CHUNKED: Phase.CHUNK_SIZE,
    Framing.CLOSE: Phase.BODY_CLOSE,
}


def _body_complete(side: Side) -> bool:
    """Did the body end as framed (not cut by the end of its direction)?"""
    if side.phase == Phase.BODY_LENGTH:
        return side.remaining == 0
    return side.phase in _COMPLETE_PHASES


_COMPLETE_PHASES = frozenset((Phase.TRAILERS, Phase.BODY_CLOSE))


def _chunk_length(text: bytes) -> int | None:
    """libhtp's chunk-size reading: the leading hex digits (an extension or
    junk after them is ignored); None if there are none or too many."""
    end = 0
    while end < len(text) and text[end] in HEX_DIGITS:
        end += 1
    if end == 0:
        return None
    size = int(text[:end], 16)
    return size if size <= MAX_CHUNK_SIZE else None


def complete_progress(tx: HttpTx, direction: int) -> None:
    if direction == TO_SERVER:
        tx.progress_ts = PROGRESS_COMPLETE
    else:
        tx.progress_tc = PROGRESS_COMPLETE


def _track_file(side: Side, tx: HttpTx, size: int) -> None:
    """The body's file (opened on its first decoded byte, as Suricata's) has ``size`` bytes."""
    request = side.direction == TO_SERVER
    file = tx.request_file if request else tx.response_file
    if file is None:
        if side.file_checked:
            return
        side.file_checked = True
        file = open_file(tx, request, side.collector.hashers)
        if file is None:
            return
        if request:
            tx.request_file = file
        else:
            tx.response_file = file
    file.size = size


def _chunk_size_plausible(side: Side) -> bool:
    """libhtp's probe: the first byte that is not blank must be a hex digit."""
    for pos in range(side.pos, len(side.buf)):
        byte = side.buf[pos]
        if byte not in CHUNK_CTL:
            return byte in HEX_DIGITS
    return True
