"""One self-contained HTML page a router owner can read, forward and archive.

Inline CSS and inline SVG only: no scripts, no fonts, no external resources (a Content Security
Policy forbids them, so the page stays inert even if a string slipped through unescaped).  Every
string that came from a capture (reasons, session values, host names, paths) goes through
``_e``; nothing from a packet is ever placed in markup unescaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from detector.evidence import StreamEvidence
from detector.findings import Endpoint, Finding, Report, WatchedHost
from detector.report.safe import safe_text, utc_datetime
from detector.severity import SEVERITY_ORDER
from detector.timeline import Timeline

BINS = 60  # timeline resolution when the engine gives no per-interval counts
TOP_HOSTS = 12
# Past this many inputs the input table is folded away (a summary line stays).
MANY_INPUTS = 8
SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#8b0000",
    "high": "#d0342c",
    "medium": "#e08a00",
    "low": "#3b7dd8",
    "info": "#6b7280",
}
KIND_TITLES: dict[str, str] = {
    "mirror": "Traffic mirror",
    "intercept": "Lawful-intercept export",
    "flow-export": "Flow-metadata export",
    "tunnel": "Tunnel",
}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px}h3{font-size:16px;margin:0}
.meta{color:#57606a}.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;
margin:12px 0}.finding{border-left:6px solid var(--sev)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600;text-transform:uppercase;background:var(--sev)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;
border-bottom:1px solid #eaeef2;vertical-align:top}th{color:#57606a;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:10px 0}dt{color:#57606a}
dd{margin:0;overflow-wrap:anywhere}code{font:12px ui-monospace,Menlo,Consolas,monospace;
background:#f6f8fa;padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
ul.reasons{margin:6px 0 0 18px;padding:0}ul.reasons li{margin:2px 0;overflow-wrap:anywhere}
.charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:10px}.charts figure{margin:0}
figcaption{color:#57606a;font-size:12px}.errors{color:#8b0000}
details>summary{cursor:pointer;color:#57606a}
.summary{display:flex;gap:12px;flex-wrap:wrap}.count{min-width:110px;text-align:center;
border-radius:8px;padding:8px;color:#fff;background:var(--sev)}
.count b{display:block;font-size:24px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
"""


def _e(value: object) -> str:
    return html.escape(safe_text(value), quote=True)


def _anchor(fid: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "_", fid)


def _epoch(iso: str | int | float | None) -> float | None:
    if isinstance(iso, int | float):
        return float(iso)
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return utc_datetime(ts).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _endpoint(e: Endpoint, mac: bool = True) -> str:
    """Address and port, with the MAC in brackets; plain copies have only the MAC; with
    --geoip, the country and AS."""
    if e.ip is None:
        return e.label
    geo = f" · {e.geo.label}" if mac and e.geo is not None else ""
    return e.label + (f" ({e.mac})" if mac and e.mac else "") + geo


def _number(v: float) -> str:
    """A short axis number: 0.25, 7, 42, 1.7k, 2.3M (never 1.71e+03)."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 1e3:
        return f"{v / 1e3:.2g}k" if a < 9.95e3 else f"{v / 1e3:.0f}k"
    if a >= 10 or a == 0:
        return f"{v:.0f}"
    return f"{v:.2g}"


def _value(v: object) -> str:
    """An evidence value as a reader writes it: lists joined, yes/no, no Python syntax."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v) or "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _clock(ts: float) -> str:
    t = utc_datetime(ts)
    return t.strftime("%H:%M:%S") + (f".{int(t.microsecond / 1e5)}" if t.microsecond else "")


# ------------------------------------------------------------------ charts (inline SVG)


