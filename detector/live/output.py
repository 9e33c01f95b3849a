"""Events of a live watch, written one line (JSONL, EVE) or one block (text) at a time, flushed
each.

JSONL lines are complete objects with an ``event`` field (``finding``, ``escalation``,
``summary``, ``capture``) and the wall-clock ``time`` the line was written, so a log shipper can
tail the file and never see half a record.  EVE lines are Suricata's: findings as ``alert``,
summaries as ``stats``, capture notices as ``engine``.

Given a path, the writer owns the file and ``reopen`` swaps it between two lines (after a
logrotate rename, on SIGHUP): every line lands whole in the old file or in the new one.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from detector.evidence import StreamEvidence
from detector.findings import Finding
from detector.live.source import Notice
from detector.live.tracker import Change
from detector.report.safe import json_line_safe, safe_lines
from detector.report.text import TITLES, format_finding
from detector.severity import SEVERITY_ORDER

FORMATS = ("text", "jsonl", "eve")


def iso_now(now: float | None = None) -> str:
    ts = time.time() if now is None else now
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_output(path: str) -> TextIO:
    """The output file, appended to (restarts never truncate it)."""
    return open(path, "a", encoding="utf-8")


class EventWriter:
    def __init__(
        self,
        out: TextIO,
        fmt: str,
        path: str | None = None,
        sensor: str | None = None,
        interface: str | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"live output format must be one of {FORMATS}, not {fmt}")
        self.out = out
        self.fmt = fmt
        self.path = path
        self.sensor = sensor
        self.interface = interface
        self.lines = 0
        self.reopened = 0
        self.eve_info = False  # EVE: info findings (tunnels) too

    def _write(self, text: str) -> None:
        # Packets write part of every line: no control character reaches a terminal raw, no
        # line separator splits a JSON line.
        self.out.write(safe_lines(text) if self.fmt == "text" else json_line_safe(text))
        self.out.flush()
        self.lines += 1

    def reopen(self) -> None:
        """Open the output path afresh (it was renamed away); the old file keeps every line
        written before.  A path that cannot be opened keeps the old file, with a warning."""
        if self.path is None:
            return
        try:
            new = open_output(self.path)
        except OSError as exc:
            print(f"mirrorwatch watch: cannot reopen {self.path}: {exc.strerror}; "
                  "still writing to the file open before", file=sys.stderr)  # fmt: skip
            return
        old, self.out = self.out, new
        old.close()
        self.reopened += 1

    def close(self) -> None:
        if self.path is not None:
            self.out.close()

    def _eve(self, event_type: str, now: float | None, **fields: Any) -> None:
        obj: dict[str, Any] = {"timestamp": eve_now(now), "event_type": event_type}
        if self.sensor:
            obj["host"] = self.sensor
        obj.update(fields)
        self._write(json.dumps(obj, separators=(",", ":")) + "\n")

    def change(self, c: Change, now: float | None = None, ev: StreamEvidence | None = None) -> None:
        when = iso_now(now)
        if self.fmt == "eve":
            self._eve_alert(c.finding, ev)
            return
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

    def _eve_alert(self, f: Finding, ev: StreamEvidence | None) -> None:
        from detector.report.eve import eve_line, in_eve

        if in_eve(f, self.eve_info):  # info streams (ordinary tunnels) are no alerts by default
            self._write(eve_line(f, sensor=self.sensor, in_iface=self.interface, ev=ev))

    def notice(self, n: Notice, now: float | None = None) -> None:
        """A capture's state changed (interface down, up, gone)."""
        if self.fmt == "eve":
            level = "Error" if n.state == "gone" else ("Warning" if n.state == "down" else "Info")
            self._eve("engine", now, log_level=level,
                      engine={"module": "capture", "message": n.message})  # fmt: skip
        elif self.fmt == "jsonl":
            obj = {"event": "capture", "time": iso_now(now), "interface": n.interface,
                   "state": n.state, "message": n.message}  # fmt: skip
            self._write(json.dumps(obj, separators=(",", ":")) + "\n")
        else:
            self._write(f"{iso_now(now)} CAPTURE {n.state.upper()}: {n.message}\n")

    def summary(self, data: dict[str, Any], now: float | None = None) -> None:
        when = iso_now(now)
        if self.fmt == "eve":
            self._eve("stats", now, stats=eve_stats(data))
            return
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


def eve_now(now: float | None = None) -> str:
    """Suricata's timestamp form: 2025-01-15T10:00:00.000000+0000."""
    ts = time.time() if now is None else now
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def eve_stats(data: dict[str, Any]) -> dict[str, Any]:
    """A summary in the shape of Suricata's stats event (the counters that have a place there)."""
    st = data["stats"]
    caps = data.get("captures", [])
    return {
        "uptime": int(st["uptime_seconds"]),
        "capture": {
            "kernel_packets": sum(int(c.get("received_by_filter", 0)) for c in caps),
            "kernel_drops": int(data["drops"]["kernel"]),
            "kernel_ifdrops": int(data["drops"]["interface"]),
            "errors": len(data.get("failures", [])),
        },
        "decoder": {"pkts": int(st["packets"]), "bytes": int(st["bytes"])},
        "flow": {"active": int(st["active_flows"]), "total": int(st["flows"])},
    }


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
