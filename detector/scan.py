"""Run the engine over capture files and build the report."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from detector import __version__
from detector.capture.reader import InputStats, expand_paths
from detector.parts import SPLIT_MIN_BYTES, Folded, PartResult, can_cut, fold, plan, scan_parts

if TYPE_CHECKING:  # loaded once the packets are read (``_load_verdicts``)
    from detector.detection import Detection
    from detector.evidence import StreamEvidence
    from detector.findings import InputSummary, Report
    from detector.limits import Limits
    from detector.policy.verdict import PolicyContext
    from detector.timeline import Timeline

ProgressFn = Callable[[int, int], None]
# Worker processes -j auto starts at most (more parts cost memory and fold work).
MAX_AUTO_JOBS = 8


@dataclass(repr=False, eq=False)
class ScanResult:
    """A scan's report, with the evidence and timeline behind it."""

    report: Report
    # True when an input could not be read at all (exit status 2).
    unreadable: bool
    # The evidence behind each finding, by finding id (for evidence captures and explain).
    evidence: dict[str, StreamEvidence] = field(default_factory=dict)
    # Packets over time, for the link and each finding (the HTML report's charts).
    timeline: Timeline | None = None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_jobs(files: list[str], cores: int | None = None) -> int:
    """Worker processes that read ``files`` fastest, on ``cores`` usable cores.

    One where a second would not pay back its start, memory and share of the fold: inputs under
    SPLIT_MIN_BYTES, one core, or a single input that cannot be cut (standard input, a gzip
    file).  Else one per core for each SPLIT_MIN_BYTES of input, and no more than the inputs can
    be cut into.  Cores busy with other work are no reason for fewer: a process slowed by them
    hands the pieces it has not begun to the others (on a 2-core machine with one core busy,
    two processes read the 1 M-packet bench capture in 1.40 s against one's 1.50 s; with both
    busy, in 1.80 s against 2.54 s)."""
    cores = usable_cores() if cores is None else cores
    size = sum(os.path.getsize(p) for p in files if p != "-" and os.path.isfile(p))
    if cores < 2 or size < SPLIT_MIN_BYTES:
        return 1
    jobs = max(2, min(cores, MAX_AUTO_JOBS, size // SPLIT_MIN_BYTES))
    if not any(can_cut(p) for p in files):
        jobs = min(jobs, len(files))  # one worker per whole input at most
    return jobs


def scan_paths(
    paths: list[str],
    policy: PolicyContext | None = None,
    progress: ProgressFn | None = None,
    jobs: int | None = 1,
    cluster: str | None = None,
) -> ScanResult:
    """Scan files into a report; damaged inputs are reported in it, never fatal.

    With ``jobs`` > 1, large pcap files are cut in parts read by separate processes (None: as
    many as is fastest, ``auto_jobs``); with ``cluster`` (a Dask scheduler's address), files
    and parts are read by its workers."""
    files = expand_paths(paths)
    if jobs is None:
        jobs = auto_jobs(files)
    detection, limits = (policy.detection, policy.limits) if policy else (None, None)
    results, workers = _run(files, detection, limits, progress, jobs, cluster)
    from detector.findings import Report
    from detector.policy.verdict import PolicyContext, judge
    from detector.timeline import build_timeline

    ctx = policy or PolicyContext()
    folded = fold(results)
    ctx.link_hosts = folded.hosts
    judged = judge(folded.streams, ctx)
    report = Report(
        version=__version__,
        inputs=_inputs([i for r in results for i in r.inputs]),
        stats=_stats(folded, workers),
        findings=[f for f, _ in judged],
    )
    evidence = {f.id: ev for f, ev in judged}
    unreadable = any(r.unreadable for r in results)
    return ScanResult(report, unreadable, evidence, build_timeline(folded.stats.timeline, evidence))


def _load_verdicts() -> None:
    """Load what only the verdicts and the report need: a worker never does, and this process
    loads it once its own part is read, while the workers finish theirs, rather than before
    any packet is read."""
    import detector.findings
    import detector.policy.verdict
    import detector.timeline  # noqa: F401


def _run(
    files: list[str],
    detection: Detection | None,
    limits: Limits | None,
    progress: ProgressFn | None,
    jobs: int,
    cluster: str | None,
) -> tuple[list[PartResult], int]:
    """Every part's result, in capture order, and how many workers read them."""
    total = sum(os.path.getsize(p) for p in files if p != "-" and os.path.isfile(p))
    if cluster is not None:
        from detector.cluster import cluster_plan, scan_on_cluster

        groups = cluster_plan(files)
        done = None if progress is None else lambda n: progress(n, total)
        return scan_on_cluster(cluster, groups, done, detection, limits), len(groups)
    groups = plan(files, jobs)
    done = None if progress is None else lambda n: progress(n, total)
    return scan_parts(groups, done, detection, limits, _load_verdicts), len(groups)


def _stats(folded: Folded, workers: int) -> dict[str, int | float | str]:
    """The report's statistics: what the engines counted, folded."""
    st = folded.stats
    out: dict[str, int | float | str] = {
        **st.counts(
            flows=folded.total_flows,
            peak_flows=folded.peak_flows,
            hosts=folded.hosts,
            streams=len(folded.streams),
            shed=st.shed,
        ),
        "workers": workers,
    }
    if st.first_ts is not None and st.last_ts is not None:
        from detector.policy.verdict import _iso

        out["first_seen"] = _iso(st.first_ts)
        out["last_seen"] = _iso(st.last_ts)
    return out


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
    from detector.findings import InputSummary

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
