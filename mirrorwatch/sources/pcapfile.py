"""pcap / pcapng files as a packet source (replay), and a classic pcap writer.

Files are checked and iterated through libpcap (pcapy-ng ``open_offline``),
which reads pcap (micro- and nanosecond) and pcapng.  Several files are one continuous capture,
read in the order given.  Every file is opened and its link type checked
*before* any packet is processed, so a bad path or an unsupported link type is
reported at once as one line::

    CaptureError("PATH: cannot read: <libpcap message>")
    CaptureError("PATH: unsupported link type N (NAME)")

A file whose end is damaged (truncated last record, a pcapng block libpcap
rejects) keeps every packet before the damage; the damage is reported as a
one-line warning in ``CaptureStats.warnings`` and reading goes on with the next
file.

``run(paths, callback)`` calls ``callback(ts, linktype, frame, wirelen)``
once per frame.  ``run_headers`` is the fastest: each frame goes straight to
the consumer's ``FrameSink`` (replay uses it), from ``savefile`` (a classic
pcap file read in place) or from libpcap's loop (pcapng and the rest).
``PcapFiles`` is libpcap's reading as an iterator, for callers that want to
pull.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable, Iterator

import pcapy

from mirrorwatch.core.decode.link import SUPPORTED_LINKTYPES
from mirrorwatch.core.decode.ownframes import FrameSink
from mirrorwatch.sources.savefile import SavefileError, open_savefile


def _dlt_name(dlt: int) -> str:
    """libpcap's own name for a link type (pcap_datalink_val_to_name), else 'unknown'."""
    try:
        import ctypes
        import ctypes.util

        lib = ctypes.CDLL(ctypes.util.find_library("pcap") or "libpcap.so")
        fn = lib.pcap_datalink_val_to_name
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_int]
        name = fn(dlt)
    except (OSError, AttributeError):
        name = None
    return name.decode() if name else "unknown"


class CaptureError(Exception):
    """A capture source that cannot be used; the message is one line for the operator."""


class CaptureStats:
    """What a replay read: packets/bytes per run, and one-line warnings about damaged files."""

    __slots__ = ("files", "packets", "bytes", "warnings")

    def __init__(self):
        self.files = 0
        self.packets = 0
        self.bytes = 0
        self.warnings: list[str] = []


def _one_line(msg, path: str = "") -> str:
    text = " ".join(str(msg).split()) or "unknown error"
    if path and text.startswith(path + ": "):  # libpcap often names the file itself
        text = text[len(path) + 2:]
    return text


def open_pcap(path, supported: Iterable[int] = SUPPORTED_LINKTYPES):
    """Open one capture file; returns ``(reader, linktype)`` or raises a one-line CaptureError."""
    p = str(path)
    try:
        reader = pcapy.open_offline(p)
    except pcapy.PcapError as e:
        raise CaptureError(f"{p}: cannot read: {_one_line(e, p)}") from None
    except (OSError, ValueError, TypeError) as e:
        raise CaptureError(f"{p}: cannot read: {_one_line(e, p)}") from None
    lt = reader.datalink()
    if lt not in supported:
        reader.close()
        raise CaptureError(f"{p}: unsupported link type {lt} ({_dlt_name(lt)})")
    return reader, lt


def check_files(paths: Iterable, supported: Iterable[int] = SUPPORTED_LINKTYPES) -> list[str]:
    """Open every file once (then close it); raise CaptureError for the first bad one."""
    supported = frozenset(supported)
    out = []
    for p in paths:
        reader, _ = open_pcap(p, supported)
        reader.close()
        out.append(str(p))
    if not out:
        raise CaptureError("no capture file given")
    return out


class _Calls(FrameSink):
    """``run``'s sink: ``callback(ts, linktype, frame, wirelen)`` for each frame, counted."""

    def __init__(self, callback, linktype: int, count: list):
        self.callback = callback
        self.linktype = linktype
        self.count = count

    def frame(self, ts: float, wirelen: int, data: bytes) -> None:
        self.count[0] += 1
        self.count[1] += wirelen
        self.callback(ts, self.linktype, data, wirelen)


