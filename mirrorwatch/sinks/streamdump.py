"""``--dump-streams DIR``: each direction's reassembled bytes in a file, named as tcpflow names them.

File names follow tcpflow 1.6's default template ``%A.%a-%B.%b%V%v%C%c``:
sender address and port, then receiver address and port; IPv4 octets
zero-padded to three digits, ports to five, IPv6 addresses in their
compressed text form (``2001:db8::1.04321``); a VLAN-tagged session gets
``--<vlan id>`` (outermost tag).  Like tcpflow, a file is created only when
the direction has data, and when its name is taken (an earlier session on
the same addresses, ports and VLAN, in this run or a previous one) the
connection count is added: ``c1``, ``c2``... (the first free name, found with
exclusive creation, so the dumper keeps no list of past names).  Example:
``010.000.000.001.01234-198.051.100.002.00080``.

Bytes are written in stream order.  A gap the reassembler skipped (bytes
the sensor never saw) is written as zero bytes, at most
``stream.dump-max-gap`` of them (tcpflow's positioned writes leave a gap as a
hole of zeros too, but as long as the sequence jump, and sequence numbers
are attacker-chosen): a gap up to that size is a hole of exactly its length,
so the file's offsets are the stream's; a longer one is shortened to that
many zeros (or to none with 0), and every byte after it sits that much
earlier in the file than in the stream.  Every gap is counted (``gaps``,
``gap_bytes_skipped``: the bytes left out of the files, ``gaps_shortened``).

All files together get at most ``stream.dump-max-bytes`` (data and gap
zeros); then the dumper stops writing, says so once (one line through
``warn``) and counts what it did not write (``budget_reached``,
``bytes_not_written`` of the streams it was following, ``streams_skipped``:
streams that started later, not followed at all).  The dumper is a ``reassembly`` observer: it
receives every settled byte exactly once, independent of what detection
trims, and costs nothing when not attached.  Its memory is one small record
per live stream and at most ``max_open`` open files.

Wiring (replay and listen): ``dumper = StreamDumper(dir, max_gap=..., max_bytes=...)``;
``engine.stream_hooks.append(dumper.on_new_stream)``; after the last packet
``engine.finish()`` (it flushes every stream), then ``dumper.close()``.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from ipaddress import IPv6Address

DUMP_MAX_GAP = 4096  # stream.dump-max-gap: zero bytes written for one gap at most
DUMP_MAX_BYTES = 1 << 30  # stream.dump-max-bytes: bytes written to all files together
MAX_OPEN_FILES = 64  # stream files kept open at once (least recently written closed first)
NAME_HINTS = 4096  # base names whose next free connection count is remembered (least recently used dropped)
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def addr_text(a: bytes) -> str:
    """tcpflow's address text: zero-padded IPv4 octets, compressed IPv6."""
    if len(a) == 4:
        return "%03d.%03d.%03d.%03d" % tuple(a)
    return str(IPv6Address(a))


def flow_file_name(src: bytes, sport: int, dst: bytes, dport: int, vlan: int | None = None) -> str:
    """tcpflow's ``%A.%a-%B.%b%V%v`` (the ``%C%c`` connection count is added by the dumper)."""
    name = f"{addr_text(src)}.{sport:05d}-{addr_text(dst)}.{dport:05d}"
    if vlan is not None:
        name += f"--{vlan}"
    return name


def _stderr_line(text: str) -> None:
    print(f"mirrorwatch: {text}", file=sys.stderr, flush=True)


class _Dump:
    """One stream's file: its base name, the name it got (None until its first byte), its
    size, and ``shift``: stream offset minus file offset (the gap bytes left out so far)."""

    __slots__ = ("base", "name", "size", "shift")

    def __init__(self, base: str):
        self.base = base
        self.name: str | None = None
        self.size = 0
        self.shift = 0