def severity_chart(counts: Mapping[str, int]) -> str:
    """Horizontal bars: findings per severity."""
    rows = [s for s in sorted(SEVERITY_ORDER, key=lambda s: -SEVERITY_ORDER[s])]
    width, bar_h, left = 420, 20, 80
    top = max(1, *counts.values()) if counts else 1
    h = len(rows) * (bar_h + 6) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
        f'aria-label="Findings by severity">'
    ]
    for i, sev in enumerate(rows):
        n = counts.get(sev, 0)
        y = 2 + i * (bar_h + 6)
        w = (width - left - 40) * n / top
        parts.append(f'<text x="0" y="{y + 14}">{_e(sev)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{SEVERITY_COLOURS[sev]}"/>'
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 14}">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hosts_chart(hosts: Sequence[tuple[str, float, str]], label: str) -> str:
    """Horizontal bars for (name, value in 0..1, caption) rows."""
    if not hosts:
        return ""
    width, bar_h, left, right = 560, 16, 190, 150
    h = len(hosts) * (bar_h + 5) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
        f'aria-label="{_e(label)}">'
    ]
    for i, (name, value, caption) in enumerate(hosts):
        y = 2 + i * (bar_h + 5)
        w = (width - left - right) * max(0.0, min(1.0, value))
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text x="0" y="{y + 12}">{_e(short)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="#3b7dd8"/>'
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 12}">{_e(caption)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class _Plot:
    """Geometry of a timeline chart: ``n`` bins across, packets per bin shown per second."""

    n: int
    rate: float
    # Pixels: the whole chart, then the margins around the plot.
    width, height, left, right, bottom, top_pad = 540, 160, 46, 46, 34, 8

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def base(self) -> int:
        return self.height - self.bottom

    @property
    def end(self) -> int:
        return self.left + self.plot_w

    def xy(self, i: int, v: float, top: float) -> str:
        x = self.left + self.plot_w * i / self.n
        y = self.top_pad + (self.base - self.top_pad) * (1 - (v * self.rate) / top)
        return f"{x:.1f},{y:.1f}"

    def steps(self, values: Sequence[float], top: float) -> list[str]:
        pts = []
        for i, v in enumerate(values):
            pts += [self.xy(i, v, top), self.xy(i + 1, v, top)]
        return pts


def timeline_chart(
    stream: Sequence[float],
    link: Sequence[float],
    bin_seconds: float,
    link_estimated: bool,
    label: str,
    start: float | None = None,
) -> str:
    """Packet rate of the stream (filled, left axis) against the whole link (line, right
    axis), each on its own scale, over the stream's own time window."""
    p = _Plot(max(len(stream), len(link), 1), 1.0 / bin_seconds if bin_seconds > 0 else 1.0)
    peak = max([*(v * p.rate for v in stream), 1e-9])
    link_peak = max([*(v * p.rate for v in link), 1e-9])
    parts = _timeline_axes(p, label, peak, bin_seconds, start)
    if link:
        parts += [
            f'<line x1="{p.end}" y1="{p.top_pad}" x2="{p.end}" y2="{p.base}" stroke="#1f2328"/>',
            f'<text x="{p.end + 4}" y="{p.top_pad + 9}">{_number(link_peak)}</text>',
            f'<text x="{p.end + 4}" y="{p.base}">0</text>',
            f'<text x="{p.end}" y="{p.height - 3}" text-anchor="end">link packets/s</text>',
        ]
    if stream:
        area = [
            f"{p.left},{p.base}",
            *p.steps(stream, peak),
            f"{p.left + p.plot_w * len(stream) / p.n:.1f},{p.base}",
        ]
        parts.append(
            f'<polygon points="{" ".join(area)}" fill="#d0342c" fill-opacity="0.45" '
            f'stroke="#d0342c"/>'
        )
    if link:
        dash = ' stroke-dasharray="5,4"' if link_estimated else ""
        parts.append(
            f'<polyline points="{" ".join(p.steps(link, link_peak))}" fill="none" '
            f'stroke="#1f2328"{dash} stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_axes(
    p: _Plot, label: str, peak: float, bin_seconds: float, start: float | None
) -> list[str]:
    """The chart's frame: the stream's axis on the left, the time axis below."""
    left, base, end, top_pad = p.left, p.base, p.end, p.top_pad
    span = p.n * bin_seconds
    if start is not None:
        t0, t1 = _clock(start), _clock(start + span)
    else:
        t0, t1 = "0 s", _duration(span)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{p.width}" height="{p.height}" '
        f'role="img" aria-label="{_e(label)}">',
        f'<line x1="{left}" y1="{base}" x2="{end}" y2="{base}" stroke="#8c959f"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{base}" stroke="#d0342c"/>',
        f'<text x="{left - 4}" y="{top_pad + 9}" text-anchor="end">{_number(peak)}</text>',
        f'<text x="{left - 4}" y="{base}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{base + 14}">{_e(t0)}</text>',
        f'<text x="{end}" y="{base + 14}" text-anchor="end">{_e(t1)}</text>',
        f'<text x="{left + p.plot_w / 2:.0f}" y="{base + 14}" text-anchor="middle">UTC · '
        f"{_e(_duration(span))}</text>",
        f'<text x="{left}" y="{p.height - 3}">stream packets/s</text>',
    ]


