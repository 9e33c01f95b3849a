"""``mirrorwatch watch``: findings streamed live from one or more interfaces (a span port)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import TextIO

import click

from detector.commands.scan import policy_from
from detector.findings import SEVERITY_ORDER
from detector.live import capture
from detector.policy.verdict import PolicyContext

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def _fail(msg: str) -> None:
    click.echo(f"mirrorwatch watch: {msg}", err=True)
    sys.exit(EXIT_USAGE)


def _start_capture(iface: str, bpf: str | None, buffer_kib: int, method: str) -> capture.Source:
    """Open the capture on ``iface`` by ``method``; auto prefers the kernel ring and falls back
    to a tcpdump child when this process may not open packet sockets."""
    from detector.live.afpacket import AfPacketSource

    if method in ("auto", "afpacket"):
        ring = AfPacketSource(iface, bpf, (buffer_kib or capture.BUFFER_KIB) * 1024)
        try:
            ring.start()
            return ring
        except capture.CaptureStartError as exc:
            if method == "afpacket" or "permission" not in str(exc):
                raise
    child = capture.CaptureChild(iface, capture.tcpdump_argv(iface, bpf, buffer_kib or None))
    child.start()
    return child


def load_policy(path: str | None) -> PolicyContext:
    """The policy from --config (the same file and rules as scan); a bad file exits 2."""
    return policy_from(path) or PolicyContext()


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
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Configuration file (thresholds, allow-list).",
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
    help="Event format: readable text, or one JSON object per line.",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.File("a"), default=None,
    help="Append events to this file (default: standard output).",
)  # fmt: skip
@click.option(
    "--summary-every", type=click.FloatRange(min=0), default=60.0, show_default=True,
    metavar="SECONDS", help="Write a summary this often (0: only at exit).",
)  # fmt: skip
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
    help="Stop after this long (default: until interrupted).",
)  # fmt: skip
@click.option(
    "--fail-on", type=click.Choice(list(SEVERITY_ORDER)), default="high", show_default=True,
    help="Exit 1 when a finding at or above this severity stands at the end.",
)  # fmt: skip
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
def watch(
    interfaces: tuple[str, ...],
    reads: tuple[str, ...],
    bpf: str | None,
    config_path: str | None,
    fmt: str,
    output: TextIO | None,
    summary_every: float,
    duration: float | None,
    fail_on: str,
    buffer_size: int,
    method: str,
) -> None:
    """Watch interfaces live and report streams the moment they appear.

    \b
    Each finding is written when it first appears and again when it escalates (higher
    severity, new hosts at the top of its watched list, mirror proof changing), with a
    summary (packets, flows, capture and kernel drops) every --summary-every seconds and
    at exit.  Capture reads a kernel ring (AF_PACKET) when permitted, else runs tcpdump child
    processes whose pipes this process reads (--capture).
    \b
    Examples:
      mirrorwatch watch -i eth1
      mirrorwatch watch -i eth1 -i eth2 --format jsonl -o /var/log/mirrorwatch/findings.jsonl
      ssh router tcpdump -i span0 -U -w - | mirrorwatch watch -r -
    Exit status: 0 nothing at or above --fail-on at the end, 1 something is, 2 usage error
    or a capture that could not start or failed.
    """
    from detector.live.loop import LiveWatch, WatchOptions
    from detector.live.output import EventWriter

    if not interfaces and not reads:
        _fail("give at least one interface (-i IFACE) or stream (-r PATH)")
    if len(set(interfaces)) != len(interfaces):
        _fail("an interface is given twice")
    if bpf and reads and not interfaces:
        _fail("--filter applies to captures (-i), not to streams read with -r")
    policy = load_policy(config_path)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # Before any child starts: an interrupt must always reach the code that stops them.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sources: list[capture.Source] = []
    try:
        for path in reads:
            sources.append(capture.StreamSource.open(path))
        for iface in interfaces:
            if stop.is_set():
                raise capture.CaptureStartError("interrupted while starting the captures")
            sources.append(_start_capture(iface, bpf, buffer_size, method))
    except capture.CaptureStartError as exc:
        for s in sources:
            s.stop()
            s.close()
        _fail(str(exc))

    live = LiveWatch(
        sources,
        EventWriter(output or sys.stdout, fmt),
        WatchOptions(summary_every=summary_every, duration=duration),
        policy,
        stop,
    )
    findings = live.run()
    for failure in live.failures:
        click.echo(f"mirrorwatch watch: {failure}", err=True)
    for s in sources:
        for e in s.stats.input.errors:
            click.echo(f"mirrorwatch watch: {s.name}: {e}", err=True)
    if live.failures:
        sys.exit(EXIT_USAGE)
    worst = max((SEVERITY_ORDER[f.severity] for f in findings), default=-1)
    sys.exit(EXIT_FOUND if worst >= SEVERITY_ORDER[fail_on] else EXIT_CLEAN)


COMMAND = watch
