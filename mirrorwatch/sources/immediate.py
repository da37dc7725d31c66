"""libpcap immediate mode on a pcapy handle, and whether an interface can afford it.

Immediate mode hands each frame to the capture thread at once instead of when
a TPACKET_V3 ring block fills or its read timeout fires.  libpcap then uses
TPACKET_V2, whose fixed slots are sized for the largest frame the interface may
deliver: ``ring_problem`` says when those slots would make the ring too small
(``capture.immediate=auto`` leaves immediate mode off then).  pcapy-ng has no
``set_immediate_mode``, so ``ImmediateMode`` calls libpcap's own
``pcap_set_immediate_mode`` through ctypes on the handle's ``pcap_t*``, after
checking that the pointer and the library are the ones pcapy uses; anything
that does not check out is reported (``problem``), and the caller falls back to
the read-timeout path.
"""

from __future__ import annotations

import array
import ctypes
import errno
import fcntl
import os
import socket
import struct
import tempfile

import pcapy

# -- is immediate mode affordable on this interface? ------------------------------------
# In immediate mode libpcap uses TPACKET_V2: fixed ring slots sized for the largest frame
# the interface may deliver -- MTU + 18 on Ethernet, but 64 KiB as soon as any segmentation
# or receive offload is on (GRO/LRO merge wire frames) -- where TPACKET_V3 packs frames into
# blocks.  With 64 KiB slots a 64 MiB ring holds ~1,000 frames: the capture thread, waiting
# for the GIL while the engine runs, let it overflow from 60-100k pkt/s in bench/capture_loss.py.
# With wire-sized slots it holds ~40,000 (MTU 1500) or ~7,300 (the lab's MTU 9000), and listen
# then captured 140k pkt/s without a drop, as with the packed ring.
SIOCETHTOOL = 0x8946
_ETHTOOL_OFFLOADS = ((0x1E, "tso"), (0x23, "gso"), (0x2B, "gro"))  # ETHTOOL_GTSO, GGSO, GGRO
_ETHTOOL_GFLAGS, _ETH_FLAG_LRO = 0x25, 1 << 15
_V2_SLOT_OVERHEAD = 96  # libpcap's slot = TPACKET_ALIGN(header + MAX_LINKHEADER_SIZE room + VLAN reserve + frame)
AUTO_MIN_RING_FRAMES = 4096  # ~30 ms of 140k pkt/s: several GIL switch intervals (5 ms) of the capture thread


def offloads(iface: str) -> list[str] | None:
    """Names of the offloads on for ``iface`` that make libpcap size V2 slots for 64 KiB
    (as libpcap checks them: TSO, GSO, GRO, LRO); None when they cannot be read."""
    on: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for cmd, name in (*_ETHTOOL_OFFLOADS, (_ETHTOOL_GFLAGS, "lro")):
                val = array.array("I", [cmd, 0])
                ifr = struct.pack("16sP16x", iface.encode()[:15], val.buffer_info()[0])
                try:
                    fcntl.ioctl(s, SIOCETHTOOL, ifr)
                except OSError as e:
                    if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # not supported: off (as libpcap)
                        continue
                    return None
                if (val[1] & _ETH_FLAG_LRO) if name == "lro" else val[1]:
                    on.append(name)
    except OSError:
        return None
    return on


def ring_problem(iface: str, snaplen: int, buffer_size: int) -> str | None:
    """None when an immediate-mode ring on ``iface`` holds at least AUTO_MIN_RING_FRAMES frames, else why not."""
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            ethernet = f.read().strip() == "1"
        with open(f"/sys/class/net/{iface}/mtu") as f:
            mtu = int(f.read())
    except (OSError, ValueError):
        return f"cannot read {iface}'s link type and MTU"
    if not ethernet:
        return f"{iface} is not Ethernet (ring slots would be snaplen-sized)"
    on = offloads(iface)
    if on is None:
        return f"cannot read {iface}'s offload settings"
    if on:
        return (f"offloads on {iface} ({', '.join(on)}) make ring slots 64 KiB; "
                f"turn them off for immediate mode: ethtool -K {iface} tso off gso off gro off lro off")
    slot = min(snaplen, mtu + 18) + _V2_SLOT_OVERHEAD
    if buffer_size // slot < AUTO_MIN_RING_FRAMES:
        return (f"the ring would hold only {buffer_size // slot:,} frames of {mtu + 18} bytes "
                f"(raise --buffer-size for immediate mode)")
    return None


PCAP_ERROR_NOT_ACTIVATED = -3
_PTR_OFFSET = object.__basicsize__  # pcapy's Reader is {PyObject_HEAD; pcap_t *pcap; ...}
_OFFLINE_LINKTYPE, _OFFLINE_SNAPLEN = 147, 4321  # DLT_USER0 and an odd snaplen: no default can match


