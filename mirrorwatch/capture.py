"""pcap / pcapng files as a packet source (replay), and a classic pcap writer.

Reading goes through libpcap (pcapy-ng ``open_offline``), which reads pcap
(micro- and nanosecond) and pcapng.  Several files are one continuous capture,
read in the order given.  Every file is opened and its link type checked
*before* any packet is processed, so a bad path or an unsupported link type is
reported at once as one line::

    CaptureError("PATH: cannot read: <libpcap message>")
    CaptureError("PATH: unsupported link type N (NAME)")

A file whose end is damaged (truncated last record, a pcapng block libpcap
rejects) keeps every packet before the damage; the damage is reported as a
one-line warning in ``CaptureStats.warnings`` and reading goes on with the next
file.

``run(paths, callback)`` is the fast path: ``callback(ts, linktype, frame,
wirelen)`` is called once per frame from libpcap's own loop.  ``PcapFiles``
is the same as an iterator, for callers that want to pull.
"""

from __future__ import annotations

import struct
from typing import Callable, Iterable, Iterator

import pcapy

from .decode import SUPPORTED_LINKTYPES

# libpcap DLT numbers -> names, for error messages about link types we cannot decode.
_DLT_NAMES = {
    0: "NULL", 1: "EN10MB", 6: "IEEE802", 7: "ARCNET", 8: "SLIP", 9: "PPP", 10: "FDDI",
    11: "ATM_RFC1483", 12: "RAW", 14: "RAW", 50: "PPP_SERIAL", 51: "PPP_ETHER", 101: "RAW",
    104: "C_HDLC", 105: "IEEE802_11", 107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL",
    117: "PFLOG", 119: "PRISM_HEADER", 127: "IEEE802_11_RADIO", 138: "APPLE_IP_OVER_IEEE1394",
    139: "MTP2_WITH_PHDR", 143: "DOCSIS", 147: "USER0", 165: "BACNET_MS_TP", 187: "BLUETOOTH_HCI_H4",
    189: "USB_LINUX", 192: "PPI", 195: "IEEE802_15_4", 201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    220: "USB_LINUX_MMAPPED", 227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
    242: "IPNET", 249: "USBPCAP", 252: "WIRESHARK_UPPER_PDU", 258: "PKTAP", 263: "DBUS",
    276: "LINUX_SLL2", 274: "DSA_TAG_BRCM", 275: "DSA_TAG_BRCM_PREPEND", 281: "DSA_TAG_DSA",
    282: "DSA_TAG_EDSA", 284: "NETLINK", 253: "NETLINK",
}


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


def _one_line(msg) -> str:
    return " ".join(str(msg).split()) or "unknown error"


def open_pcap(path, supported: Iterable[int] = SUPPORTED_LINKTYPES):
    """Open one capture file; returns ``(reader, linktype)`` or raises a one-line CaptureError."""
    p = str(path)
    try:
        reader = pcapy.open_offline(p)
    except pcapy.PcapError as e:
        raise CaptureError(f"{p}: cannot read: {_one_line(e)}") from None
    except (OSError, ValueError, TypeError) as e:
        raise CaptureError(f"{p}: cannot read: {_one_line(e)}") from None
    lt = reader.datalink()
    if lt not in supported:
        reader.close()
        raise CaptureError(f"{p}: unsupported link type {lt} ({_DLT_NAMES.get(lt, 'unknown')})")
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


def run(paths: Iterable, callback: Callable[[float, int, bytes, int], object],
        supported: Iterable[int] = SUPPORTED_LINKTYPES, stats: CaptureStats | None = None) -> CaptureStats:
    """Feed every frame of ``paths`` (in order) to ``callback(ts, linktype, frame, wirelen)``.

    All files are checked before the first frame is delivered.  An exception
    raised by ``callback`` stops the replay and propagates unchanged.
    """
    supported = frozenset(supported)
    files = check_files(paths, supported)
    st = stats if stats is not None else CaptureStats()
    for p in files:
        reader, lt = open_pcap(p, supported)
        st.files += 1
        count = [0, 0]

        def cb(hdr, data, lt=lt, callback=callback, count=count):
            s, us = hdr.getts()
            wl = hdr.getlen()
            count[0] += 1
            count[1] += wl
            callback(s + us * 1e-6, lt, data, wl)

        try:
            reader.loop(0, cb)  # pcapy stops the loop and re-raises what the callback raised
        except pcapy.PcapError as e:
            st.warnings.append(f"{p}: damaged after packet {count[0]}: {_one_line(e)}")
        finally:
            reader.close()
            st.packets += count[0]
            st.bytes += count[1]
    return st


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
