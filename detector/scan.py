"""Run the engine over capture files and build the report."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from detector import __version__
from detector.capture.reader import InputStats, expand_paths
from detector.evidence import StreamEvidence
from detector.findings import InputSummary, Report
from detector.parts import fold, plan, scan_parts
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


def default_jobs() -> int:
    """Worker processes for a scan: one per core, two at most (a second core is what the
    machines this runs on have; more parts cost memory and fold work for little)."""
    return max(1, min(2, os.cpu_count() or 1))


def scan_paths(
    paths: list[str],
    policy: PolicyContext | None = None,
    progress: ProgressFn | None = None,
    jobs: int = 1,
    cluster: str | None = None,
) -> ScanResult:
    """Scan files into a report; damaged inputs are reported in it, never fatal.

    With ``jobs`` > 1, large pcap files are cut in parts read by separate processes; with
    ``cluster`` (a Dask scheduler's address), files and parts are read by its workers."""
    files = expand_paths(paths)
    total = sum(os.path.getsize(p) for p in files if p != "-" and os.path.isfile(p))
    ctx = policy or PolicyContext()
    if cluster is not None:
        from detector.cluster import cluster_plan, scan_on_cluster

        groups = cluster_plan(files)
        results = scan_on_cluster(
            cluster,
            groups,
            None if progress is None else lambda done: progress(done, total),
            ctx.detection,
            ctx.limits,
        )
    else:
        groups = plan(files, jobs)
        # The first group is read in this process: its share of the bytes stands for the whole.
        share = len(groups)
        results = scan_parts(
            groups,
            None if progress is None else lambda done: progress(done * share, total),
            ctx.detection,
            ctx.limits,
        )
    folded = fold(results)
    inputs = _inputs([i for r in results for i in r.inputs])
    unreadable = any(r.unreadable for r in results)
    ctx.link_hosts = folded.hosts
    judged = judge(folded.streams, ctx)
    findings = [f for f, _ in judged]
    st = folded.stats
    stats_out: dict[str, int | float | str] = {
        "packets": st.packets,
        "bytes": st.bytes,
        "ip_packets": st.ip_packets,
        "non_ip_packets": st.non_ip_packets,
        "unknown_link_packets": st.unknown_link_packets,
        "flows": folded.total_flows,
        "peak_flows": folded.peak_flows,
        "hosts": folded.hosts,
        "candidate_packets": st.candidates,
        "streams": len(folded.streams),
        "fragments_reassembled": st.fragments_reassembled,
        "decoder_errors": sum(st.decoder_errors.values()),
        "workers": len(groups),
        **{f"shed_{k}": v for k, v in st.shed.items()},
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


def _inputs(stats: list[InputStats]) -> list[InputSummary]:
    """One summary per input path; parts of one file add up."""
    merged: dict[str, InputSummary] = {}
    for s in stats:
        m = merged.get(s.path)
        if m is None:
            merged[s.path] = _summary(s)
        else:
            m.packets += s.packets
            m.bytes += s.bytes
            m.errors.extend(s.errors)
    return list(merged.values())


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
