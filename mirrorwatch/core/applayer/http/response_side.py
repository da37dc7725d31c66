"""The response direction's states (see the table in state.py), and the loop that runs
either direction's table (this being the first class that has the actions of both)."""

from __future__ import annotations

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, PROGRESS_HEADERS, PROGRESS_LINE, TO_SERVER
from mirrorwatch.core.applayer.http.framing import Framing
from mirrorwatch.core.applayer.http.headers import has_token
from mirrorwatch.core.applayer.http.request import SPACE_BYTES
from mirrorwatch.core.applayer.http.request_side import RequestMachine
from mirrorwatch.core.applayer.http.response import (
    CLIENT_ERROR, apply_status_line, looks_like_status_line, response_framing,
)
from mirrorwatch.core.applayer.http.stream import Phase, Side, chomp, stopped
from mirrorwatch.core.applayer.http.transaction import HttpTx

EXPECT = b"expect"
CONTINUE_TOKEN = b"100-continue"
# The phases the state-table switch tells apart, and the request direction (compiled: C constants).
_TO_SERVER = TO_SERVER
_IDLE, _PROTOCOL, _STATUS, _HEADERS = Phase.IDLE, Phase.PROTOCOL, Phase.STATUS, Phase.HEADERS
_BODY_LENGTH, _BODY_CLOSE, _CONNECT_WAIT = Phase.BODY_LENGTH, Phase.BODY_CLOSE, Phase.CONNECT_WAIT
_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = (
    Phase.CHUNK_SIZE, Phase.CHUNK_DATA, Phase.CHUNK_END, Phase.TRAILERS)


