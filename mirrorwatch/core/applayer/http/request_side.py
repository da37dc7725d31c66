"""The request direction's states (see the table in state.py)."""

from __future__ import annotations

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, PROGRESS_HEADERS, PROGRESS_LINE
from mirrorwatch.core.applayer.http.framing import Framing
from mirrorwatch.core.applayer.http.message import MessageMachine
from mirrorwatch.core.applayer.http.request import (
    SPACE_BYTES, apply_host_header, apply_request_line, looks_like_request_line, request_framing,
)
from mirrorwatch.core.applayer.http.stream import Phase, Side, chomp, stopped
from mirrorwatch.core.applayer.http.transaction import HttpTx


class RequestMachine(MessageMachine):
    """Handlers for the to-server side; each returns True to run again.

    HttpState sets up both sides (``_ts``, ``_tc``) and the counters.
    """

    __slots__ = ("_ts", "_tc", "_next_id", "_connect_tx")

    # -- states ------------------------------------------------------------
    def _ts_idle(self, side: Side) -> bool:
        line = self._next_line(side)
        if line is None:
            return False
        content = chomp(line)
        if not looks_like_request_line(content):
            self.stats.ignored_lines += bool(content.strip(SPACE_BYTES))
            return True
        tx = self._new_tx()
        if tx is None:
            self._fail(side)
            return False
        apply_request_line(tx, content)
        tx.progress_ts = PROGRESS_LINE
        self._touch(tx)
        side.tx = tx
        side.phase = Phase.PROTOCOL if tx.protocol is None else Phase.HEADERS
        return True

    def _new_tx(self) -> HttpTx | None:
        """A transaction for a new request, or None at the max-tx limit."""
        if self.config.max_tx and len(self.txs) >= self.config.max_tx:
            self.stats.max_tx_hits += 1
            return None
        tx = HttpTx(self._next_id)
        self._next_id += 1
        self.stats.txs += 1
        if stopped(self._tc.phase):
            tx.progress_tc = PROGRESS_COMPLETE
        self.txs.append(tx)
        return tx

    def _ts_protocol(self, side: Side) -> bool:
        """A request line without protocol: HTTP/0.9 unless more than blank
        bytes follow (then it is a request whose protocol is missing and
        headers follow, as libhtp decides). The answer also comes from the
        response side (any response byte means 0.9) or from close."""
        pending = side.buf[side.pos:]
        if pending.lstrip(SPACE_BYTES) or len(pending) > self.config.field_limit:
            side.phase = Phase.HEADERS
            return True
        if side.closed:
            self._settle_http09(side)
            return True
        return False

    def _settle_http09(self, side: Side) -> None:
        """The pending request is HTTP/0.9: complete it; its response has no
        status line or headers; later request bytes are ignored."""
        tx = side.tx
        tx.is_http09 = True
        self._message_done(side)
        side.phase = Phase.DISCARD
        self.stats.ignored_bytes += side.drop_buffer()

    def _ts_headers(self, side: Side) -> bool:
        if not self._read_block(side):
            return False
        tx = side.tx
        tx.request_headers_raw = self._take_block(side, tx.request_headers)
        apply_host_header(tx)
        tx.progress_ts = PROGRESS_HEADERS
        self._touch(tx)
        framing, length, malformed = request_framing(tx)
        self.stats.parse_errors += malformed
        if framing == Framing.TUNNEL:
            self._connect_tx = tx
            self._message_done(side)
            side.phase = Phase.CONNECT_WAIT
            return True
        self._start_body(side, framing, length)
        return True

    def _ts_connect_wait(self, side: Side) -> bool:
        """Bytes after a CONNECT wait (within the memcap) until its answer."""
        excess = side.available() - self._room()
        if excess > 0:
            self.stats.memcap_hits += 1
            del side.buf[len(side.buf) - excess:]
        return False

