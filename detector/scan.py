"""Run the engine over capture files and build the report."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from detector import __version__
from detector.capture.reader import (
    CaptureError,
    InputStats,
    expand_paths,
    open_stream,
    read_batches,
)
from detector.decode.headers import KNOWN_LINKS
from detector.engine import Engine
from detector.evidence import StreamEvidence
from detector.findings import InputSummary, Report
from detector.policy.verdict import PolicyContext, judge
from detector.timeline import Timeline, build_timeline

ProgressFn = Callable[[int, int], None]


@dataclass
class ScanResult:
    report: Report
    # True when an input could not be read at all (exit status 2).
    unreadable: bool
    # The evidence behind each finding, by finding id (for evidence captures and explain).
    evidence: dict[str, StreamEvidence] = field(default_factory=dict)
    # Packets over time, for the link and each finding (the HTML report's charts).
    timeline: Timeline | None = None


def scan_paths(
    paths: list[str],
    policy: PolicyContext | None = None,
    progress: ProgressFn | None = None,
) -> ScanResult:
    """Scan files into a report; damaged inputs are reported in it, never fatal."""
    engine = Engine()
    inputs: list[InputSummary] = []
    unreadable = False
    files = expand_paths(paths)
    total = sum(os.path.getsize(p) for p in files if p != "-" and os.path.isfile(p))
    done = 0
    for path in files:
        stats = InputStats(path)
        unknown_links: set[int] = set()
        try:
            stream = open_stream(path)
        except CaptureError as exc:
            stats.error(str(exc))
            unreadable = True
            inputs.append(_summary(stats))
            continue
        try:
            for batch in read_batches(stream, stats):
                stats.packets += len(batch)
                stats.bytes += int(batch.wirelen.sum())
                for lt in set(batch.linktype.tolist()) - KNOWN_LINKS - unknown_links:
                    unknown_links.add(lt)
                    stats.error(
                        f"link type {lt} is not supported: its packets are counted but not decoded"
                    )
                engine.process(batch)
                if progress:
                    progress(done + _position(stream), total)
        except CaptureError as exc:
            stats.error(str(exc))
            unreadable = True
        except (OSError, EOFError, ValueError) as exc:
            # gzip streams cut short, device errors: keep what was read so far.
            stats.error(f"{path}: reading stopped: {exc}")
        finally:
            if path != "-":
                done += os.path.getsize(path) if os.path.isfile(path) else 0
            stream.close()
        inputs.append(_summary(stats))
    streams = engine.finish()
    ctx = policy or PolicyContext()
    ctx.link_hosts = engine.distinct_hosts()
    judged = judge(streams, ctx)
    findings = [f for f, _ in judged]
    st = engine.stats
    stats_out: dict[str, int | float | str] = {
        "packets": st.packets,
        "bytes": st.bytes,
        "ip_packets": st.ip_packets,
        "non_ip_packets": st.non_ip_packets,
        "unknown_link_packets": st.unknown_link_packets,
        "flows": engine.flows.total_flows,
        "peak_flows": engine.flows.peak_flows,
        "hosts": engine.distinct_hosts(),
        "candidate_packets": st.candidates,
        "streams": len(streams),
        "fragments_reassembled": st.fragments_reassembled,
    }
    if st.first_ts is not None and st.last_ts is not None:
        from detector.policy.verdict import _iso

        stats_out["first_seen"] = _iso(st.first_ts)
        stats_out["last_seen"] = _iso(st.last_ts)
    report = Report(
        schema="mirrorwatch/1",
        version=__version__,
        inputs=inputs,
        stats=stats_out,
        findings=findings,
    )
    evidence = {f.id: ev for f, ev in judged}
    return ScanResult(report, unreadable, evidence, build_timeline(st.timeline, evidence))


def _position(stream: object) -> int:
    try:
        raw = getattr(stream, "fileobj", None) or getattr(stream, "raw", None) or stream
        return int(raw.tell())  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):
        return 0


def _summary(s: InputStats) -> InputSummary:
    return InputSummary(path=s.path, packets=s.packets, bytes=s.bytes, errors=s.errors)


def stderr_progress() -> ProgressFn | None:
    """A one-line progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total <= 0:
            return
        frac = min(1.0, done / total)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r  scanning [{bar:<30}] {frac:5.1%}")
        if frac >= 1.0:
            sys.stderr.write("\r" + " " * 50 + "\r")
        sys.stderr.flush()

    return show
