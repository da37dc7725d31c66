"""The live table over several workers: each worker's top sessions, merged by the coordinator.

Sessions live in the workers' engines, so the coordinator cannot walk them.
Instead each worker's own ``LiveTable`` (a sink of its pipeline) computes,
every ``VIEW_INTERVAL`` seconds, its rates and its top ``VIEW_ROWS`` sessions
by the current sort order, and sends them as a view, with its totals (frames
and bits per second, sessions, alerts, kills), its latest alerts and its
counters.  ``MergedTable`` is a ``LiveTable`` whose sample is the union of the
latest views: the top sessions of all workers (a session that is in no
worker's top ``VIEW_ROWS`` cannot be in the merged top either), totals summed.
The sort order the operator picks goes to every worker over its ``ctl`` pipe.
Costs: a view walks every session of the worker (the rates) and is ~25 kB with
200 rows: 20 ms with 8,000 sessions (measured), so a worker waits ten times
what its last view cost before the next one, as the single listen loop
stretches its redraws: the table never takes more than ~10% of a worker.
"""

from __future__ import annotations

import time
from collections import deque
from types import SimpleNamespace

from mirrorwatch.cli.workers.merge import sum_counters
from mirrorwatch.sinks.table import LiveTable

VIEW_INTERVAL = 0.25  # seconds between two views of a worker (the live table's refresh)
VIEW_ROWS = 200  # sessions per view: more than a terminal shows


def _row(f, table: LiveTable) -> SimpleNamespace:
    """What the table shows of one session, copied out of the worker's Flow."""
    return SimpleNamespace(flow_id=f.flow_id, client=f.client, cport=f.cport, server=f.server, sport=f.sport,
                           proto=f.proto, state=f.state, tcp_state=f.tcp_state, start=f.start,
                           pkts=tuple(f.pkts), bytes=tuple(f.bytes), killed=f.killed, kill_dry_run=f.kill_dry_run,
                           alerted=f.alerted, rate=table._rates.get(f.flow_id, 0.0),
                           alerts=table.flow_alerts.get(f.flow_id, 0))


def _alert(a) -> SimpleNamespace:
    p, r = a.pkt, a.rule
    return SimpleNamespace(ts=a.ts, rule=SimpleNamespace(gid=r.gid, sid=r.sid, msg=r.msg, priority=r.priority),
                           pkt=SimpleNamespace(src=p.src, dst=p.dst, proto=p.proto, sport=p.sport, dport=p.dport,
                                               icmp_type=p.icmp_type, icmp_code=p.icmp_code))


class Views:
    """A worker's side: a view of its table every ``interval`` seconds (``maybe_send``) or on demand."""

    def __init__(self, table: LiveTable, outbox, counters, *, clock=time.time, interval: float = VIEW_INTERVAL,
                 rows: bool = True):
        self.table = table
        self.rows = VIEW_ROWS if rows else 0  # none when only the totals are shown (the stats line)
        self.outbox = outbox
        self.counters = counters  # () -> the worker's counters
        self.clock = clock  # the table's time: wall clock live, packet time in replay
        self.interval = interval
        self._next = 0.0

    def maybe_send(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self.send()
            self._next = now + max(self.interval, (time.monotonic() - now) * 10)

    def send(self) -> None:
        table = self.table
        now = self.clock()
        flows = table.sample(now)
        top = table.top(flows, self.rows, now)
        self.outbox.send("view", {
            "clock": now, "counters": self.counters(), "pps": table.pps, "bps": table.bps, "sessions": len(flows),
            "alerts": table.alerts_total, "kills": table.kills_total,
            "rows": [_row(f, table) for f in top], "latest": [_alert(a) for a in table.latest],
        })


class _Sessions(list):
    """The merged top rows; ``len()`` is the number of sessions of all workers, as the header counts them."""

    def __init__(self, rows, total: int):
        super().__init__(rows)
        self.total = total

    def __len__(self) -> int:
        return self.total


class _Engines:
    """What the table asks of an engine (``counters``), answered from the workers' latest views."""

    def __init__(self, views: dict):
        self._views = views

    def counters(self) -> dict:
        return sum_counters([v["counters"] for v in self._views.values()])


class MergedTable(LiveTable):
    """The coordinator's live table: ``update(worker, view)`` as views come, rendered as one table."""

    def __init__(self, *, source: str = "", sort: str = "bytes", live: bool = False):
        self._views: dict[int, dict] = {}
        self._workers: list = []
        self._sort = sort
        self.clock = 0.0  # the latest time a worker's view was taken at (packet time in replay)
        super().__init__(_Engines(self._views), source=source, sort=sort,
                         capture_counters=self._capture if live else None)

    @property
    def sort(self) -> str:
        return self._sort

    @sort.setter
    def sort(self, value: str) -> None:
        self._sort = value
        for w in self._workers:
            w.tell(("sort", value))

    def attach(self, workers) -> None:
        self._workers = list(workers)
        self.sort = self._sort

    def update(self, worker: int, view: dict) -> None:
        for r in view["rows"]:
            r.flow_id = (worker, r.flow_id)  # flow ids are unique per engine only
        self._views[worker] = view
        self.clock = max(self.clock, view["clock"])

    def handle(self, event) -> None:
        """The coordinator analyses nothing: alerts and kills come in the views."""

    def _capture(self) -> dict:
        return sum_counters([v["counters"].get("capture", {}) for v in self._views.values()])

    def sample(self, now: float) -> list:
        views = self._views
        if self.started is None:
            self.started = now
        rows = [r for v in views.values() for r in v["rows"]]
        latest = sorted((a for v in views.values() for a in v["latest"]), key=lambda a: a.ts)
        self.pps = sum(v["pps"] for v in views.values())
        self.bps = sum(v["bps"] for v in views.values())
        self.alerts_total = sum(v["alerts"] for v in views.values())
        self.kills_total = sum(v["kills"] for v in views.values())
        self._rates = {r.flow_id: r.rate for r in rows}
        self.flow_alerts = {r.flow_id: r.alerts for r in rows if r.alerts}
        self.latest = deque(latest[-self.latest.maxlen:], maxlen=self.latest.maxlen)
        return _Sessions(rows, sum(v["sessions"] for v in views.values()))
