"""``mirrorwatch settings``: every setting with its default (the README's table with --markdown)."""

from __future__ import annotations

import click

from mirrorwatch.cli.common import CONTEXT
from mirrorwatch.core.settings import SETTINGS, help_text


@click.command("settings", context_settings=CONTEXT)
@click.option("--markdown", is_flag=True, help="as a markdown table (the README's settings section)")
def settings_cmd(markdown):
    """List every setting with its default (change one with --set KEY=VALUE)."""
    if not markdown:
        click.echo(help_text())
        return
    click.echo("| setting | default | what it bounds |\n| --- | ---: | --- |")
    for s in SETTINGS:
        click.echo(f"| `{s.key}` | {s.default} | {s.help} |")
