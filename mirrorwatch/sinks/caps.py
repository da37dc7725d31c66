"""The engine's caps as people see them: summary lines, the live table's header, emergency notices.

Every bound that can be hit has a counter in the EVE stats (``CAPS`` says
where); the end-of-run summary prints one line for each cap that was hit,
the live table's header names the caps hit in the last ``HOLD_SECONDS``, and
entering or leaving the flow table's emergency mode is one console line and
one EVE ``engine`` record (Suricata logs the same moments as engine notices).
"""

from __future__ import annotations

import sys
import time

from mirrorwatch.core.events import FlowEmergency
from mirrorwatch.sinks.base import Sink

# (setting, path of its hit counter in the stats, what a hit did)
CAPS = (
    ("flow.max-sessions", ("flow", "max_sessions"), "a new session ended another"),
    ("flow.memcap", ("flow", "memcap"), "a new session ended another"),
    ("stream.reassembly.memcap", ("flow", "reassembly", "memcap_skips"), "held out-of-order data given up"),
    ("stream.reassembly.memcap", ("flow", "reassembly", "memcap_reclaims"), "buffered stream bytes released"),
    ("defrag.memcap", ("decoder", "defrag.evicted"), "incomplete datagrams dropped"),
    ("app-layer.memcap", ("app_layer", "memcap"), "protocol detection or a flow's parser stopped"),
    ("app-layer.protocols.http.memcap", ("app_layer", "http", "memcap"), "a flow's HTTP parser stopped"),
    ("app-layer.protocols.dns.global-memcap", ("app_layer", "dns", "memcap_global"), "a flow's DNS parser stopped"),
    ("stream.dump-max-bytes", ("streamdump", "budget_reached"), "--dump-streams stopped writing"),
)
HOLD_SECONDS = 5.0  # how long the live header keeps naming a cap after its last hit


def _get(counters: dict, path: tuple):
    v = counters
    for k in path:
        if not isinstance(v, dict):
            return 0
        v = v.get(k, 0)
    return int(v) if isinstance(v, (int, bool)) else 0


def cap_lines(counters: dict) -> list[str]:
    """One line per cap that was hit (none when nothing was), for the end-of-run summary."""
    lines = []
    for setting, path, what in CAPS:
        n = _get(counters, path)
        if n:
            lines.append(f"{setting} reached: {what} ({n:,} time{'' if n == 1 else 's'})")
    entered = _get(counters, ("flow", "emerg_mode_entered"))
    if entered:
        over = _get(counters, ("flow", "emerg_mode_over"))
        lines.append(f"flow emergency mode: entered {entered:,} time{'' if entered == 1 else 's'}, "
                     f"left {over:,}; {_get(counters, ('flow', 'evicted')):,} sessions ended to make room")
    return lines


class CapWatch:
    """Which caps were hit lately: ``hit(counters)`` with a fresh stats snapshot each time."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._prev: dict[tuple, int] = {}
        self._last_hit: dict[str, float] = {}

    def hit(self, counters: dict) -> list[str]:
        now = self._clock()
        for setting, path, _ in CAPS:
            n = _get(counters, path)
            if n > self._prev.get(path, 0):
                self._last_hit[setting] = now
            self._prev[path] = n
        names = [s for s, t in self._last_hit.items() if now - t <= HOLD_SECONDS]
        flow = counters.get("flow", {})
        if isinstance(flow, dict) and flow.get("emergency"):
            names.append("flow emergency mode")
        return names


def emergency_message(e: FlowEmergency) -> str:
    if e.entered:
        return (f"flow emergency mode entered: {e.cap} reached ({e.active:,} sessions, {e.memuse:,} bytes); "
                f"emergency timeouts apply and the least valuable sessions are ended first")
    return f"flow emergency mode over: {e.active:,} sessions, {e.memuse:,} bytes; normal timeouts again"


def emergency_record(e: FlowEmergency) -> dict:
    """The ``engine`` object of the EVE record for a FlowEmergency event."""
    return {"message": emergency_message(e), "module": "flow", "emergency": "entered" if e.entered else "over",
            "cap": e.cap or None, "active": e.active, "memuse": e.memuse}


class EmergencyNotices(Sink):
    """Prints each FlowEmergency event as one ``mirrorwatch:`` line (stderr by default)."""

    takes = (FlowEmergency,)

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr

    def handle(self, event) -> None:
        if type(event) is FlowEmergency:
            self.stream.write(f"mirrorwatch: {emergency_message(event)}\n")
            self.stream.flush()
