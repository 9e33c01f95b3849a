"""Checks every command makes before a long scan, how it writes and reports, and the options
scan and watch share.

A typo in a path or an output that cannot be written is a usage error (exit 2) said in one line
before any packet is read, not after an hour of scanning; an output file is replaced whole or not
at all, so a failed run never leaves half a report or an emptied allow-list behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from click.decorators import FC

from detector.report.safe import safe_text
from detector.severity import SEVERITY_ORDER

if TYPE_CHECKING:  # the reader loads numpy, the report's records are needed once a scan is read
    from detector.capture.reader import Inputs
    from detector.findings import Finding, Report

# Exit statuses of every command: nothing to report, a finding at or above --fail-on, a usage
# error or an input that could not be read.
EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
# Skipped files named on stderr; the rest are counted.
SKIPPED_SHOWN = 10


def fail(message: str) -> NoReturn:
    click.echo(f"mirrorwatch: {safe_text(message)}", err=True)
    sys.exit(EXIT_USAGE)


def check_inputs(paths: list[str], quiet: bool = False) -> Inputs:
    """The capture files the paths hold; exit 2 when a path does not exist, stdin is named
    twice, or a directory holds no capture.  Files of a directory that are not captures are
    listed on stderr."""
    if paths.count("-") > 1:
        fail("standard input (-) can be read only once")
    from detector.capture.reader import Inputs, find_inputs

    found = Inputs()
    for p in paths:
        if p != "-" and not os.path.exists(p):
            fail(f"{p}: no such file or directory")
        inputs = find_inputs([p])
        if p != "-" and os.path.isdir(p) and not inputs.files:
            if not inputs.skipped:
                fail(f"{p}: empty directory, no capture to read")
            fail(f"{p}: no capture files in this directory ({_listed(inputs.skipped)})")
        found.files.extend(inputs.files)
        found.skipped.extend(inputs.skipped)
    if found.skipped and not quiet:
        click.echo(
            f"mirrorwatch: skipped {len(found.skipped)} file(s) that are not pcap, pcapng or "
            f"gzip'd captures: {_listed(found.skipped)}",
            err=True,
        )
    return found


def _listed(names: list[str]) -> str:
    shown = ", ".join(safe_text(n) for n in names[:SKIPPED_SHOWN])
    more = len(names) - SKIPPED_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_output(path: str | None) -> None:
    """Exit 2 unless ``path`` can be written (its directory exists and is writable)."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        fail(f"{path}: is a directory, not a file to write")
    parent = target.parent
    if not parent.is_dir():
        fail(f"{path}: cannot write: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        fail(f"{path}: cannot write: permission denied")


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a temporary file renamed over it)."""
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    import tempfile  # with shutil, random and the compressors: only when a file is written

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def echo_input_errors(report: Report) -> None:
    """Each input's problems on stderr, one line each."""
    for inp in report.inputs:
        for e in inp.errors:
            click.echo(safe_text(f"mirrorwatch: {inp.path}: {e}"), err=True)


def severity_status(findings: Iterable[Finding], fail_on: str) -> int:
    """1 when a finding is at or above the severity ``fail_on``, else 0."""
    worst = max((SEVERITY_ORDER[f.severity] for f in findings), default=-1)
    return EXIT_FOUND if worst >= SEVERITY_ORDER[fail_on] else EXIT_CLEAN


def fail_on_option(when: str) -> Callable[[FC], FC]:
    """--fail-on of scan and watch; ``when`` ends its help (what "found" means there)."""
    return click.option(
        "--fail-on", type=click.Choice(list(SEVERITY_ORDER)), default="high", show_default=True,
        help=f"Exit 1 when a finding at or above this severity {when}.",
    )  # fmt: skip


# EVE options of both scan and watch: one definition, one help text.
sensor_name_option = click.option(
    "--sensor-name", default=None, metavar="NAME",
    help="EVE: this sensor's name in each event's host field (default: this host's name).",
)  # fmt: skip
eve_info_option = click.option(
    "--eve-info", is_flag=True,
    help="EVE: also write info findings (tunnels); by default only alerts worth raising.",
)  # fmt: skip
