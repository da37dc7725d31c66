"""End-of-run summary: totals, alerts by signature, decode errors, top sessions.

``Summary`` is a sink like the others; it keeps counts and a bounded heap of
the most interesting sessions (killed ones, then most alerts, then most
bytes), so its memory does not grow with the capture.  ``render`` prints it
with rich.
"""

from __future__ import annotations

import heapq
import itertools

from mirrorwatch.core.events import Alert, FlowEnded, Kill, Stats
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.caps import cap_lines
from mirrorwatch.sinks.fmt import ICMP_PROTOS, addr, proto_name


def plural(n: int, noun: str) -> str:
    """``n`` with thousands separators and the noun in the number it takes: "1 alert", "2,000 alerts"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


class Summary(Sink):
    """Collects what the end-of-run report shows."""

    def __init__(self, top: int = 20):
        self.top = top
        self.alerts_by_sig: dict[tuple, list] = {}  # (gid, sid, rev) -> [msg, count]
        self.alerts = 0
        self.kills = 0  # injection bursts (a kill and its follow-ups)
        self._killed_flows: set[int] = set()
        self.sessions = 0
        self._flow_alerts: dict[int, int] = {}
        self._heap: list = []
        self._tie = itertools.count()
        self.counters: dict = {}
        self.decode_reasons: dict[str, int] | None = None
        self._routes = {Alert: self._alert, FlowEnded: self._session_ended, Stats: self._stats, Kill: self._kill}

    def handle(self, event) -> None:
        fn = self._routes.get(type(event))
        if fn is not None:
            fn(event)

    def route(self, cls):
        return self._routes.get(cls)

    def _alert(self, event: Alert) -> None:
        self.alerts += 1
        r = event.rule
        entry = self.alerts_by_sig.get((r.gid, r.sid, r.rev))
        if entry is None:
            self.alerts_by_sig[(r.gid, r.sid, r.rev)] = [r.msg, 1]
        else:
            entry[1] += 1
        if event.flow is not None:
            fid = event.flow.flow_id
            self._flow_alerts[fid] = self._flow_alerts.get(fid, 0) + 1

    def _stats(self, event: Stats) -> None:
        self.counters = event.counters

    def _kill(self, event: Kill) -> None:
        self.kills += 1
        if event.flow is not None:
            self._killed_flows.add(event.flow.flow_id)

    def _session_ended(self, e: FlowEnded) -> None:
        self.sessions += 1
        f = e.flow
        n_alerts = self._flow_alerts.pop(f.flow_id, 0) if self._flow_alerts else 0
        rank = (1 if f.killed else 0, n_alerts, f.bytes[0] + f.bytes[1])  # killed first, then alerts, then bytes
        heap = self._heap
        if len(heap) >= self.top and (not heap or rank <= heap[0][0][:3]):
            return  # no better than the least of the top (the earlier of equals stays): no row is made
        key = (*rank, -next(self._tie))
        if len(heap) < self.top:
            heapq.heappush(heap, (key, session_row(f, n_alerts, e.reason)))
        else:
            heapq.heapreplace(heap, (key, session_row(f, n_alerts, e.reason)))

    # -- report -------------------------------------------------------------
    def top_sessions(self) -> list[dict]:
        return [row for _, row in sorted(self._heap, key=lambda kv: kv[0], reverse=True)]

    def decode_errors(self) -> dict[str, int]:
        """Frames the decoder skipped, by reason (``decode_reasons``, set by the pipeline from the decoder)."""
        return {k: v for k, v in (self.decode_reasons or {}).items() if v}

    def render(self, console, elapsed: float, show_table: bool = True, cpu: float | None = None) -> None:
        from rich.table import Table

        cap = self.counters.get("capture", {})
        pkts, nbytes = cap.get("packets", 0), cap.get("bytes", 0)
        rate = pkts / elapsed if elapsed > 0 else 0.0
        mbps = nbytes * 8 / elapsed / 1e6 if elapsed > 0 else 0.0
        console.print(
            f"[bold]{plural(pkts, 'packet')}[/], {plural(nbytes, 'byte')}, {plural(self.sessions, 'session')}, "
            f"[bold]{plural(self.alerts, 'alert')}[/]"
            + (f", {plural(len(self._killed_flows), 'session')} killed ({plural(self.kills, 'injection burst')})"
               if self.kills else "")
            + f" in {elapsed:.3f}s"
            + (f", {cpu:.3f}s CPU" if cpu is not None else "")
            + f" ({rate:,.0f} packets/s, {mbps:,.1f} Mbit/s)"
        )
        if self.alerts_by_sig:
            t = Table(title="Alerts by signature", title_justify="left")
            t.add_column("gid:sid:rev", no_wrap=True)
            t.add_column("signature")
            t.add_column("count", justify="right")
            rows = sorted(self.alerts_by_sig.items(), key=lambda kv: (-kv[1][1], kv[0]))
            for (gid, sid, rev), (msg, count) in rows:
                t.add_row(f"{gid}:{sid}:{rev}", msg, f"{count:,}")
            console.print(t)
        errors = self.decode_errors()
        if errors:
            t = Table(title="Frames skipped by the decoder", title_justify="left")
            t.add_column("reason")
            t.add_column("count", justify="right")
            for reason, count in sorted(errors.items(), key=lambda kv: -kv[1]):
                t.add_row(reason, f"{count:,}")
            console.print(t)
        for line in cap_lines(self.counters):
            console.print(line, style="bold yellow", markup=False, highlight=False)
        if show_table and self._heap:
            console.print(sessions_table(self.top_sessions(), title=f"Top {len(self._heap)} sessions"))


def session_row(f, n_alerts: int, reason: str) -> dict:
    """What the session table shows of a flow, copied out so the Flow can be freed."""
    if f.proto in ICMP_PROTOS:
        client, server = addr(f.client), addr(f.server)
    else:
        client = hostport(f.client, f.cport)
        server = hostport(f.server, f.sport)
    return {
        "flow_id": f.flow_id,
        "client": client,
        "server": server,
        "proto": proto_name(f.proto),
        "state": f.tcp_state if f.proto == 6 and f.tcp_state else f.state,
        "pkts": (f.pkts[0], f.pkts[1]),
        "bytes": (f.bytes[0], f.bytes[1]),
        "alerts": n_alerts,
        "killed": f.killed,
        "reason": reason,
    }


def hostport(packed: bytes, port: int) -> str:
    """An endpoint as people write it: ``192.0.2.1:80``, ``[2001:db8::1]:80``."""
    a = addr(packed)
    return f"[{a}]:{port}" if len(packed) == 16 else f"{a}:{port}"


def sessions_table(rows: list[dict], title: str = "Sessions"):
    """A rich Table of session rows (as made by ``session_row``); shared with the live table."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("client → server", no_wrap=True)
    t.add_column("proto", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("pkts →/←", justify="right", no_wrap=True)
    t.add_column("bytes →/←", justify="right", no_wrap=True)
    t.add_column("alerts", justify="right", no_wrap=True)
    for r in rows:
        state = r["state"] + (f" [red](killed: {r['killed']})[/]" if r.get("killed") else "")
        alerts = f"[bold red]{r['alerts']}[/]" if r["alerts"] else "0"
        t.add_row(
            f"{r['client']} → {r['server']}",
            r["proto"],
            state,
            f"{r['pkts'][0]:,}/{r['pkts'][1]:,}",
            f"{r['bytes'][0]:,}/{r['bytes'][1]:,}",
            alerts,
        )
    return t


