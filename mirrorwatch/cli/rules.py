"""``mirrorwatch rules check PATH...``: what a rule set loads, what it skips and why."""

from __future__ import annotations

import sys

import click

from mirrorwatch.cli.common import CONTEXT, build_settings, fail


@click.group(context_settings=CONTEXT)
def rules():
    """Work with rule files."""


@rules.command("check", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--classification", metavar="FILE", default=None, help="classification.config [default: bundled]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a setting (e.g. rule variables)")
@click.option("-v", "--verbose", is_flag=True, help="list every skipped rule as file:line: sid: reason")
@click.option("--strict", is_flag=True, help="exit 1 when any rule is skipped")
def rules_check(paths, classification, sets, verbose, strict):
    """Parse rule files and report what loads, what is skipped and why.

    Exit 0 when rules load, 1 when a path is unusable, nothing loads, or
    (with --strict) anything is skipped.
    """
    from mirrorwatch.cli.pipeline import PipelineError, fold_detect_skips, load_ruleset
    from mirrorwatch.core.detect import Detector
    from mirrorwatch.rules import check_report

    settings = build_settings(sets)
    try:
        rs = load_ruleset(paths, settings, classification)
    except PipelineError as e:
        fail(str(e))
    fold_detect_skips(rs, Detector(rs, settings))  # compiled as a replay would: what loads is what runs
    click.echo(check_report(rs))
    if verbose:
        for line in rs.skip_lines():
            click.echo(f"skipped: {line}")
        for w in rs.warnings:
            click.echo(f"warning: {w}")
    if not rs.rules or (strict and rs.skipped):
        sys.exit(1)
