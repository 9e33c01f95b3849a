"""``mirrorwatch baseline``: write the streams found in captures as an allow-list to review."""

from __future__ import annotations

import sys

import click

from detector.cli import loading
from detector.commands.checks import (
    check_inputs,
    check_output,
    echo_input_errors,
    fail,
    write_atomic,
)
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
    with loading():
        from detector.scan import scan_paths

    inputs = check_inputs(list(paths))
    check_output(output)
    result = scan_paths(inputs.files)
    echo_input_errors(result.report)
    # A reviewed allow-list is replaced only by one made from every input: never by the
    # output of a typo, an unreadable file or a capture that held nothing.
    empty = [i.path for i in result.report.inputs if i.packets == 0]
    if result.unreadable or empty:
        fail(f"{output} not written: no packets read from {', '.join(empty) or 'an input'}")
    text = baseline_toml(result.report.findings, [i.path for i in result.report.inputs])
    write_atomic(output, text)
    listed = text.count("[[expected]]")
    click.echo(f"mirrorwatch: wrote {listed} expected stream(s) to {output}", err=True)
    sys.exit(0)


COMMAND = baseline
