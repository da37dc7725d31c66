"""Live capture: libpcap in its own thread, frames handed over in batches through a bounded queue.

Why a thread: libpcap must be drained continuously or the kernel ring
overflows, while the engine (main thread) works per packet at its own pace.
The capture thread does almost nothing per packet: one ``next_batch`` call
(pcapy-ng, GIL released inside libpcap) returns many frames as one bytes
blob plus a packed (sec, usec, offset, caplen) table, and the blob is handed
over as is.  The consumer slices frames out of it.

Every frame is accounted for: ``received`` counts what libpcap gave us,
``queue_drops`` what did not fit in the queue (``capture.queue-size`` frames
waiting at most), and libpcap's own ``stats()`` gives the kernel's drops
(``ps_drop``: ring full; ``ps_ifdrop``: the interface's rx_dropped, shown
apart because Linux also counts there frames the stack discarded after
capture).

Stopping: the handle is non-blocking and the thread waits on its fd with a
short ``select`` timeout, so ``stop()`` returns promptly even on a silent link.

Latency: libpcap's TPACKET_V3 ring blocks are handed over when full or after
the read timeout (``capture.read-timeout``, 1 ms), which bounds how long a
frame waits -- and so how late a kill can be.  Immediate mode hands each frame
over at once, on a TPACKET_V2 ring of one slot per frame; ``capture.immediate``
"auto" uses it only where those slots are wire-sized (offloads off,
``immediate.ring_problem``), "true" always, "false" never.  pcapy-ng has no
``set_immediate_mode``: ``immediate.ImmediateMode`` sets it through libpcap
itself, with checks; anything that does not check out falls back to the
read-timeout path, with a reason.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import threading
import time
from collections import deque

import pcapy

from mirrorwatch.core.settings import Settings
from mirrorwatch.sources import fanout as packet_fanout
from mirrorwatch.sources.immediate import ImmediateMode, ring_problem
from mirrorwatch.sources.sched import request_slice

META = struct.Struct("=IIII")  # sec, usec, offset, caplen (native endian, per pcapy-ng next_batch)
BATCH_MAX = 4096  # frames per next_batch call
POLL_TIMEOUT = 0.1  # seconds the capture thread waits for the fd before re-checking stop
DEFAULT_SNAPLEN = 65535
DEFAULT_BUFFER = 64 * 1024 * 1024  # kernel ring: ~0.5 s of a saturated gigabit link


class CaptureError(Exception):
    """A capture problem a person can act on; ``str()`` is one line."""


def interfaces() -> list[str]:
    """Capturable network interfaces (libpcap's list without pseudo-devices such as nflog)."""
    try:
        devs = pcapy.findalldevs()
    except pcapy.PcapError:
        return []
    if os.path.isdir("/sys/class/net"):
        real = set(os.listdir("/sys/class/net"))
        return [d for d in devs if d in real]
    return [d for d in devs if d != "any"]


def privilege_problem() -> str | None:
    """None when raw capture should be permitted, else what is missing."""
    if os.geteuid() == 0:
        return None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    if caps & (1 << 13) and caps & (1 << 12):  # CAP_NET_RAW, CAP_NET_ADMIN
                        return None
    except OSError:
        pass
    return "capture needs root or the CAP_NET_RAW and CAP_NET_ADMIN capabilities (e.g. setcap cap_net_raw,cap_net_admin=eip on the python binary)"


def _explain(iface: str, msg: str) -> str:
    """Turn libpcap's message into one actionable line."""
    low = msg.lower()
    if "no such device" in low or "doesn't exist" in low or "no such file" in low:
        names = interfaces()
        have = ", ".join(names) if names else "none visible"
        return f"no such interface {iface!r} (interfaces here: {have})"
    if "permission" in low or "not permitted" in low or "eperm" in low:
        return privilege_problem() or f"permission denied opening {iface!r}: {msg}"
    if "went down" in low or "network is down" in low:
        return f"interface {iface!r} is down (bring it up: ip link set {iface} up)"
    return f"cannot capture on {iface!r}: {msg}"


def _explain_runtime(iface: str, msg: str) -> str:
    """libpcap's error once capture was running, as one line."""
    low = msg.lower()
    if "went down" in low or "network is down" in low:
        return f"interface {iface!r} went down during capture ({msg}; bring it up: ip link set {iface} up)"
    if "disappeared" in low or "no such device" in low:
        return f"interface {iface!r} disappeared during capture ({msg})"
    return f"capture on {iface!r} failed: {msg}"


class LiveCapture:
    """One libpcap handle and its capture thread.

    ``open()`` (in the caller's thread, so errors surface before anything
    starts) -> ``start()`` -> consumer calls ``get(timeout)`` for batches ->
    ``stop()``.  A batch is ``(blob, meta, n)``: frame ``i < n`` is
    ``blob[off:off+caplen]`` with ``sec, usec, off, caplen = META.unpack_from(meta, 16*i)``.
    """

    def __init__(self, iface: str, settings: Settings, *, bpf: str | None = None, snaplen: int = DEFAULT_SNAPLEN,
                 promisc: bool = True, buffer_size: int | None = DEFAULT_BUFFER, timeout_ms: int | None = None,
                 immediate: bool | None = None, fanout: int | None = None):
        self.iface = iface
        # --workers: the PACKET_FANOUT group the socket joins once activated (fanout.NEW_GROUP: a new
        # one); after open(), the group's id
        self.fanout = fanout
        self.fanout_joined = 0.0
        self.bpf = bpf
        self.snaplen = snaplen
        self.promisc = promisc
        self.buffer_size = buffer_size
        if timeout_ms is None:
            timeout_ms = max(1, round(float(settings["capture.read-timeout"]) * 1000))
        # TPACKET_V3 hands a ring block over when full or after this many ms: the latency
        # before the engine sees a frame (median 0.5 ms at 1 ms, 2.8 ms at 5 ms, 26 ms at
        # 50 ms; the kernel's block timer is precise to well under a millisecond on 6.18).
        # Measured with bench/capture_loss.py (2026-11-25): 1 ms costs ~12% more CPU per
        # frame than 10 ms at 20-60k pkt/s (more, smaller hand-overs) and no capacity at all
        # (160k pkt/s without a drop either way: under load blocks fill before the timer)
        self.timeout_ms = timeout_ms
        # immediate mode: no hand-over delay at all (see the module docstring).  "auto" turns it
        # on only where the ring stays large (``ring_problem``); ``immediate_active`` says whether
        # it really is on, ``immediate_problem`` why not when it was asked for, ``immediate_skipped``
        # why "auto" left it off
        if immediate is None:
            self.immediate_mode = str(settings["capture.immediate"])
        else:
            self.immediate_mode = "true" if immediate else "false"
        self.immediate = self.immediate_mode == "true"
        self.immediate_active = False
        self.immediate_problem: str | None = None
        self.immediate_skipped: str | None = None
        self.queue_size = max(1, int(settings["capture.queue-size"]))
        # capture.sched-slice, asked for by start() for the engine's thread and the capture thread;
        # ``sched_note`` says why it could not be applied
        self.sched_slice = int(settings["capture.sched-slice"])
        self.sched_note: str | None = None
        self.handle = None
        self.linktype = 1
        # hand-over state, guarded by _cv
        self._batches: deque = deque()
        self._pending = 0  # frames waiting in _batches
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # counters (written by the capture thread only; ints are read atomically)
        self.received = 0
        self.received_bytes = 0
        self.queue_drops = 0
        self.batches = 0
        self.error: str | None = None  # set when capture ended on its own (interface down)
        self._kstats = (0, 0, 0)

    # -- set-up ---------------------------------------------------------------
    def open(self) -> None:
        iface = self.iface
        if iface != "any" and iface not in interfaces():  # "any": Linux's all-interfaces pseudo-device
            # libpcap would fail at activate() anyway; this gives the list of names
            why = privilege_problem()
            if why and not interfaces():
                raise CaptureError(why)
            raise CaptureError(_explain(iface, "No such device"))
        if self.immediate_mode == "auto":
            self.immediate_skipped = ring_problem(iface, self.snaplen, self.buffer_size or DEFAULT_BUFFER)
            self.immediate = self.immediate_skipped is None
        try:
            h = self._activate(self.immediate)
            if self.immediate_problem and self.immediate_active:  # set, but the active handle is not ours
                h.close()
                self.immediate_active = False
                h = self._activate(False)
        except pcapy.PcapError as e:
            raise CaptureError(_explain(iface, str(e))) from None
        if self.bpf:
            try:
                h.setfilter(self.bpf)
            except (pcapy.PcapError, pcapy.BPFError) as e:
                h.close()
                raise CaptureError(f"bad BPF filter {self.bpf!r}: {e}") from None
        h.setnonblock(1)
        self.handle = h
        self.linktype = h.datalink()
        if self.fanout is not None:
            try:
                self.join_fanout(self.fanout)
            except CaptureError:
                self.close()
                raise

    def join_fanout(self, group: int = packet_fanout.NEW_GROUP) -> int:
        """Join the open handle's socket to a PACKET_FANOUT group (``sources.fanout``); returns its id."""
        try:
            self.fanout = packet_fanout.join(self.handle.getfd(), group)
        except packet_fanout.FanoutError as e:
            raise CaptureError(f"capture on {self.iface!r}: {e}") from None
        self.fanout_joined = time.time()  # frames stamped before it may also have reached other members
        return self.fanout

    def _activate(self, immediate: bool):
        """A new activated handle; with ``immediate``, immediate mode set and checked when possible."""
        h = pcapy.create(self.iface)
        h.set_snaplen(int(self.snaplen))
        h.set_promisc(1 if self.promisc else 0)
        h.set_timeout(int(self.timeout_ms))
        if self.buffer_size:
            h.set_buffer_size(int(self.buffer_size))
        imm = ImmediateMode.shared() if immediate else None
        if imm is not None:
            self.immediate_problem = imm.enable(h)
            self.immediate_active = self.immediate_problem is None
        h.activate()
        if imm is not None and self.immediate_active:
            self.immediate_problem = imm.confirm(h)
        return h

    def start(self) -> None:
        if self.handle is None:
            self.open()
        self.sched_note = request_slice(self.sched_slice)  # before the thread: it inherits the slice
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.iface}", daemon=True)
        self._thread.start()

    # -- the capture thread -------------------------------------------------------
    def _run(self) -> None:
        h = self.handle
        fd = h.getfd()
        stop = self._stop.is_set
        qmax = self.queue_size
        try:
            while not stop():
                try:
                    select.select((fd,), (), (), POLL_TIMEOUT)
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise
                self._read_ring(h, qmax)
            # stopping: what the kernel already holds (incl. the block it retires after
            # the read timeout; immediate mode holds nothing back) is taken too, beyond the
            # queue bound: it is bounded by the ring
            if not self.immediate_active:
                time.sleep(self.timeout_ms / 1000.0)
            self._read_ring(h, None)
        except pcapy.PcapError as e:
            self.error = _explain_runtime(self.iface, str(e))
        except Exception as e:  # noqa: BLE001 - the thread must report, never die silently
            self.error = f"capture on {self.iface!r} failed: {type(e).__name__}: {e}"
        finally:
            self._refresh_kstats()
            with self._cv:
                self._cv.notify_all()

    def _read_ring(self, h, qmax: int | None) -> None:
        """Move every frame libpcap has ready into the queue (``qmax`` None: no bound)."""
        cv, batches = self._cv, self._batches
        while True:
            blob, meta = h.next_batch(BATCH_MAX)
            n = len(meta) >> 4
            if not n:
                return
            self.received += n
            self.received_bytes += len(blob)
            got = n
            with cv:
                room = n if qmax is None else qmax - self._pending
                if room <= 0:
                    self.queue_drops += n
                    n = 0
                elif n > room:
                    self.queue_drops += n - room
                    n = room
                if n:
                    batches.append((blob, meta, n))
                    self._pending += n
                    self.batches += 1
                    cv.notify()
            if got < BATCH_MAX:
                return

    # -- the consumer side ------------------------------------------------------
    def get(self, timeout: float) -> tuple | None:
        """The oldest waiting batch, or None after ``timeout`` seconds (or when capture ended)."""
        with self._cv:
            if not self._batches:
                if not self.alive():
                    return None
                self._cv.wait(timeout)
                if not self._batches:
                    return None
            b = self._batches.popleft()
            self._pending -= b[2]
            return b

    def drain(self) -> list:
        """Every batch still waiting (at shutdown)."""
        with self._cv:
            out = list(self._batches)
            self._batches.clear()
            self._pending = 0
            return out

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending(self) -> int:
        return self._pending

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._refresh_kstats()

    def close(self) -> None:
        self.stop()
        if self.handle is not None and not self.alive():
            try:
                self.handle.close()
            except pcapy.PcapError:
                pass
            self.handle = None

    # -- counters -------------------------------------------------------------------
    def _refresh_kstats(self) -> None:
        h = self.handle
        if h is None:
            return
        try:
            self._kstats = tuple(h.stats())
        except (pcapy.PcapError, TypeError, ValueError):
            pass

    def counters(self, refresh: bool = True) -> dict:
        """Capture counters: what libpcap gave, what the queue dropped, what the kernel dropped."""
        if refresh:
            self._refresh_kstats()
        recv, kdrop, ifdrop = (list(self._kstats) + [0, 0, 0])[:3]
        return {
            "interface": self.iface,
            "received": self.received,
            "received_bytes": self.received_bytes,
            "queue_drops": self.queue_drops,
            "kernel_packets": recv,
            "kernel_drops": kdrop,
            "ifdrops": ifdrop,
            # ps_ifdrop is left out of the total: on Linux it is the interface's rx_dropped,
            # which also counts frames the host stack discarded *after* they were captured
            # (no handler for their protocol), as happens on an address-less mirror port
            "drops": self.queue_drops + kdrop,
            "queue_pending": self._pending,
            "queue_size": self.queue_size,
            "sched_slice_us": 0 if self.sched_note else self.sched_slice,
        }


def iter_batch(batch):
    """Yield ``(ts, frame)`` for every frame of one hand-over batch."""
    blob, meta, n = batch
    for sec, usec, off, caplen in META.iter_unpack(meta[: n << 4]):
        yield sec + usec * 1e-6, blob[off:off + caplen]
