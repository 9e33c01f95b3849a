"""``mirrorwatch explain``: one finding as Wireshark reads it."""

from __future__ import annotations

import sys

import click

from detector.cli import loading
from detector.commands.checks import check_inputs, check_output, echo_input_errors
from detector.report.safe import safe_lines

EXIT_OK, EXIT_USAGE = 0, 2


@click.command()
@click.argument("finding_id")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-c", "--packets", type=click.IntRange(1, 200), default=10, show_default=True,
    help="How many of the stream's first packets to show.",
)  # fmt: skip
@click.option("--no-detail", is_flag=True, help="Summary lines only, no packet tree.")
@click.option(
    "--save", type=click.Path(dir_okay=False, writable=True), default=None,
    help="Also write the packets shown to this pcap.",
)  # fmt: skip
def explain(
    finding_id: str, paths: tuple[str, ...], packets: int, no_detail: bool, save: str | None
) -> None:
    """Show how Wireshark reads finding FINDING_ID (an id from `scan`, or its unique prefix).

    PATH... are rescanned; the stream's first packets are read through pyshark (tshark) using
    the Decode As rules and preferences the format needs, and a tshark command and display
    filter that select exactly the stream's packets are printed.  Without tshark, scapy
    dissects the packets instead.

    \b
    Example:
      mirrorwatch explain mw-d6527aa36238d9d2 pcaps/tzsp-31337.pcap
    Exit status: 0 shown, 2 unknown finding or unreadable input.
    """
    with loading():
        from detector.explain import explain as run_explain
        from detector.explain import resolve
        from detector.scan import scan_paths

    inputs = check_inputs(list(paths))
    check_output(save)
    result = scan_paths(inputs.files)
    echo_input_errors(result.report)
    finding = resolve(finding_id, result.report.findings)
    if finding is None:
        known = ", ".join(f.id for f in result.report.findings) or "none"
        msg = f"no single finding {finding_id!r} in these inputs (found: {known})"
        click.echo(f"mirrorwatch: {msg}", err=True)
        sys.exit(EXIT_USAGE)
    ex = run_explain(
        finding,
        result.evidence.get(finding.id),
        list(paths),
        packets=packets,
        detail=not no_detail,
        keep=save,
    )
    click.echo(safe_lines(ex.text), nl=False)
    sys.exit(EXIT_OK)


COMMAND = explain
