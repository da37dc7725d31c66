"""The live session table: what a person watching the sensor sees.

No per-packet work happens here.  ``handle(event)`` sees only events (alerts,
kills, ended sessions: rare compared to packets).  ``render(now)`` samples the
flow table when the screen is redrawn, a few times per second: totals and
rates come from counter deltas between two samples, so the cost is one pass
over the live sessions per refresh, whatever the packet rate.

Layout (rich renderables): a header line with packets/s, Mbit/s, capture drops
(queue + kernel), active sessions, alerts and kills; the top sessions by
``bytes``, ``rate``, ``age`` or ``alerts``; the latest alerts.  Columns are
dropped or merged when the terminal is narrow, so it reads at 80 and at 200
columns alike.
"""

from __future__ import annotations

import heapq
import time
from collections import deque

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from mirrorwatch.core.events import INLINE, Alert, BypassSwitch, FlowEnded, Kill
from mirrorwatch.core.flows.flow import really_killed
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.caps import CapWatch
from mirrorwatch.sinks.fmt import addr, fast_time, packet_ports, proto_name

SORT_KEYS = ("bytes", "rate", "age", "alerts")
ALERT_LINES = 5
# widths at which columns are added: below MEDIUM the table keeps proto, endpoints, state
# (a killed session's is "killed"), age, bytes each way and alerts; MEDIUM adds rate and
# packets each way; WIDE gives packets and bytes one column per direction and spells states out
MEDIUM = 100
WIDE = 150
ENDPOINTS_MAX = 2 * len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535") + len(" → ")

SHORT_PROTO = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP6", 132: "SCTP", 47: "GRE", 50: "ESP"}
SHORT_STATE = {"established": "estab", "fin_wait1": "fin1", "fin_wait2": "fin2", "close_wait": "clwait",
               "last_ack": "lastack", "time_wait": "twait", "syn_sent": "syn", "syn_recv": "synrcv",
               "closing": "closing", "closed": "closed", "none": "mid", "new": "new", "dry-run kill": "dry-kill"}


def human_bytes(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def human_count(n: float) -> str:
    if n < 10_000:
        return f"{n:.0f}"
    if n < 10_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.0f}M"


def human_rate(bits_per_s: float) -> str:
    if bits_per_s < 1000:
        return f"{bits_per_s:.0f}b/s"
    if bits_per_s < 1_000_000:
        return f"{bits_per_s / 1000:.1f}k/s"
    if bits_per_s < 1_000_000_000:
        return f"{bits_per_s / 1e6:.1f}M/s"
    return f"{bits_per_s / 1e9:.2f}G/s"