def run(paths: Iterable, callback: Callable[[float, int, bytes, int], object],
        supported: Iterable[int] = SUPPORTED_LINKTYPES, stats: CaptureStats | None = None) -> CaptureStats:
    """Feed every frame of ``paths`` (in order) to ``callback(ts, linktype, frame, wirelen)``.

    All files are checked before the first frame is delivered.  An exception
    raised by ``callback`` stops the replay and propagates unchanged.
    """
    count = [0, 0]
    return run_headers(paths, lambda lt: _Calls(callback, lt, count), lambda: (count[0], count[1]), supported,
                       stats)


def run_headers(paths: Iterable, bind: Callable[[int], FrameSink], delivered: Callable[[], tuple[int, int]],
                supported: Iterable[int] = SUPPORTED_LINKTYPES, stats: CaptureStats | None = None) -> CaptureStats:
    """The lowest-overhead source: each frame straight into the consumer's ``FrameSink``.

    For each file (in order) ``bind(linktype)`` returns the sink.  A classic
    pcap file is read in place (``savefile``: compiled, the sink's ``frame``
    is a C call); any other goes through libpcap's loop, which calls
    ``sink(hdr, data)``.  The sink (e.g. the engine, which counts frames and
    bytes anyway) does the counting, and ``delivered()`` reports its running
    (packets, bytes) totals for the stats and for the position of a damaged
    file's damage.  Otherwise as ``run``.
    """
    supported = frozenset(supported)
    files = check_files(paths, supported)
    st = stats if stats is not None else CaptureStats()
    for p in files:
        st.files += 1
        pkts0, bytes0 = delivered()
        try:
            _read_one(p, bind, supported)
        except (pcapy.PcapError, SavefileError) as e:
            st.warnings.append(f"{p}: damaged after packet {delivered()[0] - pkts0}: {_one_line(e)}")
        finally:
            pkts1, bytes1 = delivered()
            st.packets += pkts1 - pkts0
            st.bytes += bytes1 - bytes0
    return st


def _read_one(path: str, bind: Callable[[int], FrameSink], supported: frozenset) -> None:
    """One file into the sink ``bind`` gives for its link type: in place when it is a classic pcap file,
    else through libpcap (the sink raising stops either and goes on up)."""
    sf = open_savefile(path, supported)
    if sf is not None:
        try:
            sf.loop(bind(sf.linktype))
        finally:
            sf.close()
        return
    reader, lt = open_pcap(path, supported)
    try:
        reader.loop(0, bind(lt))  # pcapy stops the loop and re-raises what the callback raised
    finally:
        reader.close()


class PcapFiles:
    """Iterate ``(ts, linktype, frame, wirelen)`` over several files as one capture.

    Files are checked on construction (``CaptureError`` at once); warnings about
    damaged files collect in ``.stats.warnings``.
    """

    def __init__(self, paths: Iterable, supported: Iterable[int] = SUPPORTED_LINKTYPES):
        self.supported = frozenset(supported)
        self.paths = check_files(paths, self.supported)
        self.stats = CaptureStats()

    def __iter__(self) -> Iterator[tuple[float, int, bytes, int]]:
        st = self.stats
        for p in self.paths:
            reader, lt = open_pcap(p, self.supported)
            st.files += 1
            nxt = reader.next
            try:
                while True:
                    try:
                        hdr, data = nxt()
                    except pcapy.PcapError as e:
                        st.warnings.append(f"{p}: damaged after packet {st.packets}: {_one_line(e)}")
                        break
                    if hdr is None:
                        break
                    s, us = hdr.getts()
                    wl = hdr.getlen()
                    st.packets += 1
                    st.bytes += wl
                    yield s + us * 1e-6, lt, data, wl
            finally:
                reader.close()


class PcapWriter:
    """Writes a classic (microsecond) pcap file with one link type."""

    _REC = struct.Struct("<IIII")

    def __init__(self, path, linktype: int = 1, snaplen: int = 262144):
        self.path = str(path)
        self.linktype = linktype
        try:
            self._f = open(self.path, "wb")
        except OSError as e:
            raise CaptureError(f"{self.path}: cannot write: {e.strerror or e}") from None
        self._f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        self.snaplen = snaplen
        self.count = 0

    def write(self, ts: float, frame: bytes, wirelen: int | None = None) -> None:
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        data = bytes(frame[: self.snaplen])
        self._f.write(self._REC.pack(sec, usec, len(data), len(frame) if wirelen is None else wirelen))
        self._f.write(data)
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
