"""The injector: turns kill decisions into Ethernet frames and writes them.

The core (``kill.Killer``) decides *what* to forge as plain ``ForgedSegment``
values; this module only builds the bytes (Ethernet + the flow's VLAN stack +
IPv4/IPv6 + a 20-byte TCP header, checksums computed) and writes them:

- ``RawInjector``: an AF_PACKET raw socket bound to one interface (live).  It
  is opened at start-up so a missing privilege or interface is one clear error
  before capture begins; a failed send is counted, never fatal.
- ``RawIpInjector``: raw IP sockets (IPv4 and IPv6, the header is ours) on a
  sensor that routes (inline): the kernel routes each segment to its
  destination; every segment carries a mark (SO_MARK) the inline firewall
  accepts before its queue.
- ``PcapKillWriter``: a pcap file (DLT_EN10MB) of exactly the frames that would
  have been sent, stamped with the trigger packet's time (replay, ``--kill-pcap``).

Both are sinks with ``handle(event)``; they act on ``events.Kill`` only, so
the runner can hand them the same event list as every other sink (the runner
gives Kill events to the injector first, in the consumer loop, for latency).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from ipaddress import ip_address

from mirrorwatch.core.decode.checksum import checksum, pseudo_sum
from mirrorwatch.core.events import ForgedSegment, Kill
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.console import ConsoleAlerts
from mirrorwatch.sinks.fmt import ZERO_MAC, flag_letters
from mirrorwatch.sinks.summary import hostport

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
_ETH = struct.Struct("!6s6s")
_VLAN = struct.Struct("!HH")
_TYPE = struct.Struct("!H")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_TCP_HLEN = 20
_IP4_DF = 0x4000



class InjectError(OSError):
    """The injection socket or kill pcap cannot be opened (one line for the user)."""


def build_frame(seg: ForgedSegment) -> bytes:
    """Ethernet frame bytes for ``seg``: L2 copied from the flow, checksums computed."""
    l2 = [_ETH.pack(seg.dst_mac or ZERO_MAC, seg.src_mac or ZERO_MAC)]
    l2.extend(_VLAN.pack(tpid, tci) for tpid, tci in seg.vlans)
    l2.append(_TYPE.pack(ETH_P_IP if seg.ipv == 4 else ETH_P_IPV6))
    return b"".join(l2) + build_packet(seg)


def build_packet(seg: ForgedSegment) -> bytes:
    """The IPv4/IPv6 packet of ``seg`` (no link header), checksums computed."""
    tcp = bytearray(_TCP.pack(seg.sport, seg.dport, seg.seq, seg.ack, (_TCP_HLEN // 4) << 4,
                              seg.flags, seg.win, 0, 0))
    tcp_sum = checksum(tcp, pseudo_sum(seg.src, seg.dst, 6, _TCP_HLEN))
    tcp[16:18] = tcp_sum.to_bytes(2, "big")
    if seg.ipv == 4:
        hdr = bytearray(_IP4.pack(0x45, 0, 20 + _TCP_HLEN, seg.ip_id, _IP4_DF, seg.ttl, 6, 0, seg.src, seg.dst))
        hdr[10:12] = checksum(hdr).to_bytes(2, "big")
    else:
        hdr = _IP6.pack(0x60000000, _TCP_HLEN, 6, seg.ttl, seg.src, seg.dst)
    return bytes(hdr) + bytes(tcp)


def describe(kill: Kill) -> str:
    """One console line per kill burst (what was, or in dry-run would be, sent).

    Segments that follow one another toward the same endpoint at a constant
    sequence step (the boundaries a burst predicts) are told once, with their
    count and step."""
    parts, frames, i = [], kill.frames, 0
    while i < len(frames):
        s = frames[i]
        n = _run_length(frames, i)
        parts.append(f"{flag_letters(s.flags)} {hostport(s.src, s.sport)}->{hostport(s.dst, s.dport)} "
                     f"seq={s.seq} ack={s.ack}"
                     + (f" (+{n - 1} at every {(frames[i + 1].seq - s.seq) & 0xFFFFFFFF})" if n > 2 else ""))
        i += n if n > 2 else 1
    verb = "would send" if kill.dry_run else "sent"
    return f"kill ({kill.trigger}) {verb}: " + "; ".join(parts)


def _run_length(frames: list, i: int) -> int:
    """How many segments from ``frames[i]`` on go the same way, with the same flags and ack, a constant step apart."""
    first = frames[i]
    step = (frames[i + 1].seq - first.seq) & 0xFFFFFFFF if i + 1 < len(frames) else 0
    n = 1
    while i + n < len(frames):
        s = frames[i + n]
        if (s.to_server, s.flags, s.ack) != (first.to_server, first.flags, first.ack) \
                or (s.seq - frames[i + n - 1].seq) & 0xFFFFFFFF != step or not step:
            break
        n += 1
    return n


class _Sink(Sink):
    """Common counters of the injection sinks; ``write`` sends or records one Kill."""

    takes = (Kill,)

    def __init__(self):
        self.frames = 0
        self.errors = 0
        self.bursts = 0

    def handle(self, event) -> None:
        if type(event) is Kill:
            self.bursts += 1
            self.write(event)

    def write(self, kill: Kill) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class KillLog(ConsoleAlerts):
    """Console sink: one ``describe()`` line per kill (its first burst; what --dry-run shows the operator).

    Follow-up bursts (challenge-ACK answers, re-fires) can be several per
    session; they are in the EVE ``kill`` events.
    """

    takes = (Kill,)

    def handle(self, event) -> None:
        if type(event) is Kill and event.trigger.startswith("sid:"):
            self.stream.write(describe(event) + "\n")


class RawInjector(_Sink):
    """Writes forged frames to ``iface`` through an AF_PACKET raw socket.

    The socket is bound with protocol 0, so it never receives; it is
    non-blocking, so a full transmit queue is a counted error, not a stall of
    the capture loop.  Dry-run kills are counted and not sent.
    """

    urgent = True  # served before every other sink (cli.listen): frames leave before alerts are formatted

    def __init__(self, iface: str, warn=None):
        super().__init__()
        self.iface = iface
        self.warn = warn if warn is not None else _warn_stderr
        self.dry_run_frames = 0
        self.last_error = ""
        self.error_kinds: dict[str, int] = {}
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise InjectError(f"cannot open a raw socket to inject on {iface}: permission denied "
                              "(run as root or grant CAP_NET_RAW, or use --dry-run)") from None
        except OSError as e:
            raise InjectError(f"cannot open a raw socket to inject on {iface}: {e.strerror or e}") from None
        try:
            sock.bind((iface, 0))
        except OSError as e:
            sock.close()
            why = "no such interface" if e.errno in (errno.ENODEV, errno.ENXIO) else (e.strerror or str(e))
            raise InjectError(f"cannot inject on interface {iface}: {why}") from None
        sock.setblocking(False)
        self.sock = sock
        self._send = sock.send

    def write(self, kill: Kill) -> None:
        if kill.dry_run:
            self.dry_run_frames += len(kill.frames)
            return
        for seg in kill.frames:
            try:
                self._transmit(seg)
                self.frames += 1
            except OSError as e:
                self._failed(e)

    def _transmit(self, seg: ForgedSegment) -> None:
        self._send(build_frame(seg))

    def _failed(self, e: OSError) -> None:
        self.errors += 1
        kind = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
        n = self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        self.last_error = f"{kind}: {e.strerror or e}"
        if n == 1:
            self.warn(f"sending a kill frame on {self.iface} failed ({self.last_error}); such failures "
                      "are counted in the stats (kill.send_errors), the capture goes on")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def counters(self) -> dict:
        c = {"iface": self.iface, "bursts": self.bursts, "frames_sent": self.frames, "send_errors": self.errors,
             "dry_run_frames": self.dry_run_frames}
        if self.error_kinds:
            c["send_error_kinds"] = dict(self.error_kinds)
        return c


class RawIpInjector(RawInjector):
    """Sends forged segments as IP packets through raw sockets (IPPROTO_RAW: the header is ours) on
    a host that routes them (inline); each carries ``mark`` (SO_MARK), which the inline firewall
    accepts before its queue.  Opened at start-up: a missing privilege is one error before traffic."""

    def __init__(self, mark: int = 0, warn=None):
        _Sink.__init__(self)
        self.iface = "routed (raw IP)"
        self.warn = warn if warn is not None else _warn_stderr
        self.dry_run_frames = 0
        self.last_error = ""
        self.error_kinds = {}
        self.socks: dict[int, socket.socket] = {}
        try:
            for ipv, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
                sock = self.socks[ipv] = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
                if mark:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
                sock.setblocking(False)
        except OSError as e:
            self.close()
            why = "permission denied (run as root or grant CAP_NET_RAW and CAP_NET_ADMIN)" \
                if isinstance(e, PermissionError) else (e.strerror or str(e))
            raise InjectError(f"cannot open a raw IP socket to send resets: {why}") from None

    def _transmit(self, seg: ForgedSegment) -> None:
        self.socks[seg.ipv].sendto(build_packet(seg), (str(ip_address(seg.dst)), 0))

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks = {}


def _warn_stderr(msg: str) -> None:
    sys.stderr.write(f"mirrorwatch: warning: {msg}\n")


_PCAP_HDR = struct.Struct("<IHHiIII")
_PCAP_REC = struct.Struct("<IIII")
_DLT_EN10MB = 1


class PcapKillWriter(_Sink):
    """Writes the frames of every kill (dry-run ones too: they are what would be sent) to a pcap."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        try:
            self.fp = open(path, "wb")
            self.fp.write(_PCAP_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, _DLT_EN10MB))
        except OSError as e:
            raise InjectError(f"cannot write kill pcap {path}: {e.strerror or e}") from None

    def write(self, kill: Kill) -> None:
        sec = int(kill.ts)
        usec = int(round((kill.ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        try:
            for seg in kill.frames:
                frame = build_frame(seg)
                self.fp.write(_PCAP_REC.pack(sec, usec, len(frame), len(frame)))
                self.fp.write(frame)
                self.frames += 1
        except (OSError, ValueError):
            self.errors += 1

    def flush(self) -> None:
        try:
            self.fp.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.fp is not None and not self.fp.closed:
            self.fp.close()

    def counters(self) -> dict:
        return {"pcap": os.path.basename(self.path), "bursts": self.bursts, "frames_written": self.frames,
                "write_errors": self.errors}
