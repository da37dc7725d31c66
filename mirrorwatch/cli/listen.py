"""``mirrorwatch listen IFACE``: the engine on a live mirror port.

This module is the command: it opens the capture (one handle, or one per
worker in a PACKET_FANOUT group), builds the pipeline, runs the live loop
(``listener.Listener``, or ``workers.live`` with ``--workers``) and reports
the capture's accounting and the summary at the end.  Signals: SIGINT/SIGTERM
stop and flush (exit 0), SIGHUP reloads the rules and reopens the outputs;
the interface going down flushes and exits 1.
"""

from __future__ import annotations

import sys

import click

from mirrorwatch.cli.common import (
    build_killer,
    build_run,
    eve_specs,
    fail,
    human_console,
    kill_options,
    output_options,
    report_ruleset,
    sensor_name,
    warn,
)
from mirrorwatch.cli.listener import Listener
from mirrorwatch.cli.workers import fanout_immediate, share_caps, workers_option
from mirrorwatch.core.settings import SettingError, help_text, parse_size
from mirrorwatch.sinks.summary import plural
from mirrorwatch.sinks.table import SORT_KEYS
from mirrorwatch.sources.live import CaptureError, LiveCapture, privilege_problem


def _why_not_immediate(cap: LiveCapture) -> str:
    """For capture.immediate=auto left off: why, so the operator knows how to get faster kills."""
    if cap.immediate_mode != "auto" or cap.immediate_active:
        return ""
    return f" (capture.immediate=auto: {cap.immediate_skipped or cap.immediate_problem})"


def _report_capture(c: dict, quiet: bool) -> None:
    """The capture's own accounting at exit: drops are a warning, with what to raise."""
    if c["drops"]:
        pct = 100.0 * c["drops"] / max(1, c["received"] + c["kernel_drops"])
        click.echo(f"mirrorwatch: warning: capture on {c['interface']} dropped {plural(c['drops'], 'frame')} "
                   f"({pct:.2f}%): queue {c['queue_drops']:,} (raise capture.queue-size), kernel {c['kernel_drops']:,} "
                   f"(raise --buffer-size); {c['received']:,} received", err=True)
    elif not quiet:
        click.echo(f"mirrorwatch: capture on {c['interface']}: {plural(c['received'], 'frame')} received, no drops"
                   + (f" (interface rx_dropped {c['ifdrops']:,})" if c["ifdrops"] else ""), err=True)


@click.command("listen", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
               epilog="\b\nSettings (--set KEY=VALUE; default shown):\n" + help_text())
@click.argument("iface")
@click.option("-r", "--rules", "rules", multiple=True, type=click.Path(),
              help="rule file or directory of *.rules (repeatable) [default: rule-files of -c, else the bundled "
                   "signatures/]; reloaded on SIGHUP")
@output_options(live=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a setting (repeatable; stream.midstream and stream.inline default to true here)")
@click.option("-k", "checksum", type=click.Choice(["auto", "all", "none"]), default="auto", show_default=True,
              help="checksum validation: all, none, or auto (off when the NIC offloads them)")
@click.option("--bpf", "bpf", default=None, metavar="EXPR", help="capture filter (tcpdump syntax; on an 802.1Q-tagged mirror write 'vlan and tcp', as with tcpdump)")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=262144, show_default=True,
              help="bytes kept per frame (GRO/TSO can hand libpcap frames larger than 64 KiB)")
