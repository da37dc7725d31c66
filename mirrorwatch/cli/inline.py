"""``mirrorwatch inline``: the engine in the path of the traffic (NFQUEUE), with a fail-open bypass.

The kernel queues each packet of the hooked chain (FORWARD on a router or a
bridge with br_netfilter; INPUT or OUTPUT on a host protecting itself) to the
engine, which inspects it before it goes on: ``Engine.process_inline`` returns
the packet's verdict (``core.inline``), ``inline.sensor.InlineSensor`` applies
it and keeps the accounts, ``inline.watchdog`` keeps traffic flowing when the
engine stalls or dies (fail-open).  The loop is ``listen``'s
(``cli.listener.Listener``: live table, SIGHUP reload, ticks, stats), fed from
the sensor instead of a capture; resets go out through raw IP sockets
(``sinks.injector.RawIpInjector``).

- SIGINT / SIGTERM: a clean stop: what the kernel still holds is inspected,
  the sessions blocked are reset at both ends while the firewall still drops
  them, the watchdog stops, the rules go, the queues are released; every
  session is flushed to the outputs, the summary printed, exit 0.
- SIGHUP: the rule files are parsed and compiled in a thread and swapped
  between two packets (no packet lost or passed uninspected); outputs reopened.
- SIGKILL: the watchdog switches to bypass, releases what the dead engine
  held and exits; the firewall stays, so flows that were dropped stay dropped.

``--queues A:B`` runs one worker process per queue (``cli.workers.inline``);
this process coordinates them: outputs, merged stats and table, the switches,
the firewall.
"""

from __future__ import annotations

import sys

import click

from mirrorwatch.cli.common import (
    CONTEXT,
    build_run,
    eve_specs,
    fail,
    open_kill_sinks,
    output_options,
    report_ruleset,
    sensor_name,
    settings_epilog,
    warn,
)
from mirrorwatch.cli.listener import Listener
from mirrorwatch.cli.workers import share_caps
from mirrorwatch.core.events import BYPASS, INLINE, BypassSwitch
from mirrorwatch.core.kill import KILL_MODES
from mirrorwatch.inline.firewall import (
    BACKENDS,
    DEFAULT_RUN_DIR,
    HOOK_CHAINS,
    parse_queue_spec,
)
from mirrorwatch.sinks.inline import bypass_message
from mirrorwatch.sinks.table import SORT_KEYS

# inline: stream bytes are inspected on the packet that brings them (a match holds that very packet),
# sessions that started before the engine are picked up, and flows past the stream depth are bypassed
INLINE_BASE = {"stream.midstream": True, "stream.inline": True, "stream.bypass": True}


class InlineRunner(Listener):
    """``Listener``'s loop over an ``InlineSensor``: each batch's packets get their verdicts, its bypass
    switches become a console line (and, through the sinks, an EVE engine event and the table header)."""

    def _feed(self, batch, process, dispatch, linktype: int) -> None:
        for e in batch.events:
            if type(e) is BypassSwitch:
                self.say_switch(e)
        self.capture.feed(batch, self.engine, dispatch)

    def say_switch(self, e: BypassSwitch) -> None:
        """The console line of a bypass switch."""
        self._say(f"mirrorwatch: {bypass_message(e)}", error=e.state == BYPASS)


def _queue_range(queue: int | None, queues: str | None) -> tuple[int, int]:
    if queue is not None and queues:
        fail("--queue and --queues exclude each other: give one", 2)
    try:
        return parse_queue_spec(queues if queues else (queue or 0))
    except ValueError as e:
        fail(f"--queues: {e}", 2)


def _report_inline(c: dict, quiet: bool) -> None:
    """What went through the sensor: a warning when packets passed uninspected, else one line."""
    v = c.get("verdicts", {})
    inspected = (f"{c['received']:,} packets inspected ({v.get('accept', 0):,} accepted, "
                 f"{v.get('drop-flow', 0) + v.get('reject', 0):,} dropped, {v.get('pass-flow', 0):,} flow bypasses); "
                 f"{c['flow_bypassed_packets']:,} packets of bypassed flows, "
                 f"{c['flow_dropped_packets']:,} of dropped flows handled by the kernel")
    if c["uninspected"]:
        warn(f"inline on {c['interface']}: {c['uninspected']:,} packets passed uninspected: fail-open "
             f"{c['uninspected_fail_open']:,} (raise inline.queue-maxlen / inline.rcvbuf), released by the watchdog "
             f"{c['uninspected_released']:,}, bypass switch {c['uninspected_bypass_switch']:,}; {inspected}")
    elif not quiet:
        click.echo(f"mirrorwatch: inline on {c['interface']}: {inspected}, none uninspected", err=True)
    if c["drops"]:
        warn(f"inline on {c['interface']}: {c['drops']:,} packets dropped by the kernel (fail-closed: queue full "
             f"{c['queue_drops']:,}, socket full {c['kernel_drops']:,})")


