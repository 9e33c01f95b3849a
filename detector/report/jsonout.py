"""JSON report (one object) and JSON Lines (one finding per line)."""

from __future__ import annotations

from detector.findings import Report
from detector.report.safe import json_line_safe


def render_json(report: Report) -> str:
    return json_line_safe(report.model_dump_json(by_alias=True, indent=2)) + "\n"


def render_jsonl(report: Report) -> str:
    return "".join(json_line_safe(f.model_dump_json()) + "\n" for f in report.findings)
