"""A capture's frames into an engine: replay's per-frame consumers (``FrameSink``).

A ``FrameSink`` takes each frame as ``frame(ts, wirelen, data)``: called as
``sink(hdr, data)``, from libpcap's loop (pcapng and the rest); or as
``frame_in(ts, wirelen, f, start, stop)`` from ``sources.savefile`` (a
classic pcap file read in place; compiled, a C call with a pointer into the
reader's block), which copies the frame out (``frame_bytes``) only for a sink
that needs its bytes.
``AllFrames`` puts every frame through the one engine (replay without
workers); ``OwnFrames`` is one worker's pick (replay ``--workers``;
``cli.workers.replay``): it hands the worker's own frames
(``FlowPartitioner.owner``) to its engine and keeps the engine's clock for the
others, so a frame of another worker costs only its reading and the hash.  Compiled, either calls the engine as C, so a frame costs no Python
call unless the engine returned something.
"""

from __future__ import annotations

import cython

from mirrorwatch.core.decode.flowshare import FRAGMENT, FlowPartitioner

_FRAGMENT = FRAGMENT  # the same, as a C constant (.pxd)


def frame_bytes(f: bytes, start: int, stop: int) -> bytes:
    """The frame at ``f[start:stop]`` of a reader's block, copied out (compiled: ``f`` is a pointer)."""
    return f[start:stop] if cython.compiled else bytes(f[start:stop])


class FrameSink:
    """A consumer of a capture's frames: ``frame(ts, wirelen, data)`` for each, in order."""

    def frame(self, ts: float, wirelen: int, data: bytes) -> None:
        raise NotImplementedError

    def frame_in(self, ts: float, wirelen: int, f: bytes, start: int, stop: int) -> None:
        """A frame read in place: ``f[start:stop]`` of the reader's block, valid during the call only."""
        self.frame(ts, wirelen, frame_bytes(f, start, stop))

    @cython.locals(s=cython.longlong, us=cython.longlong)
    def __call__(self, hdr, data: bytes) -> None:
        """libpcap's callback (``reader.loop(0, sink)``): its header's time and wire length."""
        s, us = hdr.getts()
        self.frame(s + us * 1e-6, hdr.getlen(), data)


class AllFrames(FrameSink):
    """Every frame of one capture file through ``engine`` (its link type ``linktype``); what the engine
    returns goes to ``emit(events)``."""

    def __init__(self, engine, linktype: int, emit):
        self.engine = engine
        self.linktype = linktype
        self.emit = emit

    @cython.locals(out=list)
    def frame(self, ts: float, wirelen: int, data: bytes) -> None:
        out = self.engine.process(ts, self.linktype, data, wirelen)
        if out:
            self.emit(out)


class OwnFrames(FrameSink):
    """One worker's frames of a capture: every frame of it comes to ``frame``.

    Every worker reads the whole capture and numbers its frames as one engine
    would (``n``).  A frame ``part`` gives this worker (``me``) goes through
    ``engine.process`` here, numbered ``n`` (``own`` counts them), or to
    ``take(n, ts, wirelen, frame)`` when that is set (``--realtime`` paces
    them); a fragment to ``fragment(n, ts, wirelen, frame)``, which routes it
    (analysing what it releases for this worker) and returns its owner; any
    other frame only moves time: when it comes at or after ``engine.sweep_due``,
    ``engine.advance`` sweeps for timed-out sessions there, as one engine that
    saw the frame would; a frame whose UDP tunnel session is this worker's
    (``FlowPartitioner.outer``) goes through ``engine.outer_only``, and the
    worker of the packet it carries leaves that session alone
    (``engine.count_outer``).  What the engine returns goes to ``emit(n, events)``,
    so the worker's own frames cost no Python call unless something came out.
    ``every(n)`` after each ``batch`` frames (a power of two).
    ``sample(n, ts, frame)``, when set, sees every frame after that
    (``-k auto``'s sample of the whole capture).  ``linktype`` is the link type
    of the file being read; ``last_ts`` the latest time read.
    """

    def __init__(self, part: FlowPartitioner, me: int, engine, *, emit, fragment, every, batch: int):
        self.part = part
        self.me = me
        self.engine = engine
        self.emit = emit
        self.fragment = fragment
        self.every = every
        self.take = None
        self.sample = None
        self.mask = batch - 1
        self.linktype = 0
        self.n = 0
        self.own = 0
        self.last_ts = 0.0

    def frame(self, ts: float, wirelen: int, data: bytes) -> None:
        self._frame(ts, wirelen, data, 0, len(data), data)

    def frame_in(self, ts: float, wirelen: int, f: bytes, start: int, stop: int) -> None:
        self._frame(ts, wirelen, f, start, stop, None)

    @cython.locals(n=cython.longlong, w=cython.int, ow=cython.int, out=list)
    def _frame(self, ts: float, wirelen: int, f: bytes, start: int, stop: int, data: bytes) -> None:
        """The frame ``f[start:stop]`` (``data``: it as bytes, or None: copied out only when it is needed)."""
        # the hot loop of a worker: every frame of the capture, once
        self.n += 1
        n = self.n
        if ts > self.last_ts:  # noqa: PLR1730 - not max(): a C compare
            self.last_ts = ts
        self.part.sched.now = self.last_ts  # never back: captures merged from many files jump back in time
        w = self.part.owner_in(self.linktype, f, start, stop)
        ow = self.part.outer
        if data is None and (w == self.me or w == _FRAGMENT or ow == self.me or self.sample is not None):
            data = frame_bytes(f, start, stop)  # another worker's frame is never copied
        if w == _FRAGMENT:
            w = self.fragment(n, ts, wirelen, data)
        # a UDP tunnel's own session is its worker's, which may not be the carried packet's
        self.engine.count_outer = ow < 0 or ow == self.me
        if w == self.me:
            if self.take is not None:
                self.take(n, ts, wirelen, data)
            else:
                self.engine.pcap_cnt = n - 1  # the engine numbers it n, as one engine reading every frame
                out = self.engine.process(ts, self.linktype, data, wirelen)
                self.own += 1
                if out:
                    self.emit(n, out)
        elif ow == self.me:  # another worker's packet in this worker's tunnel session: the session counts it
            self.engine.pcap_cnt = n - 1
            out = self.engine.outer_only(ts, self.linktype, data)
            if out:
                self.emit(n, out)
        elif ts >= self.engine.sweep_due:
            out = self.engine.advance(ts)
            if out:
                self.emit(n, out)
        if self.sample is not None:
            self.sample(n, ts, data)
        if not n & self.mask:
            self.every(n)