@click.command("inline", context_settings=CONTEXT, epilog=settings_epilog())
@click.option("-r", "--rules", "rules", multiple=True, type=click.Path(),
              help="rule file or directory of *.rules (repeatable) [default: rule-files of -c, else the bundled "
                   "signatures/]; reloaded on SIGHUP")
@output_options(live=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a setting (repeatable; stream.midstream, stream.inline and stream.bypass default to "
                   "true here)")
@click.option("-k", "checksum", type=click.Choice(["auto", "all", "none"]), default="auto", show_default=True,
              help="checksum validation: all, none, or auto; packets whose checksums the kernel has not filled in "
                   "yet (offloads, GSO) are never judged by them")
@click.option("--queue", "queue", type=click.IntRange(0, 0xFFFF), default=None, metavar="N",
              help="the NFQUEUE number [default: 0]")
@click.option("--queues", "queues", default=None, metavar="A:B",
              help="several queues, one worker process each (the kernel shares host pairs out over them: "
                   "--queue-balance); the watchdog watches every worker")
@click.option("--fail-open/--fail-closed", "fail_open", default=None,
              help="when the engine cannot take a packet (queue full, stalled, gone): pass it uninspected "
                   "(counted; a watchdog switches to bypass) or drop it [default: nfq.fail-open, on]")
@click.option("--queue-maxlen", type=click.IntRange(1), default=None, metavar="N",
              help="packets the kernel holds per queue [inline.queue-maxlen: 4096]")
@click.option("--hook", type=click.Choice(tuple(HOOK_CHAINS)), default="forward", show_default=True,
              help="the chain whose packets are inspected: forward (a router or bridge), input, output (this host)")
@click.option("--no-firewall", is_flag=True,
              help="install no firewall rules: print the ones it would use and leave them to the operator")
@click.option("--firewall-backend", type=click.Choice(("auto", *BACKENDS)), default="auto", show_default=True,
              help="how the rules are installed (auto: nft when the kernel has its queue statement, else iptables)")
@click.option("--run-dir", default=DEFAULT_RUN_DIR, show_default=True, type=click.Path(file_okay=False),
              help="where the firewall and watchdog state live (mirrorwatch bypass reads them)")
@click.option("--kill-with", type=click.Choice(KILL_MODES), default="rst", show_default=True,
              help="how reject rules reset the endpoints: RST+ACK, FIN+ACK, or FIN then RST")
@click.option("--kill-pcap", metavar="PATH", default=None, help="also write every forged segment to PATH (pcap)")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="bytes", show_default=True, help="live table order")
@click.option("--table/--no-table", "table", default=True,
              help="the live table on a terminal, or a stats line every capture.stats-interval seconds")
