"""The ``mirrorwatch`` command."""

from __future__ import annotations

import json
import sys

import click

from detector import __version__
from detector.findings import SEVERITY_ORDER, Report

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
SEVERITIES = list(SEVERITY_ORDER)


def _emit(report: Report, fmt: str, out: click.utils.LazyFile | None) -> None:
    if fmt == "json":
        text = report.model_dump_json(by_alias=True, indent=2) + "\n"
    elif fmt == "jsonl":
        text = "".join(f.model_dump_json() + "\n" for f in report.findings)
    else:
        from detector.report.text import render_text

        text = render_text(report)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.write(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirrorwatch")
def main() -> None:
    """Find streams that carry copies of your traffic (mirrors, lawful-intercept exports) or
    records about it (NetFlow, IPFIX, sFlow), in captures or live on a span port."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text",
    show_default=True, help="Report format.",
)  # fmt: skip
@click.option(
    "--fail-on", type=click.Choice(SEVERITIES), default="high", show_default=True,
    help="Exit 1 when a finding at or above this severity is found.",
)  # fmt: skip
@click.option("-o", "--output", type=click.File("w"), default=None, help="Write the report here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def scan(paths: tuple[str, ...], fmt: str, fail_on: str, output: object, quiet: bool) -> None:
    """Scan capture files (pcap, pcapng, .gz, directories, or - for stdin).

    \b
    Examples:
      mirrorwatch scan pcaps/tzsp.pcap
      mirrorwatch scan --format json captures/ > report.json
      tcpdump -i eth0 -w - | mirrorwatch scan -
    Exit status: 0 nothing at or above --fail-on, 1 something is, 2 usage or unreadable input.
    """
    from detector.scan import scan_paths, stderr_progress

    report, unreadable = scan_paths(list(paths), progress=None if quiet else stderr_progress())
    _emit(report, fmt, output)  # type: ignore[arg-type]
    for inp in report.inputs:
        for e in inp.errors:
            click.echo(f"mirrorwatch: {inp.path}: {e}", err=True)
    if unreadable:
        sys.exit(EXIT_USAGE)
    worst = max((SEVERITY_ORDER[f.severity] for f in report.findings), default=-1)
    sys.exit(EXIT_FOUND if worst >= SEVERITY_ORDER[fail_on] else EXIT_CLEAN)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the report (docs/schema.json is this output)."""
    click.echo(json.dumps(Report.model_json_schema(by_alias=True), indent=2))


if __name__ == "__main__":
    main()
