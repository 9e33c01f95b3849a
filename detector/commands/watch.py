"""``mirrorwatch watch``: findings streamed live from one or more interfaces (a span port)."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from detector.cli import loading
from detector.commands.checks import (
    EXIT_USAGE,
    eve_info_option,
    fail_on_option,
    sensor_name_option,
    severity_status,
)
from detector.commands.scan import policy_from
from detector.live import capture
from detector.policy.verdict import PolicyContext

if TYPE_CHECKING:
    from detector.findings import Finding
    from detector.live.evidence import EvidenceStore
    from detector.live.loop import LiveWatch
    from detector.live.metrics import Metrics


def _fail(msg: str) -> NoReturn:
    click.echo(f"mirrorwatch watch: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def _start_capture(
    iface: str, bpf: str | None, buffer_kib: int, method: str, promisc: bool = True
) -> capture.Source:
    """Open the capture on ``iface`` by ``method``; auto prefers the kernel ring and falls back
    to a tcpdump child when this process may not open packet sockets."""
    from detector.live.afpacket import AfPacketSource

    if method in ("auto", "afpacket"):
        ring = AfPacketSource(iface, bpf, (buffer_kib or capture.BUFFER_KIB) * 1024, promisc)
        try:
            ring.start()
            return ring
        except capture.CaptureStartError as exc:
            if method == "afpacket" or "permission" not in str(exc):
                raise
    argv = capture.tcpdump_argv(iface, bpf, buffer_kib or None, promisc=promisc)
    child = capture.CaptureChild(iface, argv)
    child.start()
    return child


def load_policy(path: str | None) -> PolicyContext:
    """The policy from --config (the same file and rules as scan); a bad file exits 2."""
    return policy_from(path) or PolicyContext()


@dataclass
class WatchArgs:
    """The command line of ``watch``, as click parses it."""

    interfaces: tuple[str, ...]
    reads: tuple[str, ...]
    bpf: str | None
    config_path: str | None
    fmt: str
    output: str | None
    sensor_name: str | None
    eve_info: bool
    promisc: bool
    evidence_dir: str | None
    evidence_max_mb: int
    evidence_packets: int
    metrics_port: int | None
    metrics_address: str
    metrics_textfile: str | None
    summary_every: float
    duration: float | None
    fail_on: str
    buffer_size: int
    method: str


@click.command()
@click.option(
    "-i", "--interface", "interfaces", multiple=True, metavar="IFACE",
    help="Capture on this interface (repeat for several; one capture process each).",
)  # fmt: skip
@click.option(
    "-r", "--read", "reads", multiple=True, metavar="PATH",
    help="Read a pcap stream from a pipe, FIFO or file (- for stdin) instead of capturing.",
)  # fmt: skip
@click.option(
    "--filter", "bpf", default=None, metavar="BPF", help="Capture filter (tcpdump syntax)."
)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Configuration file (thresholds, allow-list); default $MIRRORWATCH_CONFIG, else "
    "/etc/mirrorwatch/mirrorwatch.toml when present.",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl", "eve"]), default="text",
    show_default=True,
    help="Event format: readable text, one JSON object per line, or Suricata EVE (alert, "
    "stats and engine events).",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None,
    help="Append events to this file (default: standard output); SIGHUP reopens it.",
)  # fmt: skip
@sensor_name_option
@eve_info_option
@click.option(
    "--promisc/--no-promisc", default=True, show_default=True,
    help="Put the capture interfaces in promiscuous mode (frames for other MACs too).",
)  # fmt: skip
@click.option(
    "--evidence", "evidence_dir", type=click.Path(file_okay=False), default=None,
    help="Write each finding's packets as pcap files in this directory (rewritten as the "
    "finding grows; oldest files removed beyond --evidence-max-mb).",
)  # fmt: skip
@click.option(
    "--evidence-max-mb", type=click.IntRange(min=1), default=256, show_default=True,
    help="Size cap of the --evidence directory's captures.",
)  # fmt: skip
@click.option(
    "--evidence-packets", type=click.IntRange(min=1), default=200, show_default=True,
    help="At most this many packets per evidence capture.",
)  # fmt: skip
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
    help="Serve Prometheus metrics on this TCP port (0: any free port, named on stderr).",
)  # fmt: skip
@click.option(
    "--metrics-address", default="127.0.0.1", show_default=True, metavar="ADDRESS",
    help="Address the metrics port listens on.",
)  # fmt: skip
@click.option(
    "--metrics-textfile", default=None, metavar="PATH",
    help="Write Prometheus metrics to this file every second (node_exporter textfile collector).",
)  # fmt: skip
@click.option(
    "--summary-every", type=click.FloatRange(min=0), default=60.0, show_default=True,
    metavar="SECONDS", help="Write a summary this often (0: only at exit).",
)  # fmt: skip
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
    help="Stop after this long (default: until interrupted).",
)  # fmt: skip
@fail_on_option("stands at the end")
@click.option(
    "--buffer-size", type=click.IntRange(min=0), default=capture.BUFFER_KIB, show_default=True,
    metavar="KIB", help="Kernel capture buffer per interface (ring size, or tcpdump -B).",
)  # fmt: skip
@click.option(
    "--capture", "method", type=click.Choice(["auto", "afpacket", "tcpdump"]), default="auto",
    show_default=True,
    help="afpacket: a kernel ring read in this process (needs CAP_NET_RAW; fastest); tcpdump: "
    "a child process holds the capture privileges; auto: afpacket when permitted.",
)  # fmt: skip
def watch(**options: Any) -> None:
    """Watch interfaces live and report streams the moment they appear.

    \b
    Each finding is written when it first appears and again when it escalates (higher
    severity, new hosts at the top of its watched list, mirror proof changing), with a
    summary (packets, flows, capture and kernel drops) every --summary-every seconds and
    at exit.  Capture reads a kernel ring (AF_PACKET) when permitted, else runs tcpdump child
    processes whose pipes this process reads (--capture).  SIGHUP reopens --output (after
    logrotate renamed it); a capture interface that disappears ends the watch (exit 2).
    \b
    Examples:
      mirrorwatch watch -i eth1
      mirrorwatch watch -i eth1 -i eth2 --format jsonl -o /var/log/mirrorwatch/findings.jsonl
      ssh router tcpdump -i span0 -U -w - | mirrorwatch watch -r -
    Exit status: 0 nothing at or above --fail-on at the end, 1 something is, 2 usage error,
    or a capture or input that could not start, failed or could not be read.
    """
    a = WatchArgs(**options)
    _check_arguments(a)
    policy = load_policy(a.config_path)
    evidence, out = _outputs(a)
    with _signals() as (stop, reopen):
        _watch(a, policy, evidence, out, stop, reopen)


def _watch(
    a: WatchArgs,
    policy: PolicyContext,
    evidence: EvidenceStore | None,
    out: TextIO,
    stop: threading.Event,
    reopen: threading.Event,
) -> None:
    with loading():
        from detector.live.loop import LiveWatch, WatchOptions
        from detector.live.output import EventWriter

    metrics = _start_metrics(a)
    sources = _start_sources(a, stop, metrics)
    in_iface = a.interfaces[0] if len(a.interfaces) == 1 and not a.reads else None
    writer = EventWriter(out, a.fmt, path=a.output, sensor=a.sensor_name or socket.gethostname(),
                         interface=in_iface)  # fmt: skip
    writer.eve_info = a.eve_info
    opts = WatchOptions(summary_every=a.summary_every, duration=a.duration)
    live = LiveWatch(sources, writer, opts, policy, stop, evidence=evidence, metrics=metrics)
    live.reopen = reopen
    try:
        findings = live.run()
    finally:
        writer.close()
        if metrics is not None:
            metrics.close()
    sys.exit(_exit_status(live, sources, findings, a.fail_on))


def _check_arguments(a: WatchArgs) -> None:
    if not a.interfaces and not a.reads:
        _fail("give at least one interface (-i IFACE) or stream (-r PATH)")
    if len(set(a.interfaces)) != len(a.interfaces):
        _fail("an interface is given twice")
    if a.bpf and a.reads and not a.interfaces:
        _fail("--filter applies to captures (-i), not to streams read with -r")


def _outputs(a: WatchArgs) -> tuple[EvidenceStore | None, TextIO]:
    """The evidence directory and the event output, checked before any capture starts."""
    from detector.live.evidence import EvidenceStore
    from detector.live.metrics import check_textfile
    from detector.live.output import open_output

    evidence = None
    if a.evidence_dir is not None:
        evidence = EvidenceStore(a.evidence_dir, a.evidence_max_mb << 20, a.evidence_packets)
        if why := evidence.check():
            _fail(why)
    if a.metrics_textfile and (why := check_textfile(a.metrics_textfile)):
        _fail(why)
    out: TextIO = sys.stdout
    if a.output is not None:
        try:
            out = open_output(a.output)
        except OSError as exc:
            _fail(f"cannot write {a.output}: {exc.strerror}")
    return evidence, out


@contextmanager
def _signals() -> Iterator[tuple[threading.Event, threading.Event]]:
    """Events set by SIGINT/SIGTERM (stop) and SIGHUP (reopen the output).  Installed before
    any child starts: an interrupt must always reach the code that stops them, and a SIGHUP
    from logrotate must never end the watch.  The handlers they replaced come back when the
    watch ends however it ends: run inside a longer-lived program, a handler left behind would
    swallow that program's SIGTERM (and its forked workers', which inherit it)."""
    stop = threading.Event()
    reopen = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def on_hangup(signum: int, _frame: FrameType | None) -> None:
        reopen.set()

    handlers = {signal.SIGINT: on_signal, signal.SIGTERM: on_signal, signal.SIGHUP: on_hangup}
    replaced = {signum: signal.getsignal(signum) for signum in handlers}
    try:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        yield stop, reopen
    finally:
        for signum, previous in replaced.items():
            # None: a handler not set from Python, which cannot be put back; the default
            # action is nearer to it than a handler setting an event nobody waits on.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)


def _start_metrics(a: WatchArgs) -> Metrics | None:
    from detector.live.metrics import Metrics

    if a.metrics_port is None and not a.metrics_textfile:
        return None
    metrics = Metrics(a.metrics_textfile)
    if a.metrics_port is not None:
        try:
            port = metrics.serve(a.metrics_address, a.metrics_port)
        except OSError as exc:
            _fail(f"metrics on {a.metrics_address}:{a.metrics_port}: {exc.strerror}")
        click.echo(f"mirrorwatch watch: metrics on http://{a.metrics_address}:{port}/metrics",
                   err=True)  # fmt: skip
    return metrics


def _start_sources(
    a: WatchArgs, stop: threading.Event, metrics: Metrics | None
) -> list[capture.Source]:
    """The streams read (-r) and the captures (-i); any that cannot start stops the others
    and exits 2."""
    sources: list[capture.Source] = []
    try:
        for path in a.reads:
            sources.append(capture.StreamSource.open(path))
        for iface in a.interfaces:
            if stop.is_set():
                raise capture.CaptureStartError("interrupted while starting the captures")
            sources.append(_start_capture(iface, a.bpf, a.buffer_size, a.method, a.promisc))
    except capture.CaptureStartError as exc:
        for s in sources:
            s.stop()
            s.close()
        if metrics is not None:
            metrics.close()
        _fail(str(exc))
    return sources


def _exit_status(
    live: LiveWatch, sources: list[capture.Source], findings: list[Finding], fail_on: str
) -> int:
    """Failures and read errors said on stderr; 2 for a failure, else 1 or 0 by --fail-on."""
    for failure in live.failures:
        click.echo(f"mirrorwatch watch: {failure}", err=True)
    for s in sources:
        for e in s.stats.input.errors:
            click.echo(f"mirrorwatch watch: {s.name}: {e}", err=True)
    if live.failures:
        return EXIT_USAGE
    return severity_status(findings, fail_on)


COMMAND = watch
