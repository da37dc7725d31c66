"""``mirrorwatch rules check PATH...``: what a rule set loads, what it skips and why."""

from __future__ import annotations

import sys

import click

from mirrorwatch.cli.common import CONTEXT, build_run, fail


@click.group(context_settings=CONTEXT)
def rules():
    """Work with rule files."""


@rules.command("check", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("-c", "--config", "config", metavar="FILE", default=None,
              help="a Suricata configuration (suricata.yaml): its rule-files, classification-file and rule variables")
@click.option("--classification", metavar="FILE", default=None,
              help="classification.config [default: classification-file of -c, else the bundled one]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a setting (e.g. rule variables)")
@click.option("-v", "--verbose", is_flag=True, help="list every skipped rule as file:line: sid: reason")
@click.option("--strict", is_flag=True, help="exit 1 when any rule is skipped")
def rules_check(paths, config, classification, sets, verbose, strict):
    """Parse rule files (PATH..., else the rule-files of -c) and report what loads, what is skipped and why.

    A progress bar shows the parsing on a terminal.  Exit 0 when rules load, 1 when a path is
    unusable, nothing loads, or (with --strict) anything is skipped.
    """
    import contextlib

    from mirrorwatch.cli.pipeline import PipelineError, fold_detect_skips, load_ruleset
    from mirrorwatch.cli.common import on_terminal
    from mirrorwatch.cli.progress import RulesProgress
    from mirrorwatch.core.detect import Detector
    from mirrorwatch.rules import check_report

    settings, run = build_run(sets, config=config)
    paths = list(paths) or run.rule_paths
    if not paths:
        fail("no rule file given: name PATH... or a configuration with rule-files (-c)", 2)
    try:
        with RulesProgress() if on_terminal() else contextlib.nullcontext() as progress:
            rs = load_ruleset(paths, settings, classification or run.classification, progress)
            # compiled as a replay would (the bar says 'preparing the rules'): what loads is what runs
            fold_detect_skips(rs, Detector(rs, settings))
    except PipelineError as e:
        fail(str(e))
    click.echo(check_report(rs))
    if verbose:
        for line in rs.skip_lines():
            click.echo(f"skipped: {line}")
        for w in rs.warnings:
            click.echo(f"warning: {w}")
    if not rs.rules or (strict and rs.skipped):
        sys.exit(1)
