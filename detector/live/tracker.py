"""Which findings to write now: new ones, and those that escalated since they were last written.

A finding is identified by its id (same format, exporter, collector and collector port), so the
verdicts can be recomputed from scratch after every batch and diffed here.  An escalation is
what an operator would want to be woken for again: a higher severity than any written before,
the mirror proof flipping, or hosts entering the top of the watched list.  Hosts churn on a busy
link, so host-only escalations of one finding are spaced out: quickly while it is young (when
each new name matters most), then doubling up to a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.findings import Finding
from detector.severity import SEVERITY_ORDER

# Hosts at the top of a finding's watched list that an escalation is about.
TOP_WATCHED = 5
# Seconds between escalations of one finding caused by new watched hosts alone: the first gap,
# doubled after each such escalation, up to the last.
HOST_GAP_FIRST = 1.0
HOST_GAP_MAX = 60.0
# Watched hosts remembered per finding (so a host dropping out and back is not news again).
MAX_REMEMBERED_HOSTS = 256


@dataclass
class _Written:
    severity: int
    kind: str
    proven: bool | None
    hosts: set[str] = field(default_factory=set)
    last_host_event: float = 0.0
    host_events: int = 0

    def host_gap(self) -> float:
        return min(HOST_GAP_MAX, HOST_GAP_FIRST * 2.0**self.host_events)


@dataclass
class Change:
    event: str  # "finding" or "escalation"
    finding: Finding
    changes: list[str]


def _proven(f: Finding) -> bool | None:
    v = f.evidence.get("mirror_proven")
    return v if isinstance(v, bool) else None


def top_hosts(f: Finding) -> list[str]:
    return [w.ip or w.mac or "?" for w in f.watched[:TOP_WATCHED]]


# Findings remembered as written (the oldest are forgotten past it: memory is bounded even
# when the input makes findings without end; one forgotten and seen again is written again).
MAX_WRITTEN = 4096


class FindingTracker:
    def __init__(self, max_written: int = MAX_WRITTEN) -> None:
        self.written: dict[str, _Written] = {}
        self.max_written = max_written
        self.forgotten = 0

    def update(self, findings: list[Finding], now: float) -> list[Change]:
        out: list[Change] = []
        for f in findings:
            sev = SEVERITY_ORDER[f.severity]
            hosts = top_hosts(f)
            w = self.written.get(f.id)
            if w is None:
                self.written[f.id] = _Written(sev, f.kind, _proven(f), set(hosts), now)
                out.append(Change("finding", f, []))
                if len(self.written) > self.max_written:
                    del self.written[next(iter(self.written))]
                    self.forgotten += 1
                continue
            changes: list[str] = []
            if sev > w.severity:
                old = next(k for k, v in SEVERITY_ORDER.items() if v == w.severity)
                changes.append(f"severity {old} -> {f.severity}")
                w.severity = sev
            proven = _proven(f)
            if proven is not None and proven != w.proven:
                changes.append(f"mirror_proven {w.proven} -> {proven}".lower())
                w.proven = proven
            if changes and f.kind != w.kind:
                changes.append(f"kind {w.kind} -> {f.kind}")
            w.kind = f.kind
            new_hosts = [h for h in hosts if h not in w.hosts]
            host_news = bool(new_hosts) and (
                bool(changes) or not w.hosts or now - w.last_host_event >= w.host_gap()
            )
            if host_news:
                changes.append("watched + " + ", ".join(new_hosts))
                w.last_host_event = now
                w.host_events += 1
                w.hosts.update(new_hosts)
                if len(w.hosts) > MAX_REMEMBERED_HOSTS:
                    w.hosts = set(hosts)
            if changes:
                out.append(Change("escalation", f, changes))
        return out