class ImmediateMode:
    """libpcap immediate mode on a pcapy handle, through the libpcap pcapy itself loaded.

    Every step is checked, and ``problem`` says which one failed:
    the library is the file mapped into this process next to pcapy's extension;
    the pointer offset is proven on a throwaway offline handle (``pcap_datalink``
    and ``pcap_snapshot`` through the pointer equal what pcapy reports);
    before activation the pointer must be a not-yet-activated ``pcap_t``;
    after activation its link type and fd must equal pcapy's.
    """

    _shared: ImmediateMode | None = None

    def __init__(self):
        self.lib = None
        self.problem: str | None = None
        try:
            self.lib = self._load()
            if self.lib is not None and not self._layout_ok():
                self.problem = "pcapy's handle layout did not check out on an offline handle"
                self.lib = None
        except (OSError, AttributeError, ValueError, pcapy.PcapError) as e:
            self.problem = f"cannot reach libpcap's immediate mode ({type(e).__name__}: {e})"
            self.lib = None

    @classmethod
    def shared(cls) -> ImmediateMode:
        """One per process: the library and layout checks do not change."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def _load(self):
        """ctypes handle on the libpcap mapped into this process by pcapy's extension, or None."""
        mapped: dict[str, list[tuple[int, int]]] = {}
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and os.path.basename(parts[5]).startswith("libpcap"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    mapped.setdefault(parts[5], []).append((lo, hi))
        ext_dir = os.path.dirname(os.path.realpath(pcapy.__file__))
        bundled = [p for p in mapped if os.path.dirname(p) in (ext_dir, os.path.join(ext_dir, "pcapy_ng.libs"))]
        candidates = bundled or list(mapped)
        if len(candidates) != 1:
            self.problem = (f"cannot tell which libpcap pcapy uses ({len(candidates)} mapped: "
                            f"{', '.join(candidates) or 'none'})")
            return None
        path = candidates[0]
        lib = ctypes.CDLL(path)  # already loaded: dlopen returns that same instance
        if not hasattr(lib, "pcap_set_immediate_mode"):
            self.problem = f"{os.path.basename(path)} has no pcap_set_immediate_mode"
            return None
        addr = ctypes.cast(lib.pcap_set_immediate_mode, ctypes.c_void_p).value or 0
        if not any(lo <= addr < hi for lo, hi in mapped[path]):
            self.problem = f"pcap_set_immediate_mode does not resolve inside {path}"
            return None
        vp, i = ctypes.c_void_p, ctypes.c_int
        for name, args in (("pcap_set_immediate_mode", [vp, i]), ("pcap_snapshot", [vp]),
                           ("pcap_datalink", [vp]), ("pcap_get_selectable_fd", [vp])):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, i
        return lib

    @staticmethod
    def pointer(handle) -> int:
        """The ``pcap_t*`` stored right after the handle's object header (0 if implausible)."""
        if type(handle).__name__ != "Reader" or type(handle).__basicsize__ < _PTR_OFFSET + ctypes.sizeof(ctypes.c_void_p):
            return 0
        return ctypes.c_void_p.from_address(id(handle) + _PTR_OFFSET).value or 0

    def _layout_ok(self) -> bool:
        """Read through the pointer of an offline handle whose link type and snaplen we chose."""
        with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _OFFLINE_SNAPLEN, _OFFLINE_LINKTYPE))
            f.flush()
            h = pcapy.open_offline(f.name)
            try:
                ptr = self.pointer(h)
                return bool(ptr) and h.datalink() == _OFFLINE_LINKTYPE \
                    and self.lib.pcap_datalink(ptr) == _OFFLINE_LINKTYPE \
                    and self.lib.pcap_snapshot(ptr) == _OFFLINE_SNAPLEN
            finally:
                h.close()

    def enable(self, handle) -> str | None:
        """Turn immediate mode on for a created, not yet activated handle; None or why not."""
        if self.lib is None:
            return self.problem or "libpcap's immediate mode is unavailable"
        ptr = self.pointer(handle)
        if not ptr:
            return "pcapy's handle does not hold a pcap_t pointer where expected"
        if self.lib.pcap_snapshot(ptr) != PCAP_ERROR_NOT_ACTIVATED:
            return "the handle's pointer is not a pcap_t awaiting activation"
        rc = self.lib.pcap_set_immediate_mode(ptr, 1)
        return None if rc == 0 else f"pcap_set_immediate_mode returned {rc}"

    def confirm(self, handle) -> str | None:
        """After activation: the pointer still designates pcapy's handle (link type and fd agree)."""
        ptr = self.pointer(handle)
        if not ptr or self.lib.pcap_datalink(ptr) != handle.datalink() \
                or self.lib.pcap_get_selectable_fd(ptr) != handle.getfd():
            return "the activated handle did not match pcapy's (link type / fd)"
        return None