class StreamDumper:
    """Writes each reassembled direction to ``directory``; see the module docstring."""

    def __init__(self, directory: str, max_open: int = MAX_OPEN_FILES, max_gap: int = DUMP_MAX_GAP,
                 max_bytes: int = DUMP_MAX_BYTES, warn=_stderr_line):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.max_open = max(1, max_open)
        self.max_gap = max(0, max_gap)
        self.max_bytes = max(0, max_bytes)
        self.warn = warn
        self._streams: dict = {}  # stream -> _Dump, while the stream lives
        self._open: OrderedDict = OrderedDict()  # file name -> open file, least recently used first
        self._hints: OrderedDict = OrderedDict()  # base name -> the connection count to try first
        self.files = 0
        self.bytes = 0  # written: data and gap zeros
        self.gaps = 0
        self.gaps_shortened = 0
        self.gap_bytes_skipped = 0
        self.bytes_not_written = 0
        self.budget_reached = False
        self.streams_skipped = 0  # streams that started after the budget was reached (not followed)
        self.errors = 0
        self.last_error: str | None = None

    # -- FlowTable hook -------------------------------------------------------
    def on_new_stream(self, flow, direction: int, stream) -> None:
        """Attach to a stream the flow table just created (``FlowTable.on_new_stream``)."""
        if self.budget_reached:
            self.streams_skipped += 1
            return
        vlan = flow.vlan_id[0] if flow.vlan_id else None
        if direction == 0:
            base = flow_file_name(flow.client, flow.cport, flow.server, flow.sport, vlan)
        else:
            base = flow_file_name(flow.server, flow.sport, flow.client, flow.cport, vlan)
        self._streams[stream] = _Dump(base)
        stream.observer = self

    # -- reassembly observer ---------------------------------------------------
    def data(self, stream, offset: int, data: bytes) -> None:
        dump = self._streams.get(stream)
        if dump is None or not data:
            return
        if self.budget_reached:
            self.bytes_not_written += len(data)
            return
        pos = offset - dump.shift
        hole = max(0, pos - dump.size)  # the zeros of a gap before these bytes (at most max_gap)
        room = self.max_bytes - self.bytes - hole
        if room < len(data):
            self._stop(len(data) - max(room, 0))
            if room <= 0:
                return
            data = data[:room]
        fh = self._file(dump)
        if fh is None:
            return
        try:
            fh.seek(pos)
            fh.write(data)
        except OSError as e:
            self._error(dump.name, e)
            return
        end = pos + len(data)
        if end > dump.size:
            self.bytes += end - dump.size
            dump.size = end

    def gap(self, stream, offset: int, length: int) -> None:
        """A hole of ``length`` stream bytes: at most ``max_gap`` zeros of it reach the file
        (as a hole the next write leaves), the rest is left out."""
        dump = self._streams.get(stream)
        if dump is None or length <= 0:
            return
        self.gaps += 1
        skipped = length - min(length, self.max_gap)
        if skipped:
            self.gaps_shortened += 1
            self.gap_bytes_skipped += skipped
            dump.shift += skipped

    def end(self, stream) -> None:
        dump = self._streams.pop(stream, None)
        if dump is not None:
            if dump.name is not None:
                fh = self._open.pop(dump.name, None)
                if fh is not None:
                    fh.close()
            stream.observer = None

    def close(self) -> None:
        for fh in self._open.values():
            try:
                fh.close()
            except OSError:
                pass
        self._open.clear()

    def counters(self) -> dict:
        return {"files": self.files, "bytes": self.bytes, "gaps": self.gaps, "gaps_shortened": self.gaps_shortened,
                "gap_bytes_skipped": self.gap_bytes_skipped, "budget_reached": self.budget_reached,
                "bytes_not_written": self.bytes_not_written, "streams_skipped": self.streams_skipped,
                "errors": self.errors}

    # -- budget and files ---------------------------------------------------------
    def _stop(self, not_written: int) -> None:
        self.budget_reached = True
        self.bytes_not_written += not_written
        self.warn(f"--dump-streams: stream.dump-max-bytes ({self.max_bytes:,} bytes) reached in {self.dir}: "
                  f"no more stream bytes are written (--set stream.dump-max-bytes=SIZE for more)")

    def _file(self, dump: _Dump):
        if dump.name is None:
            return self._create(dump)
        fh = self._open.get(dump.name)
        if fh is not None:
            self._open.move_to_end(dump.name)
            return fh
        try:
            fh = open(os.path.join(self.dir, dump.name), "r+b")
        except OSError as e:
            self._error(dump.name, e)
            return None
        return self._opened(dump.name, fh)

    def _create(self, dump: _Dump):
        """The first free name of base, base c1, base c2... (tcpflow's connection count); where
        the search for a base ended last time is remembered for the most recent bases, so a
        5-tuple used again and again does not cost a growing number of tries."""
        count = self._hints.pop(dump.base, 0)
        while True:
            name = dump.base + (f"c{count}" if count else "")
            try:
                fd = os.open(os.path.join(self.dir, name), _CREATE, 0o666)
            except FileExistsError:
                count += 1
                continue
            except OSError as e:
                self._error(name, e)
                return None
            dump.name = name
            self.files += 1
            self._hints[dump.base] = count + 1
            if len(self._hints) > NAME_HINTS:
                self._hints.popitem(last=False)
            return self._opened(name, os.fdopen(fd, "r+b"))

    def _opened(self, name: str, fh):
        self._open[name] = fh
        if len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return fh

    def _error(self, name: str, e: OSError) -> None:
        self.errors += 1
        self.last_error = f"cannot write stream file {os.path.join(self.dir, name)}: {e.strerror or e}"
