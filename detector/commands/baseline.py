"""``mirrorwatch baseline``: write the streams found in captures as an allow-list to review."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from detector.config import baseline_toml


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The config file to write (TOML).")  # fmt: skip
def baseline(paths: tuple[str, ...], output: str) -> None:
    """Scan captures of a known-good period and write every mirror, intercept and flow-export
    stream found as an allow-list entry.  Review it: each entry silences a stream that copies
    traffic or reports on it.

    \b
    Example:
      mirrorwatch baseline last-week/ -o mirrorwatch.toml
      mirrorwatch scan --config mirrorwatch.toml today.pcap
    """
    from detector.scan import scan_paths

    result = scan_paths(list(paths))
    text = baseline_toml(result.report.findings, [i.path for i in result.report.inputs])
    Path(output).write_text(text)
    listed = text.count("[[expected]]")
    click.echo(f"mirrorwatch: wrote {listed} expected stream(s) to {output}", err=True)
    sys.exit(2 if result.unreadable else 0)


COMMAND = baseline
