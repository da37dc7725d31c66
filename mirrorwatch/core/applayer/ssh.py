"""SSH over one TCP flow: the identification banner of each side.

As Suricata (rust/src/ssh): each direction starts with a line
``SSH-protoversion-softwareversion[ comments]``; the line ends at LF (CR LF
tolerated). A line longer than ``max_banner_len`` is read from what arrived
and the rest of it is skipped. A first line that is not a banner makes the
parser give up. After the banner the binary packets are followed by their
length up to SSH_MSG_NEWKEYS, after which the direction is encrypted.
``ssh.proto`` / ``ssh.software`` are ``client_proto`` / ``client_software``
(to server) and ``server_proto`` / ``server_software`` (to client).
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import (
    PROGRESS_COMPLETE,
    PROGRESS_LINE,
    PROGRESS_NONE,
    TO_CLIENT,
    TO_SERVER,
    ParserStats,
    TxTracker,
    string_from_bytes,
)

BANNER_PREFIX = b"SSH-"
DEFAULT_MAX_BANNER_LEN = 256
DEFAULT_MAX_PACKET_LEN = 65535
PACKET_HEADER_LEN = 6
MSG_NEWKEYS = 21

# Progress of each side on the common scale: the banner is read (PROGRESS_LINE);
# complete once nothing more is in cleartext (SSH_MSG_NEWKEYS), or closed, or given up.
SSH_PROGRESS_BANNER = PROGRESS_LINE


def parse_banner(line: bytes) -> tuple[bytes, bytes] | None:
    """(proto version, software version) of a banner line without its line end."""
    if not line.startswith(BANNER_PREFIX):
        return None
    proto, dash, rest = line[len(BANNER_PREFIX):].partition(b"-")
    if not proto or not dash:
        return None
    return proto, rest.split(b" ", 1)[0]


class SshTransaction:
    __slots__ = (
        "client_proto",
        "client_software",
        "progress_tc",
        "progress_ts",
        "server_proto",
        "server_software",
        "tx_id",
    )

    def __init__(self) -> None:
        self.tx_id = 0
        self.progress_ts = PROGRESS_NONE
        self.progress_tc = PROGRESS_NONE
        self.client_proto: bytes | None = None
        self.client_software: bytes | None = None
        self.server_proto: bytes | None = None
        self.server_software: bytes | None = None


class _Side:
    __slots__ = ("banner_done", "encrypted", "header", "line", "skip", "skip_line", "stopped")

    def __init__(self) -> None:
        self.line = bytearray()
        self.skip_line = False
        self.banner_done = False
        self.header = bytearray()
        self.skip = 0
        self.encrypted = False
        self.stopped = False


class SshState:
    """Per-flow SSH parser with the stream interface."""

    def __init__(self, max_banner_len: int = DEFAULT_MAX_BANNER_LEN,
                 max_packet_len: int = DEFAULT_MAX_PACKET_LEN) -> None:
        self.max_banner_len = max_banner_len
        self.max_packet_len = max_packet_len
        self.stats = ParserStats()
        self.failed = False
        self.tx = SshTransaction()
        self._tracker = TxTracker()
        self._tracker.next_id()
        self._tracker.add(self.tx)
        self.stats.txs = 1
        self._sides = (_Side(), _Side())

    @property
    def txs(self) -> list:
        return self._tracker.txs

    def updated(self) -> list:
        return self._tracker.updated()

    def pop_done(self) -> list:
        return self._tracker.pop_done()

    @property
    def memuse(self) -> int:
        """Bytes held: partial banner lines and packet headers."""
        return sum(len(s.line) + len(s.header) for s in self._sides)

    def feed(self, direction: int, data: bytes | memoryview) -> None:
        side = self._sides[direction]
        if self.failed or side.stopped or side.encrypted:
            return
        data = bytes(data)
        pos = 0
        while pos < len(data) and not (self.failed or side.stopped or side.encrypted):
            if side.banner_done:
                pos = self._packet_bytes(direction, side, data, pos)
            else:
                pos = self._banner_bytes(direction, side, data, pos)

    def gap(self, direction: int, size: int) -> None:
        side = self._sides[direction]
        self.stats.gaps += 1
        if side.banner_done and not side.header and side.skip >= size:
            side.skip -= size
        elif not side.encrypted:
            side.stopped = True
            self._advance(direction, PROGRESS_COMPLETE)

    def close(self, direction: int) -> None:
        self._advance(direction, PROGRESS_COMPLETE)

    def _advance(self, direction: int, progress: int) -> None:
        """Raise one side's progress; a change is reported by ``updated``."""
        tx = self.tx
        if progress <= (tx.progress_ts if direction == TO_SERVER else tx.progress_tc):
            return
        if direction == TO_SERVER:
            tx.progress_ts = progress
        else:
            tx.progress_tc = progress
        self._tracker.touch(tx)

    def _banner_bytes(self, direction: int, side: _Side, data: bytes, pos: int) -> int:
        end = data.find(b"\n", pos)
        stop = len(data) if end < 0 else end
        if not side.skip_line:
            room = self.max_banner_len - len(side.line)
            side.line += data[pos:min(stop, pos + room)]
            if end < 0 and len(side.line) >= self.max_banner_len:
                side.skip_line = True
                self._banner(direction, side)
        if end < 0:
            return len(data)
        if not side.skip_line:
            self._banner(direction, side)
        side.banner_done = not self.failed
        side.skip_line = False
        return end + 1

    def _banner(self, direction: int, side: _Side) -> None:
        line = bytes(side.line).rstrip(b"\r")
        side.line.clear()
        parsed = parse_banner(line)
        if parsed is None:
            self.failed = True
            self.stats.parse_errors += 1
            self._advance(TO_SERVER, PROGRESS_COMPLETE)
            self._advance(TO_CLIENT, PROGRESS_COMPLETE)
            return
        if direction == TO_SERVER:
            self.tx.client_proto, self.tx.client_software = parsed
        else:
            self.tx.server_proto, self.tx.server_software = parsed
        self._advance(direction, SSH_PROGRESS_BANNER)

    def _packet_bytes(self, direction: int, side: _Side, data: bytes, pos: int) -> int:
        if side.skip:
            step = min(side.skip, len(data) - pos)
            side.skip -= step
            return pos + step
        take = min(PACKET_HEADER_LEN - len(side.header), len(data) - pos)
        side.header += data[pos:pos + take]
        if len(side.header) == PACKET_HEADER_LEN:
            length = int.from_bytes(side.header[:4], "big")
            msg_code = side.header[5]
            side.header.clear()
            if length < PACKET_HEADER_LEN - 4 or length > self.max_packet_len:
                side.stopped = True
                self.stats.parse_errors += 1
                self._advance(direction, PROGRESS_COMPLETE)
            elif msg_code == MSG_NEWKEYS:
                side.encrypted = True
                self._advance(direction, PROGRESS_COMPLETE)
            else:
                side.skip = length - (PACKET_HEADER_LEN - 4)
        return pos + take


def eve_record(tx: SshTransaction) -> dict | None:
    """Suricata's EVE ``ssh`` object: client/server {proto_version, software_version}."""
    out: dict = {}
    for key, proto, software in (("client", tx.client_proto, tx.client_software),
                                 ("server", tx.server_proto, tx.server_software)):
        if proto is None:
            continue
        side: dict = {"proto_version": string_from_bytes(proto)}
        if software:
            side["software_version"] = string_from_bytes(software)
        out[key] = side
    return out or None