@click.option("--no-promisc", is_flag=True, help="do not put the interface in promiscuous mode")
@click.option("--buffer-size", default="64mb", show_default=True, help="kernel capture ring size (e.g. 256mb)")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="bytes", show_default=True, help="live table order")
@click.option("--no-table", is_flag=True, help="no live table; a stats line every capture.stats-interval seconds")
@click.option("-q", "--quiet", is_flag=True, help="no summary at the end")
@workers_option
@kill_options(live=True)
def listen(iface, rules, config, eve, eve_types, eve_payload, fast, sensor_name_opt, sets, checksum, bpf, snaplen, no_promisc, buffer_size, sort, no_table, quiet,
           workers, **kill):
    """Watch a live interface (a switch mirror/SPAN port) until Ctrl-C or SIGTERM.

    SIGHUP reloads the rule files (the old rules stay when the new ones fail
    to load) and reopens the output files (logrotate).
    """
    from rich.console import Console

    from mirrorwatch.cli.collector import tune_gc
    from mirrorwatch.cli.pipeline import Pipeline, PipelineError, bundled_signatures
    from mirrorwatch.sinks.table import LiveTable

    # stream.inline: each packet's new bytes are inspected on arrival, so a reject rule kills on the
    # trigger packet; IDS chunking would hold a short request until 2560 bytes or the session's end
    settings, run = build_run(sets, base={"stream.midstream": True, "stream.inline": True}, config=config)
    if workers > 1:
        share_caps(settings, workers)
    specs = eve_specs(run, eve, eve_types, eve_payload)
    eve_stdout = any(spec.target == "-" for spec in specs)
    try:
        ring = parse_size(buffer_size)
    except SettingError as e:
        fail(f"--buffer-size: {e}", 2)
    why = privilege_problem()
    if why:
        fail(why)
    if iface == "any" and not kill.get("inject_iface") and not kill.get("dry_run"):
        fail("capturing on 'any' leaves no interface to send resets on: give --inject-iface IFACE "
             "(or --dry-run to decide kills without sending)", 2)
    cap = LiveCapture(iface, settings, bpf=bpf, snaplen=snaplen, promisc=not no_promisc, buffer_size=ring,
                      immediate=fanout_immediate(settings) if workers > 1 else None)
    try:
        cap.open()
        caps = None
        if workers > 1:  # one handle per worker, in one fanout group
            from mirrorwatch.cli.workers.live import open_captures

            caps = open_captures(cap, workers, settings)
    except CaptureError as e:
        fail(str(e))
    if cap.immediate_problem and cap.immediate_mode == "true":
        click.echo(f"mirrorwatch: warning: capture.immediate not enabled, frames wait up to capture.read-timeout "
                   f"({cap.timeout_ms} ms): {cap.immediate_problem}", err=True)
    # the table needs the terminal to itself: not when EVE goes to stdout
    want_table = not no_table and not eve_stdout and sys.stdout.isatty()
    # the injection socket opens now, so a missing privilege or interface stops us before capture
    killer, kill_sinks = build_killer(settings, kill, inject_iface=kill.get("inject_iface") or iface,
                                      log=None if want_table else (sys.stderr if eve_stdout else sys.stdout))
    try:
        rule_paths = list(rules) or run.rule_paths or [str(bundled_signatures())]
        pipe = Pipeline.build(settings, rule_paths=rule_paths, eve=specs, fast=fast or run.fast,
                              checksum_mode=checksum, console_alerts=not want_table, killer=killer,
                              kill_sinks=kill_sinks, classification=run.classification,
                              host=sensor_name(run, sensor_name_opt), in_iface=iface)
    except PipelineError as e:
        cap.close()
        fail(str(e))
    report_ruleset(pipe.ruleset, quiet)
    tune_gc()
    table = LiveTable(pipe.engine, source=iface, sort=sort, capture_counters=cap.counters)
    pipe.add_sink(table)
    console = Console(highlight=False)
    stats_out = None if want_table else (sys.stderr if eve_stdout else sys.stdout)
    listener = Listener(cap, pipe, table=table, display=want_table, console=console,
                        stats_out=stats_out, rule_paths=rule_paths, settings=settings)
    click.echo(f"mirrorwatch: listening on {iface} (link type {cap.linktype}, snaplen {snaplen}, "
               f"{'promiscuous' if not no_promisc else 'not promiscuous'}, "
               f"{'immediate mode' if cap.immediate_active else f'read-timeout {cap.timeout_ms} ms'}"
               f"{_why_not_immediate(cap)}"
               f"{', filter ' + repr(bpf) if bpf else ''}"
               f"{f', {workers} workers in PACKET_FANOUT group {cap.fanout}' if caps else ''}"
               "); Ctrl-C to stop, SIGHUP to reload rules", err=True)
    if caps is None:
        code = listener.run()
        capture = cap.counters(refresh=False)
    else:
        from mirrorwatch.cli.workers.live import run_cli

        code, capture = run_cli(listener, caps)
    for line in pipe.output_warnings():
        warn(line)
    if pipe.records_lost() and not code:
        code = 1  # an output that lost records failed, as one that cannot be written
    _report_capture(capture, quiet)
    if not quiet:
        pipe.print_summary(human_console(stderr=eve_stdout), show_table=True)
    sys.exit(code)