@click.option("-q", "--quiet", is_flag=True, help="no summary at the end")
def inline(rules, config, eve, eve_types, eve_payload, fast, sensor_name_opt, sets, checksum, queue, queues,
           fail_open, queue_maxlen, hook, no_firewall, firewall_backend, run_dir, kill_with, kill_pcap, sort, table,
           quiet):
    """Inspect every packet before it is forwarded (NFQUEUE) until Ctrl-C or SIGTERM.

    drop rules drop the packet and the rest of its flow; reject rules also reset both ends; pass rules
    and flows past the stream depth are passed by the kernel.  A watchdog switches to bypass when the
    engine stalls or dies (fail-open).  SIGHUP reloads the rule files and reopens the outputs.
    """
    from rich.console import Console

    from mirrorwatch.cli.collector import tune_gc
    from mirrorwatch.cli.pipeline import Pipeline, PipelineError, bundled_signatures
    from mirrorwatch.core.inline import InlineJudge
    from mirrorwatch.core.kill import KillConfigError
    from mirrorwatch.inline.firewall import FirewallError
    from mirrorwatch.inline.sensor import InlineError, InlineSensor, privilege_problem
    from mirrorwatch.sinks.injector import RawIpInjector
    from mirrorwatch.sinks.table import LiveTable

    why = privilege_problem()
    if why:
        fail(why)
    settings, run = build_run(sets, base=dict(INLINE_BASE), config=config, ips=True)
    if fail_open is not None:
        settings.set("nfq.fail-open", fail_open)
    if queue_maxlen is not None:
        settings.set("inline.queue-maxlen", queue_maxlen)
    queue_range = _queue_range(queue, queues)
    workers = queue_range[1] - queue_range[0] + 1
    if workers > 1:
        share_caps(settings, workers)
    specs = eve_specs(run, eve, eve_types, eve_payload)
    eve_stdout = any(spec.target == "-" for spec in specs)
    try:
        sensor = InlineSensor(settings, queue_range, hook=hook, firewall=not no_firewall,
                              backend=firewall_backend, run_dir=run_dir)
        if no_firewall:
            click.echo(sensor.fw.rules_text(), nl=False)
        judge = InlineJudge.from_settings(settings, kill_with)
    except (FirewallError, ValueError, KillConfigError) as e:
        fail(str(e))
    want_table = table and not eve_stdout and sys.stdout.isatty()
    log = None if want_table else (sys.stderr if eve_stdout else sys.stdout)
    kill_sinks = open_kill_sinks(judge, lambda: RawIpInjector(mark=settings["inline.injected-mark"]), kill_pcap,
                                 log)
    try:
        rule_paths = list(rules) or run.rule_paths or [str(bundled_signatures())]
        pipe = Pipeline.build(settings, rule_paths=rule_paths, eve=specs, fast=fast or run.fast,
                              checksum_mode=checksum, console_alerts=not want_table, killer=judge,
                              kill_sinks=kill_sinks, classification=run.classification,
                              host=sensor_name(run, sensor_name_opt))
    except PipelineError as e:
        fail(str(e))
    report_ruleset(pipe.ruleset, quiet)
    try:
        sensor.open()
    except InlineError as e:
        pipe.close()
        fail(str(e))
    if sensor.sched_note:
        warn(f"capture.sched-slice not applied: {sensor.sched_note}")
    sensor.resets = judge.stop_resets
    tune_gc()
    live_table = LiveTable(pipe.engine, source=sensor.iface, sort=sort, capture_counters=sensor.counters)
    live_table.mode = INLINE
    pipe.add_sink(live_table)
    runner = InlineRunner(sensor, pipe, table=live_table, display=want_table, console=Console(highlight=False),
                          stats_out=log, rule_paths=rule_paths, settings=settings)
    click.echo(f"mirrorwatch: inline on {sensor.iface} (hook {hook}, "
               f"{'fail-open, watchdog' if sensor.fail_open else 'fail-closed'}, firewall "
               f"{sensor.fw.backend if not no_firewall else 'left to the operator'}"
               f"{f', {workers} workers' if workers > 1 else ''}); Ctrl-C to stop, SIGHUP to reload rules", err=True)
    if workers > 1:
        sys.exit(_run_workers(runner, quiet, eve_stdout))
    try:
        code = runner.run()
    except InlineError as e:  # the watchdog could not start: nothing was inspected yet
        sensor.close()
        pipe.close()
        fail(str(e))
    sys.exit(_finish(code, pipe, sensor, sensor.counters(), judge.c["shutdown_resets"], quiet, eve_stdout))


def _run_workers(runner: InlineRunner, quiet: bool, eve_stdout: bool) -> int:
    """One worker per queue (``cli.workers.inline``); the exit code."""
    from mirrorwatch.cli.workers.inline import InlineWorkers

    workers = InlineWorkers(runner, runner._say)
    code = workers.run()
    stats = runner.pipe.stats.counters if runner.pipe.stats is not None else {}
    return _finish(code, runner.pipe, runner.capture, workers.capture,
                   stats.get("kill", {}).get("shutdown_resets", 0), quiet, eve_stdout)


def _finish(code: int, pipe, sensor, counters: dict, resets: int, quiet: bool, eve_stdout: bool) -> int:
    """After the run: what an output or the firewall could not do, the accounts, the summary; the exit code."""
    from rich.console import Console

    for line in pipe.output_warnings():
        warn(line)
    if sensor.withdraw_error:
        warn(sensor.withdraw_error)
        code = code or 1
    if pipe.records_lost() and not code:
        code = 1
    if counters:
        _report_inline(counters, quiet)
    if resets and not quiet:
        click.echo(f"mirrorwatch: reset {resets:,} blocked session(s) at both ends before the firewall rules "
                   f"were removed", err=True)
    if not quiet:
        pipe.print_summary(Console(stderr=eve_stdout, highlight=False), show_table=True)
    return code