def stream_window(f: Finding, bins: int = BINS) -> tuple[float, float, int]:
    """(start, bin seconds, bins) of a chart of this stream alone: its own time, a margin each
    side so its start and end show."""
    first = _epoch(f.first_seen) or 0.0
    last = _epoch(f.last_seen) or first
    span = max(last - first, 1.0)
    lo = first - 0.05 * span
    return lo, span * 1.1 / bins, bins


def _stream_chart_series(
    f: Finding,
    ev: StreamEvidence | None,
    timeline: Timeline | None,
    link_rate: float,
) -> tuple[list[float], list[float], float, float, bool, str]:
    """(stream, link, bin seconds, start, link estimated, note) over the stream's window."""
    lo, width, bins = stream_window(f)
    if timeline is not None and timeline.link and f.id in timeline.streams:
        bw = timeline.bin_seconds
        i0 = max(0, int((lo - timeline.start) // bw))
        i1 = min(len(timeline.link), int(-(-(lo + width * bins - timeline.start) // bw)))
        i1 = max(i1, i0 + 1)
        row = timeline.streams[f.id]
        stream = [float(x) for x in row[i0:i1]]
        link = [float(x) for x in timeline.link[i0:i1]]
        return stream, link, bw, timeline.start + i0 * bw, False, "packets per interval as counted"
    stream = stream_series(f, ev, lo, width, bins)
    return (
        stream,
        [link_rate * width] * bins,
        width,
        lo,
        True,
        "rate from its first packets, the rest spread evenly",
    )


def stream_series(
    f: Finding,
    ev: StreamEvidence | None,
    start: float,
    bin_seconds: float,
    bins: int,
) -> list[float]:
    """Estimated packets per bin: kept samples where they are, the rest spread evenly."""
    counts = [0.0] * bins

    def put(ts: float, n: float) -> None:
        i = int((ts - start) / bin_seconds) if bin_seconds > 0 else 0
        counts[max(0, min(bins - 1, i))] += n

    first = _epoch(f.first_seen) or start
    last = _epoch(f.last_seen) or first
    samples = [ts for ts, _, _ in ev.outer_samples] if ev is not None else []
    for ts in samples:
        put(ts, 1.0)
    rest = max(0, f.packets - len(samples))
    if rest:
        lo = max(samples) if samples else first
        span = max(0.0, last - lo)
        steps = max(1, min(bins, int(span / bin_seconds) + 1 if bin_seconds > 0 else 1))
        for k in range(steps):
            put(lo + span * (k + 0.5) / steps, rest / steps)
    return counts


# ------------------------------------------------------------------ page


def _watched_rows(watched: Sequence[WatchedHost]) -> list[tuple[str, float, str]]:
    return [
        (w.ip or w.mac or "?", w.share, f"{w.share:.0%} · {w.packets} pkts")
        for w in watched[:TOP_HOSTS]
    ]


def _all_watched(findings: Sequence[Finding]) -> list[tuple[str, float, str]]:
    """Hosts whose traffic is carried or recorded, over all non-tunnel findings."""
    totals: dict[str, list[float]] = {}
    for f in findings:
        if f.kind == "tunnel":
            continue
        for w in f.watched:
            t = totals.setdefault(w.ip or w.mac or "?", [0.0, 0.0])
            t[0] += w.packets
            t[1] += 1
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[:TOP_HOSTS]
    peak = max((v[0] for _, v in top), default=1.0) or 1.0
    return [(name, v[0] / peak, f"{v[0]:.0f} pkts in {v[1]:.0f} stream(s)") for name, v in top]


def _finding_html(
    f: Finding,
    ev: StreamEvidence | None,
    link_rate: float,
    timeline: Timeline | None,
) -> str:
    first, last = _epoch(f.first_seen), _epoch(f.last_seen)
    span = (last - first) if first is not None and last is not None else 0.0
    colour = SEVERITY_COLOURS.get(f.severity, "#6b7280")
    rows = [
        ("Exporter", _endpoint(f.exporter)),
        ("Collector", _endpoint(f.collector)),
        ("Protocol", f"{f.protocol} over {f.transport}"),
        ("Volume", f"{f.packets} packets, {_size(f.bytes)}"),
        ("Time span", f"{f.first_seen} .. {f.last_seen} ({_duration(span)})"),
        ("Confidence", f"{f.confidence:.2f}" + (" (allow-listed)" if f.allow_listed else "")),
    ]
    if f.session:
        rows.append(("Session", ", ".join(f"{k}={v}" for k, v in f.session.items())))
    if f.evidence:
        rows.append(
            (
                "Evidence",
                " · ".join(f"{k.replace('_', ' ')}: {_value(v)}" for k, v in f.evidence.items()),
            )
        )
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    reasons = "".join(f"<li>{_e(r)}</li>" for r in f.reasons)
    series, link_series, bin_seconds, start, estimated, note = _stream_chart_series(
        f, ev, timeline, link_rate
    )
    link_note = "link average (no per-interval count)" if estimated else "whole link"
    chart = timeline_chart(
        series, link_series, bin_seconds, estimated, f"Packet rate of {f.id}", start
    )
    charts = [
        f"<figure>{chart}<figcaption>Filled, left scale: this stream ({_e(note)}); line, right "
        f"scale: {_e(link_note)}. The stream's own time, {_e(_iso(start))} UTC on.</figcaption>"
        "</figure>"
    ]
    if f.watched:
        charts.append(
            "<figure>"
            + hosts_chart(_watched_rows(f.watched), f"Watched hosts of {f.id}")
            + "<figcaption>Hosts inside the stream, by share of its carried packets"
            + (f" (top {TOP_HOSTS} of {len(f.watched)})" if len(f.watched) > TOP_HOSTS else "")
            + ".</figcaption></figure>"
        )
    title = (
        f"{KIND_TITLES.get(f.kind, f.kind)}: {f.protocol} from "
        f"{_endpoint(f.exporter, mac=False)} to {_endpoint(f.collector, mac=False)}"
    )
    return (
        f'<section class="card finding" id="{_anchor(f.id)}" style="--sev:{colour}">'
        f'<h3><span class="badge">{_e(f.severity)}</span> {_e(title)}</h3>'
        f'<div class="meta"><code>{_e(f.id)}</code></div>'
        f"<dl>{dl}</dl>"
        + (f'<b>Why</b><ul class="reasons">{reasons}</ul>' if reasons else "")
        + f'<div class="charts">{"".join(charts)}</div></section>'
    )


def _inputs_html(report: Report) -> str:
    rows = "".join(
        f"<tr><td><code>{_e(i.path)}</code></td><td class=n>{i.packets}</td>"
        f"<td class=n>{_e(_size(i.bytes))}</td>"
        f'<td class="errors">{"<br>".join(_e(x) for x in i.errors)}</td></tr>'
        for i in report.inputs
    )
    table = (
        "<table><tr><th>Input</th><th class=n>Packets</th><th class=n>Bytes</th>"
        f"<th>Problems</th></tr>{rows}</table>"
    )
    if len(report.inputs) <= MANY_INPUTS:
        return f'<div class="card">{table}</div>'
    bad = sum(1 for i in report.inputs if i.errors)
    packets = sum(i.packets for i in report.inputs)
    size = sum(i.bytes for i in report.inputs)
    problems = f", {bad} with problems" if bad else ""
    summary = f"{len(report.inputs)} inputs, {packets} packets, {_size(size)}{problems}"
    return (
        f'<div class="card"><details><summary>{_e(summary)} (show the list)</summary>{table}'
        "</details></div>"
    )


def _window(report: Report, timeline: Timeline | None) -> tuple[float, float, int]:
    if timeline is not None and timeline.link:
        return timeline.start, timeline.bin_seconds, len(timeline.link)
    starts = [_epoch(f.first_seen) for f in report.findings]
    ends = [_epoch(f.last_seen) for f in report.findings]
    lo = _epoch(report.stats.get("first_seen"))
    hi = _epoch(report.stats.get("last_seen"))
    lo = min([t for t in [lo, *starts] if t is not None], default=0.0)
    hi = max([t for t in [hi, *ends] if t is not None], default=lo)
    span = max(hi - lo, 1e-3)
    return lo, span / BINS, BINS


def render_html(
    report: Report,
    timeline: Timeline | None = None,
    evidence: Mapping[str, StreamEvidence] | None = None,
) -> str:
    """The report as one HTML page; ``timeline`` and ``evidence`` sharpen the rate charts."""
    evidence = evidence or {}
    start, bin_seconds, bins = _window(report, timeline)
    total = float(report.stats.get("packets", 0) or 0)
    link_rate = total / max(bin_seconds * bins, 1e-3)
    ordered = sorted(report.findings, key=lambda f: (-SEVERITY_ORDER[f.severity], f.first_seen))
    out = [*_page_head(report), _inputs_html(report), "<h2>Summary</h2>"]
    if not report.findings:
        out.append(
            '<div class="card">No mirror, intercept, flow-export or tunnel streams found.</div>'
        )
    else:
        out.extend(_summary_html(report, ordered))
        out.append("<h2>Findings</h2>")
        out.extend(_finding_html(f, evidence.get(f.id), link_rate, timeline) for f in ordered)
    out.append(
        f'<p class="meta">Generated by mirrorwatch {_e(report.version)} '
        f"(schema {_e(report.schema_)}); capture from {_e(_iso(start))} UTC, "
        f"{_e(_duration(bin_seconds * bins))}; each stream's chart shows its own time.</p>"
    )
    out.append("</main></body></html>\n")
    return "\n".join(out)


def _page_head(report: Report) -> list[str]:
    st = report.stats
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mirrorwatch report: {len(report.findings)} finding(s)</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>mirrorwatch report</h1>",
        f'<div class="meta">mirrorwatch {_e(report.version)} · {_e(st.get("packets", 0))} packets'
        f" · {_e(st.get('flows', 0))} flows · {_e(st.get('hosts', 0))} hosts · "
        f"{_e(st.get('first_seen', '?'))} .. {_e(st.get('last_seen', '?'))}</div>",
    ]


def _summary_html(report: Report, ordered: Sequence[Finding]) -> list[str]:
    """Counts by severity, one table row per finding, and the summary charts."""
    counts = {s: 0 for s in SEVERITY_ORDER}
    for f in report.findings:
        counts[f.severity] += 1
    tiles = "".join(
        f'<div class="count" style="--sev:{SEVERITY_COLOURS[s]}"><b>{counts[s]}</b>{_e(s)}</div>'
        for s in sorted(SEVERITY_ORDER, key=lambda s: -SEVERITY_ORDER[s])
    )
    table = "".join(
        f'<tr><td><span class="badge" style="--sev:{SEVERITY_COLOURS[f.severity]}">'
        f'{_e(f.severity)}</span></td><td><a href="#{_anchor(f.id)}">{_e(f.protocol)}</a>'
        f"</td><td>{_e(f.kind)}</td>"
        f"<td>{_e(_endpoint(f.exporter, mac=False))} → "
        f"{_e(_endpoint(f.collector, mac=False))}</td>"
        f"<td class=n>{f.packets}</td><td class=n>{_e(_size(f.bytes))}</td>"
        f"<td class=n>{len(f.watched)}</td></tr>"
        for f in ordered
    )
    out = [
        f'<div class="summary">{tiles}</div>',
        '<div class="card"><table><tr><th>Severity</th><th>Protocol</th><th>Kind</th>'
        "<th>Exporter → collector</th><th class=n>Packets</th><th class=n>Bytes</th>"
        f"<th class=n>Hosts</th></tr>{table}</table>"
        f'<div class="charts"><figure>{severity_chart(counts)}'
        "<figcaption>Findings by severity.</figcaption></figure>",
    ]
    watched = _all_watched(report.findings)
    if watched:
        out.append(
            f"<figure>{hosts_chart(watched, 'Watched hosts')}<figcaption>Watched hosts: "
            "packets of theirs carried or recorded, over all exports.</figcaption></figure>"
        )
    out.append("</div></div>")
    return out