class ResponseMachine(RequestMachine):
    """Handlers for the to-client side; each returns True to run again. The state-table loop.

    RequestMachine supplies ``_settle_http09``.
    """

    __slots__ = ("tunnel", "_tc_next_id")

    # -- the state table (state.py) ------------------------------------------
    def _run(self, side: Side) -> None:
        """Act on ``side``'s states while they make progress and it is parsed."""
        while not stopped(side.phase) and self._step(side):
            pass
        side.compact()

    def _step(self, side: Side) -> bool:
        """The action of ``side``'s phase: a typed call (compiled: a C switch on the phase);
        True to run again."""
        phase = side.phase
        if phase == _BODY_LENGTH:
            return self._body_length(side)
        if phase == _HEADERS:
            return self._ts_headers(side) if side.direction == _TO_SERVER else self._tc_headers(side)
        if phase == _IDLE:
            return self._ts_idle(side) if side.direction == _TO_SERVER else self._tc_idle(side)
        if phase == _CHUNK_SIZE:
            return self._chunk_size(side)
        if phase == _CHUNK_DATA:
            return self._chunk_data(side)
        if phase == _CHUNK_END:
            return self._chunk_end(side)
        if phase == _TRAILERS:
            return self._trailers(side)
        if phase == _BODY_CLOSE:
            return self._body_close(side)
        if phase == _PROTOCOL:
            return self._ts_protocol(side)
        if phase == _STATUS:
            return self._tc_status(side)
        return self._ts_connect_wait(side)  # CONNECT_WAIT, the last phase one side has

    # -- states ------------------------------------------------------------
    def _tc_idle(self, side: Side) -> bool:
        if not side.available():
            return False
        pending = self._peek_response_tx()
        if pending is not None and pending is self._ts.tx and self._ts.phase == Phase.PROTOCOL:
            self._settle_http09(self._ts)
        if pending is not None and pending.is_http09:
            side.tx = self._response_tx()
            side.tx.progress_tc = PROGRESS_LINE
            self._start_body(side, Framing.CLOSE, 0)
            return True
        consumed, line = self._status_line(side)
        if line is None:
            return consumed
        side.tx = self._response_tx()
        return self._begin_response(side, line)

    def _tc_status(self, side: Side) -> bool:
        """After an interim (1xx) response: the final status line, same tx."""
        consumed, line = self._status_line(side)
        if line is not None:
            return self._begin_response(side, line)
        if side.closed and not side.available():
            self._message_done(side)
            return True
        return consumed

    def _status_line(self, side: Side) -> tuple[bool, bytes | None]:
        """(a line was consumed, the status line or None). Blank lines and
        lines that are not status lines are skipped (counted)."""
        line = self._next_line(side)
        if line is None:
            return False, None
        content = chomp(line)
        if looks_like_status_line(content):
            return True, content
        self.stats.ignored_lines += bool(content.strip(SPACE_BYTES))
        return True, None

    def _begin_response(self, side: Side, line: bytes) -> bool:
        tx = side.tx
        apply_status_line(tx, line)
        tx.progress_tc = PROGRESS_LINE
        self._touch(tx)
        side.phase = Phase.HEADERS
        return True

    def _tc_headers(self, side: Side) -> bool:
        if not self._read_block(side):
            return False
        tx = side.tx
        tx.response_headers_raw = self._take_block(side, tx.response_headers)
        tx.progress_tc = PROGRESS_HEADERS
        self._touch(tx)
        framing, length, malformed = response_framing(tx)
        self.stats.parse_errors += malformed
        if framing == Framing.INTERIM:
            self._interim(side, tx)
            return True
        if tx is self._connect_tx and framing != Framing.TUNNEL:
            self._resume_requests(self._ts)
        if framing == Framing.TUNNEL:
            self._message_done(side)
            self._enter_tunnel()
            return False
        if tx.status_code in CLIENT_ERROR:
            self._drop_expected_body(tx)
        self._start_body(side, framing, length)
        return True

    def _interim(self, side: Side, tx: HttpTx) -> None:
        """A 1xx other than 101: forget it; the final response follows for the
        same request (libhtp does this for 100 only)."""
        self.stats.interim_responses += 1
        self._held -= len(tx.response_headers_raw)
        tx.response_headers = []
        tx.response_headers_raw = b""
        tx.progress_tc = PROGRESS_LINE
        side.phase = Phase.STATUS

    def _drop_expected_body(self, tx: HttpTx) -> None:
        """A 4xx to a request that waits on "Expect: 100-continue" before its
        body: the body will not come (libhtp: REQ_FINALIZE)."""
        ts = self._ts
        if ts.tx is not tx or ts.phase != Phase.BODY_LENGTH or ts.wire:
            return
        expect = tx.request_header(EXPECT)
        if expect is not None and has_token(expect, CONTINUE_TOKEN):
            self._message_done(ts)

    def _resume_requests(self, side: Side) -> None:
        """The CONNECT was refused: parse the waiting bytes as HTTP again."""
        self._connect_tx = None
        if side.phase == Phase.CONNECT_WAIT:
            side.phase = Phase.IDLE
            self._run(side)

    def _peek_response_tx(self) -> HttpTx | None:
        for tx in self.txs:
            if tx.tx_id == self._tc_next_id:
                return tx
        return None

    def _response_tx(self) -> HttpTx:
        """The transaction the next response answers (a new one if none)."""
        tx = self._peek_response_tx()
        if tx is None:
            self.stats.unmatched_responses += 1
            tx = HttpTx(self._next_id)
            self._next_id += 1
            self.stats.txs += 1
            tx.progress_ts = PROGRESS_COMPLETE
            self.txs.append(tx)
        self._tc_next_id = tx.tx_id + 1
        return tx

    def _enter_tunnel(self) -> None:
        """CONNECT 2xx or 101: the rest of the connection is not HTTP."""
        self.tunnel = True
        self.stats.tunnels += 1
        for side in (self._ts, self._tc):
            if side.tx is not None:
                self._message_done(side)
            self.stats.tunnel_bytes += side.drop_buffer()
            side.phase = Phase.TUNNEL
        for tx in self.txs:
            if not tx.done:
                tx.progress_ts = tx.progress_tc = PROGRESS_COMPLETE
                self._touch(tx)
