"""Events of a live watch, written one line (JSONL) or one block (text) at a time, flushed each.

JSONL lines are complete objects with an ``event`` field (``finding``, ``escalation``,
``summary``) and the wall-clock ``time`` the line was written, so a log shipper can tail the file
and never see half a record.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from detector.findings import SEVERITY_ORDER, Finding
from detector.live.tracker import Change
from detector.report.text import TITLES, format_finding


def iso_now(now: float | None = None) -> str:
    ts = time.time() if now is None else now
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventWriter:
    def __init__(self, out: TextIO, fmt: str) -> None:
        if fmt not in ("jsonl", "text"):
            raise ValueError(f"live output format must be jsonl or text, not {fmt}")
        self.out = out
        self.fmt = fmt
        self.lines = 0

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.lines += 1

    def change(self, c: Change, now: float | None = None) -> None:
        when = iso_now(now)
        if self.fmt == "jsonl":
            obj: dict[str, Any] = {"event": c.event, "time": when}
            if c.changes:
                obj["changes"] = c.changes
            obj["finding"] = c.finding.model_dump(mode="json")
            self._write(json.dumps(obj, separators=(",", ":")) + "\n")
            return
        f = c.finding
        label = "NEW" if c.event == "finding" else "ESCALATED"
        head = f"{when} {label} {TITLES[f.severity]}"
        if c.event == "finding":
            self._write(f"{head}\n{format_finding(f)}\n")
        else:
            self._write(
                f"{head} {f.protocol} {f.kind} {f.exporter.label} -> {f.collector.label}"
                f"  [{f.id}]\n"
                f"    {'; '.join(c.changes)}\n"
            )

    def summary(self, data: dict[str, Any], now: float | None = None) -> None:
        when = iso_now(now)
        if self.fmt == "jsonl":
            obj = {"event": "summary", "time": when, **data}
            self._write(json.dumps(obj, separators=(",", ":")) + "\n")
            return
        st = data["stats"]
        sev = data.get("findings_by_severity", {})
        worst_first = sorted(sev.items(), key=lambda kv: -SEVERITY_ORDER[kv[0]])
        found = ", ".join(f"{n} {s}" for s, n in worst_first) or "none"
        caps = "; ".join(
            f"{c['interface']}: read {c['read_packets']}"
            + (f", kernel drops {c['dropped_by_kernel']}" if "dropped_by_kernel" in c else "")
            for c in data.get("captures", [])
        )
        label = "FINAL SUMMARY" if data.get("final") else "summary"
        self._write(
            f"{when} {label}: {st['packets']} packets ({st['packets_per_second']:.0f}/s), "
            f"{st['flows']} flows, {st['hosts']} hosts, {st['streams']} streams; "
            f"findings: {found}; {caps}\n"
        )


def finding_brief(f: Finding) -> dict[str, Any]:
    """The few fields a summary lists per finding."""
    return {
        "id": f.id,
        "protocol": f.protocol,
        "kind": f.kind,
        "severity": f.severity,
        "exporter": f.exporter.ip,
        "collector": f.collector.ip,
        "packets": f.packets,
    }
