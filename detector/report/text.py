"""Readable report: findings grouped by severity, each with its reasons."""

from __future__ import annotations

import click

from detector.findings import Finding, Report
from detector.report.safe import safe_lines, safe_text
from detector.severity import SEVERITY_ORDER

TITLES = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "medium": "MEDIUM",
    "low": "LOW",
    "info": "INFO",
}


def _endpoint(f: Finding, which: str) -> str:
    e = f.exporter if which == "exporter" else f.collector
    if e.ip is None:
        return e.label  # plain copies: the MAC is the endpoint
    return e.label + (f" ({e.mac})" if e.mac else "")


def format_finding(f: Finding) -> str:
    lines = [
        f"  {f.protocol} {f.kind}  {_endpoint(f, 'exporter')} -> {_endpoint(f, 'collector')}"
        f"  [{f.id}]",
        f"    {f.packets} packets, {f.bytes} bytes, {f.first_seen} .. {f.last_seen}, "
        f"confidence {f.confidence:.2f}" + ("  (allow-listed)" if f.allow_listed else ""),
    ]
    if f.session:
        lines.append("    session: " + ", ".join(f"{k}={v}" for k, v in f.session.items()))
    if f.watched:
        top = ", ".join(
            f"{w.ip or w.mac} {w.share:.0%}" if w.share else f"{w.ip or w.mac}"
            for w in f.watched[:6]
        )
        more = f" (+{len(f.watched) - 6} more)" if len(f.watched) > 6 else ""
        lines.append(f"    watched: {top}{more}")
    lines.extend(f"    - {r}" for r in f.reasons)
    return safe_lines("\n".join(lines))


COLOURS = {"critical": "magenta", "high": "red", "medium": "yellow", "low": "cyan", "info": "white"}


def render_text(report: Report, color: bool = False) -> str:
    """The readable report; ``color`` adds ANSI colours to the severity headings (terminals)."""
    out: list[str] = []
    st = report.stats
    out.append(
        f"mirrorwatch {report.version}: {st.get('packets', 0)} packets, "
        f"{st.get('flows', 0)} flows, {st.get('hosts', 0)} hosts in {len(report.inputs)} input(s)"
    )
    for inp in report.inputs:
        for e in inp.errors:
            out.append(safe_text(f"  ! {inp.path}: {e}"))
    if not report.findings:
        out.append("No mirror, intercept, flow-export or tunnel streams found.")
        return "\n".join(out) + "\n"
    counts = {s: 0 for s in SEVERITY_ORDER}
    for f in report.findings:
        counts[f.severity] += 1
    out.append(
        "Findings: "
        + ", ".join(
            f"{n} {s}"
            for s, n in sorted(counts.items(), key=lambda kv: -SEVERITY_ORDER[kv[0]])
            if n
        )
    )
    for sev in sorted(SEVERITY_ORDER, key=lambda s: -SEVERITY_ORDER[s]):
        group = [f for f in report.findings if f.severity == sev]
        if not group:
            continue
        out.append("")
        title = f"{TITLES[sev]} ({len(group)})"
        out.append(click.style(title, fg=COLOURS[sev], bold=True) if color else title)
        out.extend(format_finding(f) for f in group)
    return "\n".join(out) + "\n"
