"""``mirrorwatch scan``: findings from capture files."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from detector.cli import loading
from detector.commands.checks import (
    EXIT_USAGE,
    check_inputs,
    check_output,
    echo_input_errors,
    eve_info_option,
    fail_on_option,
    sensor_name_option,
    severity_status,
    write_atomic,
)
from detector.report import RENDERERS, renderer

if TYPE_CHECKING:  # the engine and its numpy load when a scan runs, not for --help
    from detector.findings import Finding, Report
    from detector.policy.verdict import PolicyContext
    from detector.scan import ScanResult


class JobsType(click.ParamType):
    """A number of worker processes (1-64), or ``auto`` (None: the scan picks)."""

    name = "N|auto"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or value == "auto":
            return None
        try:
            n = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of processes or 'auto'", param, ctx)
        if not 1 <= n <= 64:
            self.fail(f"{n} is not in the range 1-64", param, ctx)
        return n


JOBS = JobsType()


def write_report(
    result: ScanResult,
    fmt: str,
    output: str | None,
    sensor: str | None = None,
    eve_info: bool = False,
) -> None:
    """The report on stdout, or replacing the file ``output`` whole."""
    if fmt == "eve":
        from detector.report.eve import render_eve

        text = render_eve(
            result.report, sensor=sensor, include_info=eve_info, evidence=result.evidence
        )
    elif fmt == "html":
        # The page's charts use the engine's counts, which other formats do not carry.
        from detector.report.html import render_html

        text = render_html(result.report, result.timeline, result.evidence)
    elif fmt == "text":
        from detector.report.text import render_text

        colour = output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        text = render_text(result.report, color=colour)
    else:
        text = renderer(fmt)(result.report)
    if output is not None and output != "-":
        write_atomic(output, text)
        return
    sys.stdout.write(text)
    sys.stdout.flush()


def policy_from(config_path: str | None) -> PolicyContext | None:
    """The policy of a config file (else of the default one, when there is one); a bad file is a
    usage error (exit 2) naming the field."""
    from detector.config_file import default_config_path

    config_path = config_path or default_config_path()
    if config_path is None:
        return None
    from detector.config import ConfigError, load_config

    try:
        return load_config(config_path).policy()
    except ConfigError as exc:
        click.echo(f"mirrorwatch: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def config_geoip(config_path: str | None) -> list[str]:
    """The config file's ``geoip`` databases (relative to the file)."""
    if config_path is None:
        return []
    from pathlib import Path

    from detector.config import load_config

    base = Path(config_path).parent
    return [str(base / p) for p in load_config(config_path).geoip]


def add_geoip(findings: list[Finding], paths: list[str]) -> None:
    """Country and AS of each exporter and collector; a bad database is a usage error."""
    if not paths:
        return
    from detector.geoip import GeoIPError, enrich

    try:
        enrich(findings, paths)
    except GeoIPError as exc:
        click.echo(f"mirrorwatch: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def exit_status(report: Report, fail_on: str, unreadable: bool) -> int:
    if unreadable:
        return EXIT_USAGE
    return severity_status(report.findings, fail_on)


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text",
    show_default=True, help="Report format.",
)  # fmt: skip
@fail_on_option("is found")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None,
    help="Write the report to this file (replaced whole once the scan is done).",
)  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no error lines on stderr.")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Config file: expected collectors (reported at low), home networks, thresholds.",
)  # fmt: skip
@click.option(
    "--evidence",
    "evidence_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write per finding a pcap of its packets and one of the frames they carried.",
)
@click.option(
    "--evidence-packets", type=click.IntRange(0), default=200, show_default=True,
    help="At most this many packets per evidence capture.",
)  # fmt: skip
@click.option(
    "--geoip", "geoip", multiple=True, type=click.Path(dir_okay=False, exists=True),
    help="MaxMind-format database (country/city or ASN; repeat for both): country and AS "
    "of each exporter and collector.",
)  # fmt: skip
@sensor_name_option
@eve_info_option
@click.option(
    "-j", "--jobs", type=JOBS, default="auto", show_default=True,
    help="Worker processes, or auto: one for small inputs, inputs that cannot be cut (gzip, "
    "stdin) or one core, else one per core for each 64 MiB of input (at most 8); "
    "large pcap and pcapng files are cut in pieces shared out as the processes read.",
)  # fmt: skip
@click.option(
    "--cluster", metavar="ADDRESS", default=None,
    help="Read the inputs on a Dask cluster (its scheduler's address, tcp://HOST:8786): every "
    "worker needs this version and the inputs at the same paths (docs/cluster.md).",
)  # fmt: skip
def scan(
    paths: tuple[str, ...],
    fmt: str,
    fail_on: str,
    output: str | None,
    quiet: bool,
    config_path: str | None,
    evidence_dir: str | None,
    evidence_packets: int,
    geoip: tuple[str, ...],
    sensor_name: str | None,
    eve_info: bool,
    jobs: int | None,
    cluster: str | None,
) -> None:
    """Scan capture files (pcap, pcapng, .gz, directories, or - for stdin).

    \b
    Examples:
      mirrorwatch scan pcaps/tzsp.pcap
      mirrorwatch scan --format json captures/ > report.json
      tcpdump -i eth0 -w - | mirrorwatch scan -
    Exit status: 0 nothing at or above --fail-on, 1 something is, 2 usage or unreadable input.
    """
    with loading():
        from detector.scan import scan_paths, stderr_progress

    inputs = check_inputs(list(paths), quiet)
    check_output(output)
    policy = policy_from(config_path)
    if cluster is not None and "-" in paths:
        raise click.UsageError("standard input cannot be read on a cluster")
    cluster_errors: tuple[type[Exception], ...] = ()
    if cluster is not None:
        from detector.cluster import ClusterError

        cluster_errors = (ClusterError,)
    try:
        result = scan_paths(
            inputs.files,
            policy,
            progress=None if quiet else stderr_progress(),
            jobs=jobs,
            cluster=cluster,
        )
    except cluster_errors as exc:
        click.echo(f"mirrorwatch: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    add_geoip(result.report.findings, [*geoip, *config_geoip(config_path)])
    write_report(result, fmt, output, sensor_name, eve_info)
    if evidence_dir is not None:
        from detector.report.evidence_pcap import write_evidence

        written = write_evidence(result, evidence_dir, evidence_packets)
        if not quiet:
            click.echo(
                f"mirrorwatch: {len(written)} evidence capture(s) in {evidence_dir}", err=True
            )
    if not quiet:
        echo_input_errors(result.report)
    sys.exit(exit_status(result.report, fail_on, result.unreadable))


COMMAND = scan
