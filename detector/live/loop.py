"""The streaming loop: one reader thread per source feeding one engine, verdicts in the main thread.

Each reader thread parses its pipe into batches and runs the engine on them under one lock (the
reader reuses its block buffer, so a batch must be processed before the next read; the lock
serialises the engine).  The main thread recomputes the verdicts when something arrived, at most
every ``judge_every`` seconds and never taking more than a fifth of the time, diffs them by
finding id and writes what is new or escalated; it writes a summary every ``summary_every``
seconds and at the end.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detector.capture.reader import READ_ERRORS, CaptureError
from detector.decode.headers import KNOWN_LINKS
from detector.engine import Engine
from detector.findings import Finding
from detector.live.evidence import EvidenceStore
from detector.live.metrics import Metrics, Snapshot
from detector.live.output import EventWriter, finding_brief
from detector.live.source import Notice, Source
from detector.live.tracker import FindingTracker
from detector.policy.verdict import PolicyContext, judge
from detector.severity import SEVERITY_ORDER

# Findings listed by id in each summary (the rest are counted).
SUMMARY_FINDINGS = 100
# Verdicts may take at most this share of the time (they are recomputed over all streams).
JUDGE_SHARE = 0.2
TICK = 0.1
# At stop, how long each reader may take to read what its capture still held.
READ_DRAIN = 20.0
# Metrics snapshots this often; capture counters (tcpdump: a signal) asked for every few.
METRICS_EVERY = 1.0
COUNTERS_EVERY = 5


@dataclass
class WatchOptions:
    summary_every: float = 60.0
    duration: float | None = None
    judge_every: float = 0.5
    # Streams silent this long (capture time) are closed and kept only as their finding.
    stream_idle: float = 900.0


class LiveWatch:
    def __init__(
        self,
        sources: Sequence[Source],
        writer: EventWriter,
        options: WatchOptions | None = None,
        policy: PolicyContext | None = None,
        stop_event: threading.Event | None = None,
        evidence: EvidenceStore | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.sources = list(sources)
        self.writer = writer
        self.opts = options or WatchOptions()
        self.policy = policy or PolicyContext()
        self.engine = Engine(self.policy.limits, self.policy.detection)
        self.lock = threading.Lock()
        self.stop_event = stop_event or threading.Event()
        # Set by SIGHUP: the main thread reopens the output between two lines.
        self.reopen = threading.Event()
        self.tracker = FindingTracker(self.policy.limits.live_findings)
        self.evidence = evidence
        self.metrics = metrics
        self._metrics_ticks = 0
        self.findings: list[Finding] = []
        self._ended: dict[str, Finding] = {}
        self.failures: list[str] = []
        self._dirty = False
        self._busy = 0.0  # seconds spent in Engine.process
        self._judge_cost = 0.0
        self._last_judge = 0.0
        self._started = 0.0
        self._last_summary = (0.0, 0)  # (monotonic time, engine packets) at the last summary
        self._threads: list[threading.Thread] = []
        self._next_summary: float | None = None  # monotonic times of the next summary, metrics
        self._next_metrics = 0.0

    # ------------------------------------------------------------ readers

    def _read(self, src: Source) -> None:
        stats = src.stats.input
        batches = src.batches(stats)
        while True:
            # Reading and processing fail apart: a read error ends this source's input, an
            # engine error ends the watch; neither may be taken for the other.
            try:
                batch = next(batches, None)
            except CaptureError as exc:
                # A capture stopped before its first packet closes an empty stream: not an error.
                if not (src.stopping and stats.packets == 0):
                    self.failures.append(str(exc))  # it names the input
                return
            except READ_ERRORS as exc:
                if not src.stopping:
                    self.failures.append(f"{src.name}: reading stopped: {exc}")
                return
            except Exception:  # a reader bug: the watch must end loudly, not go blind
                self.failures.append(f"{src.name}: reading failed:\n{traceback.format_exc()}")
                self.stop_event.set()
                return
            if batch is None:
                return
            try:
                t0 = time.perf_counter()
                with self.lock:
                    self.engine.process(batch)
                    self._busy += time.perf_counter() - t0
                    self._dirty = True
            except Exception:  # an engine fault must end the watch, not leave it hanging
                self.failures.append(f"{src.name}: engine failed:\n{traceback.format_exc()}")
                self.stop_event.set()
                return
            stats.took(batch, KNOWN_LINKS)

    # ------------------------------------------------------------ main thread

    def run(self) -> list[Finding]:
        """Watch until stopped (``stop_event``), the duration is over, or the input ends."""
        self._started = time.monotonic()
        self._last_summary = (self._started, 0)
        for src in self.sources:
            t = threading.Thread(target=self._read, args=(src,), name=f"read-{src.name}")
            t.daemon = True
            t.start()
            self._threads.append(t)
        every = self.opts.summary_every
        self._next_summary = self._started + every if every else None
        self._next_metrics = self._started
        try:
            while True:
                stopped = self.stop_event.wait(TICK)
                now = time.monotonic()
                self._tick(now)
                if stopped or self._over(now):
                    break
        finally:
            self.shutdown()
        return self.findings

    def _tick(self, now: float) -> None:
        """What the main thread does between two waits: output, metrics, verdicts, summary."""
        self._tend_output()
        if self.metrics is not None and now >= self._next_metrics:
            self.update_metrics()
            self._next_metrics = now + METRICS_EVERY
        if self._dirty and now - self._last_judge >= self._judge_gap():
            self.judge_now()
        if self._next_summary is not None and now >= self._next_summary:
            self.summary(final=False)
            while self._next_summary <= now:
                self._next_summary += self.opts.summary_every

    def _over(self, now: float) -> bool:
        """The duration is over, a capture failed (said in the event log too), a reader or the
        engine failed, or every input ended."""
        if self.opts.duration is not None and now - self._started >= self.opts.duration:
            return True
        failed = [(s, why) for s in self.sources if (why := s.failed())]
        for src, why in failed:
            self.failures.append(why)
            # An event in the log itself, not only on stderr: the capture is over.
            state = "gone" if src.stats.state == "gone" else "failed"
            self.writer.notice(Notice(src.name, state, why))
        if failed or self.failures:
            return True
        return not any(t.is_alive() for t in self._threads)

    def _tend_output(self) -> None:
        """Reopen the output when asked (SIGHUP) and write the captures' notices."""
        if self.reopen.is_set():
            self.reopen.clear()
            self.writer.reopen()
        for src in self.sources:
            for notice in src.notices.take():
                self.writer.notice(notice)

    def _judge_gap(self) -> float:
        return max(self.opts.judge_every, self._judge_cost / JUDGE_SHARE)

    def shutdown(self) -> None:
        """Stop the children (they flush the packets they hold), read to the end, last verdict,
        final summary."""
        for src in self.sources:
            src.stop()
        for t in self._threads:
            t.join(READ_DRAIN)
        self._tend_output()
        self.judge_now(final=True)
        self.summary(final=True)
        if self.metrics is not None:
            self.update_metrics(ask=False)
        for src in self.sources:
            src.close()

    def update_metrics(self, ask: bool = True) -> None:
        assert self.metrics is not None
        self._metrics_ticks += 1
        if ask and self._metrics_ticks % COUNTERS_EVERY == 1:
            for s in self.sources:
                if s.running():
                    s.request_stats()  # read at the next snapshot; no waiting here
        with self.lock:
            st = self.engine.stats
            snap = Snapshot(
                packets=st.packets,
                bytes=st.bytes,
                streams=len(self.engine.streams),
                active_flows=len(self.engine.flows),
            )
        snap.uptime = round(time.monotonic() - self._started, 3)
        snap.findings_by_severity = dict(Counter(f.severity for f in self.findings))
        snap.captures = [s.stats.as_dict() for s in self.sources]
        self.metrics.update(snap)

    def judge_now(self, final: bool = False) -> None:
        t0 = time.perf_counter()
        with self.lock:
            self._dirty = False
            last = self.engine.stats.last_ts
            gone = (
                self.engine.expire_streams(last, self.opts.stream_idle) if last is not None else []
            )
            streams = self.engine.finish()
            self.policy.link_hosts = self.engine.distinct_hosts()
            # Streams that ended are folded into their last finding, so memory follows the
            # streams that are alive while no finding that was seen is lost.
            ended = judge(gone, self.policy)
            for f, _ in ended:
                self._ended[f.id] = f
            judged = judge(streams, self.policy)
            current = [f for f, _ in judged]
            alive = {f.id for f in current}
            findings = current + [f for i, f in self._ended.items() if i not in alive]
        self._judge_cost = time.perf_counter() - t0
        self._last_judge = time.monotonic()
        self.findings = findings
        changes = self.tracker.update(findings, self._last_judge)
        by_id = {f.id: (f, ev) for f, ev in (*ended, *judged)}
        for change in changes:
            got = by_id.get(change.finding.id)
            self.writer.change(change, ev=got[1] if got else None)
        if self.evidence is not None:
            # Evidence of what was reported or escalated now, of streams that just ended (their
            # samples are complete), and of everything at exit.
            want = (
                set(by_id) if final else {c.finding.id for c in changes} | {f.id for f, _ in ended}
            )
            self.evidence.save([by_id[i] for i in want if i in by_id])

    def summary(self, final: bool) -> None:
        tickets = [(s, s.request_stats()) for s in self.sources if s.running()]
        for s, ticket in tickets:
            s.wait_stats(ticket, 0.5)
        now = time.monotonic()
        with self.lock:
            st = self.engine.stats
            flows = self.engine.flows
            stats: dict[str, Any] = {
                **st.counts(
                    flows=flows.total_flows,
                    peak_flows=flows.peak_flows,
                    hosts=self.engine.distinct_hosts(),
                    streams=len(self.engine.streams),
                    shed=self.engine.sync_shed(),
                ),
                "active_flows": len(flows),
            }
            busy = self._busy
        since, packets_then = self._last_summary
        interval = max(now - since, 1e-9)
        stats["uptime_seconds"] = round(now - self._started, 3)
        stats["packets_per_second"] = round((stats["packets"] - packets_then) / interval, 1)
        stats["engine_seconds"] = round(busy, 3)
        stats["engine_packets_per_second"] = round(stats["packets"] / busy, 1) if busy else 0.0
        stats["judge_seconds"] = round(self._judge_cost, 4)
        self._last_summary = (now, stats["packets"])
        captures = [s.stats.as_dict() for s in self.sources]
        drops = {
            "kernel": sum(int(c.get("dropped_by_kernel", 0)) for c in captures),  # type: ignore[call-overload]
            "interface": sum(int(c.get("dropped_by_interface", 0)) for c in captures),  # type: ignore[call-overload]
        }
        by_sev = Counter(f.severity for f in self.findings)
        ordered = sorted(self.findings, key=lambda f: -SEVERITY_ORDER[f.severity])
        data: dict[str, Any] = {
            "final": final,
            "stats": stats,
            "captures": captures,
            "drops": drops,
            "findings_by_severity": dict(by_sev),
            "findings": [finding_brief(f) for f in ordered[:SUMMARY_FINDINGS]],
        }
        if len(ordered) > SUMMARY_FINDINGS:
            data["findings_not_listed"] = len(ordered) - SUMMARY_FINDINGS
        if self.failures:
            data["failures"] = [f.splitlines()[0] for f in self.failures]
        self.writer.summary(data)
