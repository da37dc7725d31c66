"""What a worker's sinks write, carried to the coordinator, which alone owns the outputs.

A worker is a fork of the coordinator taken after the pipeline was built, so
it holds the same sinks (EVE, fast.log, console, kill log, kill pcap...).  The
sinks keep formatting in the worker (that is CPU the workers share out), but
their *destinations* are swapped for ``Channel`` objects (``detach``): what a
sink writes becomes an item ``(clock, channel, data)`` in the worker's
``Outbox``, sent to the coordinator in batches over a pipe.  The coordinator
writes each item with the writer of the same channel in its own copy of the
pipeline (``writers``): one EVE stream, one fast.log, made of whole lines.

A sink's destination is the object with a ``write`` method it keeps as
``out`` (an ``EveWriter``'s file or Redis output), ``fp`` (fast.log, the kill
pcap) or ``stream`` (console alerts, the kill log, emergency notices).  Sinks
that need no coordinator stay as they are: the raw-socket injector (each
worker sends its kills itself), the summary (merged at the end), the live
table (each worker's is what it shows the coordinator).  A sink of any other
kind would write from every worker at once, so ``check`` refuses it.

``clock`` orders the items: in replay, the capture's packet number being
analysed when the item was written (``END`` after the last one), so the
coordinator can merge the workers' streams in capture order.
"""

from __future__ import annotations

import sys

from mirrorwatch.sinks.eve import FileSink
from mirrorwatch.sinks.injector import RawInjector
from mirrorwatch.sinks.summary import Summary
from mirrorwatch.sinks.table import LiveTable

END = sys.maxsize  # the clock of what a worker writes once its last frame is analysed
DESTINATION_ATTRS = ("out", "fp", "stream")  # where sinks keep their destination (EVE output, file, console)
LOCAL_SINKS = (Summary, RawInjector, LiveTable)  # these work in each worker on their own


class WorkerError(Exception):
    """Something that prevents running with several workers (one line)."""


def _destination(sink) -> str | None:
    """The attribute that holds the sink's destination (anything with ``write``), or None."""
    for attr in DESTINATION_ATTRS:
        if hasattr(getattr(sink, attr, None), "write"):
            return attr
    return None


def check(sinks) -> list:
    """The sinks that write somewhere, in order (the channel numbers); WorkerError for an unknown sink."""
    out = []
    for s in sinks:
        if _destination(s) is not None:
            out.append(s)
        elif not isinstance(s, LOCAL_SINKS):
            raise WorkerError(f"the {type(s).__name__} output cannot be shared by several workers")
    return out


def writers(sinks) -> list:
    """Coordinator: channel number -> the function that writes one item there (again after a reopen).

    A ``FileSink`` writes through its own ``write`` (it counts lines and honours line buffering);
    any other sink, straight into its destination.
    """
    return [s.write if isinstance(s, FileSink) else getattr(s, _destination(s)).write for s in check(sinks)]


class Outbox:
    """A worker's side of its pipe: items gathered in order, sent in batches, plus control messages.

    Items go out only when the worker's loop flushes, between two frames (replay: each batch; live:
    every second, as the single loop flushes its files), so a record written in two parts (a kill
    pcap's header and frame) is never split between two batches.
    """

    def __init__(self, conn):
        self.conn = conn
        self.clock = 0
        self.items: list = []

    def add(self, channel: int, data) -> None:
        self.items.append((self.clock, channel, data))

    def flush(self, watermark: int | None = None) -> None:
        """Send what was gathered; ``watermark``: every frame up to that number is analysed."""
        if self.items or watermark is not None:
            items, self.items = self.items, []
            self.conn.send(("out", watermark, items))

    def send(self, kind: str, *payload) -> None:
        self.flush()
        self.conn.send((kind, *payload))


class Channel:
    """Stands in a sink for its destination: file-like and output-like at once."""

    def __init__(self, outbox: Outbox, channel: int):
        self._outbox = outbox
        self._channel = channel

    def write(self, data) -> None:
        self._outbox.add(self._channel, data)

    def flush(self) -> None:
        self._outbox.flush()

    def reopen(self) -> None:
        """The coordinator reopens the real destination."""

    def close(self) -> None:
        """The coordinator closes the real destination."""


class LogStream:
    """A worker's ``sys.stderr``: each line goes to the coordinator at once, which says it once for all workers."""

    def __init__(self, outbox: Outbox):
        self._outbox = outbox
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._outbox.send("log", line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._outbox.send("log", self._partial)
            self._partial = ""

    def isatty(self) -> bool:
        return False


def detach(sinks, outbox: Outbox) -> None:
    """Worker: every destination becomes a channel of ``outbox`` (numbered as ``check`` numbers them)."""
    for n, sink in enumerate(check(sinks)):
        attr = _destination(sink)
        old = getattr(sink, attr)
        ch = Channel(outbox, n)
        setattr(sink, attr, ch)
        old_write = getattr(old, "write", None)
        if old_write is not None and getattr(sink, "write", None) == old_write:  # EveWriter binds out.write
            sink.write = ch.write