def human_age(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def endpoint(packed: bytes, port: int, proto: int) -> str:
    a = addr(packed)
    if proto in (6, 17, 132):
        return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"
    return a


class LiveTable(Sink):
    """Samples an engine's flow table into a rich renderable; fed events for alerts and kills.

    ``source``: what the header calls the capture (interface or file name).
    ``capture_counters``: a callable returning the live source's counters
    (``drops``, ``queue_drops``, ``kernel_drops``...), or None in replay.
    """

    def __init__(self, engine, *, source: str = "", sort: str = "bytes", capture_counters=None,
                 alert_lines: int = ALERT_LINES):
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
        self.engine = engine
        self.source = source
        self.sort = sort
        self.capture_counters = capture_counters
        self.alerts_total = 0
        self.kills_total = 0
        self.flow_alerts: dict[int, int] = {}
        self._killed: set[int] = set()  # live flows already counted in kills_total
        self.latest: deque = deque(maxlen=max(1, alert_lines))
        # previous sample: time, engine totals, per-flow byte totals
        self._t: float | None = None
        self._pkts = 0
        self._bytes = 0
        self._prev_flow_bytes: dict[int, int] = {}
        self.pps = 0.0
        self.bps = 0.0
        self._rates: dict[int, float] = {}
        self.started: float | None = None
        self._notice: tuple[float, Text] | None = None  # (monotonic expiry, line)
        self.hint = ""  # key help shown in the table title when keys are read
        self.mode: str | None = None  # inline mode: "inline" or "bypass" (BypassSwitch events), shown in the header
        self._caps = CapWatch()

    def notice(self, text: str, error: bool = False, seconds: float = 60.0) -> None:
        """A line shown under the header for a while (rule reloads: stderr is hidden under the display)."""
        self._notice = (time.monotonic() + seconds, Text(text, style="bold red" if error else "green"))

    # -- events (sink API) ----------------------------------------------------
    def handle(self, event) -> None:
        t = type(event)
        if t is Alert:
            self.alerts_total += 1
            f = event.flow
            if f is not None:
                self.flow_alerts[f.flow_id] = self.flow_alerts.get(f.flow_id, 0) + 1
            self.latest.append(event)
        elif t is Kill:
            # sessions killed, not bursts: re-fires and challenge-ACK answers count once
            fid = event.flow.flow_id
            if not event.dry_run and fid not in self._killed:
                self._killed.add(fid)
                self.kills_total += 1
        elif t is FlowEnded:
            fid = event.flow.flow_id
            self.flow_alerts.pop(fid, None)
            self._killed.discard(fid)
        elif t is BypassSwitch:
            self.mode = event.state

    # -- sampling -------------------------------------------------------------
    def sample(self, now: float) -> list:
        """Update rates from counter deltas since the last sample; the live flows, as a list."""
        eng = self.engine
        flows = list(eng.flows.flows.values())
        if self.started is None:
            self.started = now
        prev = self._prev_flow_bytes
        cur: dict[int, int] = {}
        if self._t is None or now <= self._t:
            dt = 0.0
        else:
            dt = now - self._t
        rates: dict[int, float] = {}
        for f in flows:
            b = f.bytes[0] + f.bytes[1]
            fid = f.flow_id
            cur[fid] = b
            if dt:
                rates[fid] = (b - prev.get(fid, 0)) * 8 / dt
        if dt:
            self.pps = (eng.pcap_cnt - self._pkts) / dt
            self.bps = (eng.bytes - self._bytes) * 8 / dt
            self._rates = rates
        self._prev_flow_bytes = cur
        if len(self.flow_alerts) > len(cur) + 1024:  # alerts raised after their flow ended
            self.flow_alerts = {k: v for k, v in self.flow_alerts.items() if k in cur}
        self._t = now
        self._pkts = eng.pcap_cnt
        self._bytes = eng.bytes
        return flows

    def top(self, flows: list, n: int, now: float) -> list:
        if n <= 0:
            return []
        if self.sort == "bytes":
            key = lambda f: f.bytes[0] + f.bytes[1]  # noqa: E731
        elif self.sort == "rate":
            rates = self._rates
            key = lambda f: (rates.get(f.flow_id, 0.0), f.bytes[0] + f.bytes[1])  # noqa: E731
        elif self.sort == "age":
            key = lambda f: -f.start  # noqa: E731
        else:
            fa = self.flow_alerts
            key = lambda f: (fa.get(f.flow_id, 0), f.bytes[0] + f.bytes[1])  # noqa: E731
        return heapq.nlargest(n, flows, key=key)

    # -- rendering -------------------------------------------------------------
    def header_fields(self, flows: list, now: float) -> list[Text]:
        cap = self.capture_counters() if self.capture_counters else None
        fields = [Text.assemble(("mirrorwatch", "bold"), " ", (self.source, "bold cyan"))]
        if self.mode is not None:
            fields.append(Text(self.mode.upper(), style="bold green" if self.mode == INLINE else "bold red reverse"))
        if self.started is not None:
            fields.append(Text(f"up {human_age(now - self.started)}", style="dim"))
        fields.append(Text(f"{human_count(self.pps)} pkt/s"))
        fields.append(Text(f"{self.bps / 1e6:.1f} Mbit/s"))
        if cap is not None:
            drops = cap.get("drops", 0)
            f = Text(f"drops {drops}", style="bold red" if drops else "green")
            if drops:
                f.append(f" (queue {cap.get('queue_drops', 0)}, kernel {cap.get('kernel_drops', 0)})")
            fields.append(f)
        fields.append(Text(f"sessions {len(flows)}"))
        fields.append(Text(f"alerts {self.alerts_total}", style="bold yellow" if self.alerts_total else ""))
        fields.append(Text(f"kills {self.kills_total}", style="bold magenta" if self.kills_total else ""))
        caps = self._caps.hit(self.engine.counters())
        if caps:
            fields.append(Text("caps hit: " + ", ".join(caps), style="bold red"))
        return fields

    def header(self, flows: list, now: float, width: int = 10_000) -> Text:
        """The header fields, wrapped between fields (never inside one) to ``width``."""
        out = Text(no_wrap=True, overflow="ellipsis")
        col = 0
        for f in self.header_fields(flows, now):
            n = len(f.plain)
            if col and col + 2 + n > width:
                out.append("\n")
                col = 0
            elif col:
                out.append("  ")
                col += 2
            out.append_text(f)
            col += n
        return out

    def sessions(self, top: list, width: int, now: float) -> Table:
        """The session rows.  The endpoints column is as wide as its widest row (never more than two
        bracketed IPv6 endpoints): the other columns keep their room on a wide screen, and only when
        the row does not fit does that column give way (cut with an ellipsis)."""
        medium, wide = width >= MEDIUM, width >= WIDE
        heads = ["proto", "client → server", "state", "age"]
        heads += ["pkts →", "pkts ←", "bytes →", "bytes ←"] if wide else \
            ["pkts →/←", "bytes →/←"] if medium else ["bytes →/←"]
        heads += ["rate", "alrt"] if medium else ["alrt"]
        rows = [self._row(f, now, medium, wide) for f in top]
        sep = 2 if medium else 1  # the box's column separator, and the padding of wider terminals
        need = [max([len(h)] + [len(cells[i]) for cells, _ in rows]) for i, h in enumerate(heads)]
        need[1] = min(need[1], ENDPOINTS_MAX)
        fits = sum(need) + sep * (len(heads) - 1) <= width
        tbl = Table(box=box.SIMPLE_HEAD, show_edge=False, expand=not fits, pad_edge=False,
                    padding=(0, 1, 0, 0) if medium else 0,
                    title=f"sessions by {self.sort}" + (f"   ({self.hint})" if self.hint else ""),
                    title_justify="left", title_style="dim")
        for i, h in enumerate(heads):
            if i == 1:
                tbl.add_column(h, no_wrap=True, overflow="ellipsis", ratio=None if fits else 1,
                               max_width=ENDPOINTS_MAX)
            else:
                tbl.add_column(h, no_wrap=True, overflow="ellipsis", justify="left" if i < 3 else "right")
        for cells, style in rows:
            tbl.add_row(*cells, style=style)
        return tbl

    def _row(self, f, now: float, medium: bool, wide: bool) -> tuple[list, str | None]:
        """(cells, style) of one session; a session mirrorwatch killed says so in its state column."""
        if f.killed:
            state = "killed" if really_killed(f) else "dry-run kill"
        else:
            state = str((f.tcp_state or f.state) if f.proto == 6 else f.state)
        if not wide:
            state = SHORT_STATE.get(state, state)
        n_alerts = self.flow_alerts.get(f.flow_id, 0)
        pk, by = f.pkts, f.bytes
        cells = [SHORT_PROTO.get(f.proto) or proto_name(f.proto),
                 f"{endpoint(f.client, f.cport, f.proto)} → {endpoint(f.server, f.sport, f.proto)}",
                 state, human_age(now - f.start)]
        if wide:
            cells += [human_count(pk[0]), human_count(pk[1]), human_bytes(by[0]), human_bytes(by[1])]
        elif medium:
            cells += [f"{human_count(pk[0])}/{human_count(pk[1])}", f"{human_bytes(by[0])}/{human_bytes(by[1])}"]
        else:
            cells.append(f"{human_bytes(by[0])}/{human_bytes(by[1])}")
        if medium:
            cells.append(human_rate(self._rates.get(f.flow_id, 0.0)))
        cells.append(str(n_alerts) if n_alerts else "")
        style = "bold red" if f.killed else ("yellow" if n_alerts or f.alerted else None)
        return cells, style

    def alerts_panel(self, width: int) -> Table:
        tbl = Table(box=None, show_header=False, expand=True, pad_edge=False, padding=(0, 1, 0, 0),
                    title="latest alerts", title_justify="left", title_style="dim")
        tbl.add_column("time", no_wrap=True)
        tbl.add_column("sid", no_wrap=True, justify="right")
        tbl.add_column("msg", no_wrap=True, overflow="ellipsis", ratio=1)
        where = width >= MEDIUM
        if where:
            tbl.add_column("where", no_wrap=True, overflow="ellipsis", max_width=60)
        if not self.latest:
            tbl.add_row("", "", Text("none yet", style="dim"), *([""] if where else []))
        for a in reversed(self.latest):
            row = [fast_time(a.ts)[11:19], f"{a.rule.gid}:{a.rule.sid}", a.rule.msg]
            if where:
                p = a.pkt
                sp, dp = packet_ports(p)
                row.append(f"{endpoint(p.src, sp, p.proto)} → {endpoint(p.dst, dp, p.proto)}")
            tbl.add_row(*row, style="red" if a.rule.priority == 1 else "yellow")
        return tbl

    def render(self, now: float, width: int = 120, height: int = 40):
        """One frame of the display for a ``width`` x ``height`` terminal."""
        flows = self.sample(now)
        head = self.header(flows, now, width)
        if self._notice is not None:
            if time.monotonic() < self._notice[0]:
                head.append("\n")
                head.append_text(self._notice[1])
            else:
                self._notice = None
        alert_rows = min(len(self.latest) or 1, self.latest.maxlen)
        # header + blank + table title/head/rule + blank + alerts title + alert rows
        rows = max(1, height - (len(head.plain.splitlines()) + 1 + 3 + 1 + 1 + alert_rows))
        top = self.top(flows, rows, now)
        return Group(head, Text(""), self.sessions(top, width, now), Text(""), self.alerts_panel(width))

    def stats_line(self, now: float) -> str:
        """The one-line form for a non-terminal (logs): same figures as the header."""
        return self.header(self.sample(now), now).plain
