"""``mirrorwatch report``: scan captures and write the HTML report."""

from __future__ import annotations

import sys

import click

from detector.cli import loading
from detector.commands.checks import (
    EXIT_CLEAN,
    EXIT_USAGE,
    check_inputs,
    check_output,
    echo_input_errors,
    write_atomic,
)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), default="report.html",
    show_default=True, help="Where to write the page.",
)  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no error lines on stderr.")
@click.option(
    "--geoip", "geoip", multiple=True, type=click.Path(dir_okay=False, exists=True),
    help="MaxMind-format database: country and AS of each exporter and collector.",
)  # fmt: skip
def report(paths: tuple[str, ...], output: str, quiet: bool, geoip: tuple[str, ...]) -> None:
    """Scan capture files and write one self-contained HTML page (no scripts, no downloads).

    \b
    Example:
      mirrorwatch report captures/ -o report.html
    Exit status: 0 written, 2 an input could not be read (the page is still written).
    """
    from detector.commands.scan import add_geoip

    with loading():
        from detector.report.html import render_html
        from detector.scan import scan_paths, stderr_progress

    inputs = check_inputs(list(paths), quiet)
    check_output(output)
    result = scan_paths(inputs.files, progress=None if quiet else stderr_progress())
    add_geoip(result.report.findings, list(geoip))
    page = render_html(result.report, result.timeline, result.evidence)
    write_atomic(output, page)
    if not quiet:
        echo_input_errors(result.report)
        n = len(result.report.findings)
        click.echo(f"mirrorwatch: {n} finding(s) written to {output}", err=True)
    sys.exit(EXIT_USAGE if result.unreadable else EXIT_CLEAN)


COMMAND = report
