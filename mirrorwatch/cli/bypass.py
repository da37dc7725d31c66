"""``mirrorwatch bypass on|off|status``: the operator's hand on the inline bypass switch.

``on`` holds bypass (every packet passes uninspected, flows already dropped
stay dropped) until ``off``; ``off`` hands control back to the watchdog, which
restores inline once the engine is healthy (or switches back at once when no
watchdog runs: fail-closed).  The running engine logs each switch (console
line, EVE ``engine`` event).  ``status`` shows the switch, the watchdog and the
kernel's queue counters.  The state is read from ``--run-dir`` (the one the
inline engine was started with).
"""

from __future__ import annotations

import json
import time

import click

from mirrorwatch.cli.common import CONTEXT, fail
from mirrorwatch.inline.firewall import DEFAULT_RUN_DIR


def _when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "?"


def status_lines(st: dict) -> list[str]:
    """The human form of ``watchdog.status()``."""
    fw = st["firewall"]
    switch = "BYPASS (packets pass uninspected)" if st["bypass"] else "INLINE (packets are inspected)"
    lines = [f"switch: {switch}{', forced by the operator' if st['forced'] else ''}"]
    wd = st["watchdog"]
    if wd is None:
        lines.append("watchdog: none (fail-closed, or not started)")
    else:
        alive = "running" if wd.get("alive") else "not running"
        pids = wd.get("engine_pids") or [wd.get("engine_pid")]
        engines = f"engine pid {pids[0]}" if len(pids) == 1 else f"{len(pids)} workers (pids {', '.join(map(str, pids))})"
        lines.append(f"watchdog: pid {wd.get('pid')} {alive}, {engines}; "
                     f"{str(wd.get('state', '?')).upper()} since {_when(wd.get('since'))}: {wd.get('reason')} "
                     f"({wd.get('switches', 0)} switches)")
    lines.append(f"firewall: {fw['backend']}, hook {fw['hook']}, queues {fw['queue'][0]}:{fw['queue'][1]}, "
                 f"{'fail-open' if fw['queue_bypass'] else 'fail-closed'}, IPv{' and IPv'.join(map(str, fw['families']))}")
    for num, q in sorted(st["queues"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"queue {num}: {q['total']} held, {q['dropped']} dropped (full), {q['user_dropped']} dropped "
                     f"(socket full), last packet id {q['id_sequence']}, netlink port {q['portid']}")
    return lines


@click.command("bypass", context_settings=CONTEXT)
@click.argument("action", type=click.Choice(["on", "off", "status"]))
@click.option("--run-dir", default=DEFAULT_RUN_DIR, show_default=True, type=click.Path(file_okay=False),
              help="the run directory of the inline engine")
@click.option("--json", "as_json", is_flag=True, help="print the status as one JSON object")
def bypass(action, run_dir, as_json):
    """Force the inline bypass on, hand it back (off), or show it (status)."""
    from mirrorwatch.inline.firewall import FirewallError
    from mirrorwatch.inline.watchdog import force_bypass, status

    try:
        st = status(run_dir) if action == "status" else force_bypass(action == "on", run_dir)
    except FirewallError as e:
        fail(str(e))
    if st["firewall"] is None:
        fail(st["error"])
    if as_json:
        click.echo(json.dumps(st))
    else:
        for line in status_lines(st):
            click.echo(line)
