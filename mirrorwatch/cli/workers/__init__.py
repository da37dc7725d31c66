"""``--workers N``: N whole engines in N processes, one sensor.

Python runs one engine on one core, so a sensor uses more cores by running
more engines, each a process with its own ``core.engine.Engine``, its own
sessions, and the same rules.  Both directions of a session (and every
fragment of it) must reach the same engine:

- ``listen``: each worker opens its own libpcap handle on the interface and
  joins one ``PACKET_FANOUT`` group in hash mode with defragmentation
  (``sources.fanout``); the kernel picks the worker by the symmetric flow hash.
- ``replay``: every worker reads the capture itself and analyses the frames
  ``core.decode.flowshare.FlowPartitioner`` (the symmetric flow hash, compiled)
  and ``fragments.FragmentRouter`` give it (``replay``).

The process that starts the workers is the coordinator (``coordinator``): it
builds the pipeline once and forks the workers from it (``process``); their
sinks write through pipes to its outputs (``outbox``), which it writes in
capture order in replay (``merge``); at the end it merges their counters
into one stats record and their summaries into one.  The live table shows
the top sessions of every worker (``view``).

``--workers 1`` (the default) runs the single engine in the command's own
process, exactly as without this package.  ``--workers auto`` takes the cores
this process may run on, minus one (at least one).

What is per worker, not per sensor: thresholds and detection filters tracked
by source, destination, address pair or rule count what each engine sees (a
``limit 1`` threshold can let one alert through per worker; ``by_flow`` is
exact), and ``tag:host`` tags only its own worker's packets; the caps that bound memory,
disk or rate (``WORKER_SHARED_CAPS``) are divided among the workers so the sensor as a
whole keeps to them; ``listen``'s ``-k auto`` samples checksums per worker (``replay``'s
decides on the whole capture's first packets, as one engine does).  Each worker numbers
its sessions in its own range, so EVE ``flow_id`` values never collide between workers
(``coordinator.individualise``).
"""

from __future__ import annotations

import os

import click

MAX_WORKERS = 64  # most workers one command may run
AUTO = "auto"
# caps on the whole sensor's memory, disk or rate, divided among the workers (each gets its share)
WORKER_SHARED_CAPS = ("flow.max-sessions", "flow.memcap", "stream.reassembly.memcap", "defrag.max-frags",
                      "defrag.memcap", "app-layer.memcap", "app-layer.protocols.http.memcap",
                      "app-layer.protocols.dns.global-memcap", "detect.threshold-entries", "detect.tag.max-hosts",
                      "host.memcap", "ippair.memcap",
                      "stream.dump-max-bytes", "inject.max-per-second")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_workers(value) -> int:
    """``--workers``: a count from 1 to MAX_WORKERS, or ``auto`` (the usable cores minus one, at least one)."""
    text = str(value).strip().lower()
    if text == AUTO:
        return max(1, usable_cores() - 1)
    try:
        n = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of workers or 'auto'") from None
    if not 1 <= n <= MAX_WORKERS:
        raise click.BadParameter(f"{n} is not between 1 and {MAX_WORKERS}")
    return n


def workers_option(f):
    """The ``--workers N|auto`` option of replay and listen."""
    return click.option(
        "--workers", default="1", show_default=True, metavar="N|auto",
        callback=lambda ctx, param, value: parse_workers(value),
        help="engines running in parallel, one process each; sessions are shared out by a symmetric flow "
             "hash (auto: the usable cores minus one)")(f)


def share_caps(settings, workers: int) -> None:
    """Give each worker its share of the caps that bound the whole sensor (``WORKER_SHARED_CAPS``)."""
    for key in WORKER_SHARED_CAPS:
        value = settings[key]
        if value:
            settings.set(key, type(value)(max(1, -(-value // workers))))


def fanout_immediate(settings) -> bool | None:
    """``capture.immediate`` with workers: off unless forced (then a warning), for the fanout reassembles
    IPv4 fragments and immediate mode's ring slots, sized for one wire frame when offloads are off, would
    truncate a datagram larger than the interface's MTU (measured: 1526 of 4028 bytes kept)."""
    if str(settings["capture.immediate"]) != "true":
        return False
    click.echo("mirrorwatch: warning: capture.immediate=true with --workers: IPv4 datagrams the kernel reassembles "
               "before the fanout are cut to a ring slot (the MTU when offloads are off)", err=True)
    return None
