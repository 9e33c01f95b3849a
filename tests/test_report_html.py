"""HTML report: self-contained, every capture string escaped, and it renders in a real browser."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.findings import Endpoint, Finding, InputSummary, Report, WatchedHost
from detector.report import renderer
from detector.report.html import Timeline, render_html, stream_series
from detector.scan import scan_paths

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "</style><iframe src=//evil.example>",
]
# Everything the renderer itself may emit; a tag outside this set came from a capture.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "div", "table",
    "tr", "th", "td", "code", "span", "a", "section", "dl", "dt", "dd", "b", "ul", "li",
    "figure", "figcaption", "br", "p", "svg", "text", "rect", "line", "polygon", "polyline",
    "details", "summary",
}  # fmt: skip


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    p.close()
    return p


def _hostile_report() -> Report:
    evil = " ".join(HOSTILE)
    f = Finding(
        id="mw-<b>x</b>",
        kind="intercept",
        protocol=HOSTILE[0],
        severity="critical",
        confidence=0.9,
        exporter=Endpoint(ip=HOSTILE[1], port=1, mac=HOSTILE[2]),
        collector=Endpoint(ip="10.9.0.20", port=40123),
        transport="udp",
        first_seen="2026-01-15T10:00:00Z",
        last_seen="2026-01-15T10:00:09Z",
        packets=50,
        bytes=5000,
        session={"name": HOSTILE[1], HOSTILE[3]: 7},
        watched=[
            WatchedHost(ip=HOSTILE[2], packets=40, bytes=4000, share=0.8),
            WatchedHost(mac=HOSTILE[0], packets=10, bytes=1000, share=0.2),
        ],
        reasons=[evil, "plain reason"],
        evidence={"note": HOSTILE[3], "list": [HOSTILE[0]]},
    )
    return Report(
        version="0.1.0",
        inputs=[InputSummary(path=HOSTILE[3], packets=50, errors=[HOSTILE[0]])],
        stats={"packets": 500, "first_seen": "2026-01-15T10:00:00Z", "last_seen": HOSTILE[0]},
        findings=[f],
    )


def test_hostile_strings_are_escaped() -> None:
    page = render_html(_hostile_report())
    parsed = _parse(page)
    tags = {t for t, _ in parsed.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    for tag, attrs in parsed.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for k in ("src", "href"):
            assert attrs.get(k) is None or str(attrs[k]).startswith("#f-"), (tag, attrs)
    text = "".join(parsed.text)
    # The strings survive as text a reader can see (the SVG labels may shorten them).
    for s in HOSTILE:
        assert s in text
    assert "<script" not in page.lower() and "<iframe" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def _real_report() -> tuple[Report, dict]:
    names = ("pcli.pcap", "tzsp.pcap", "netflow-v5.pcap", "vxlan-overlay.pcap")
    result = scan_paths([str(PCAPS / n) for n in names])
    return result.report, result.evidence


def test_page_is_self_contained_with_charts() -> None:
    report, evidence = _real_report()
    page = render_html(report, evidence=evidence)
    low = page.lower()
    assert "<script" not in low and "http://" not in low.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in low and "@import" not in low and "url(" not in low
    assert "default-src 'none'" in page  # CSP: nothing may load, nothing may run
    parsed = _parse(page)
    sections = [a.get("id") for t, a in parsed.tags if t == "section"]
    assert len(sections) == len(report.findings)
    # Severity chart + watched-hosts chart + per finding a timeline (+ hosts where any).
    svgs = sum(1 for t, _ in parsed.tags if t == "svg")
    assert svgs >= 2 + len(report.findings)
    text = "".join(parsed.text)
    for f in report.findings:
        assert f.id in text and f.exporter.ip in text and f.collector.ip in text
        for r in f.reasons:
            assert r in text
    assert "100.64.20.174" in text  # the PCLI target in the watched-hosts chart
    assert renderer("html")(report).startswith("<!DOCTYPE html>")


def test_timeline_argument_is_drawn() -> None:
    report, evidence = _real_report()
    f = report.findings[0]
    tl = Timeline(start=1768471200.0, bin_seconds=1.0, link=[5, 50, 7], streams={f.id: [1, 40, 0]})
    page = render_html(report, timeline=tl, evidence=evidence)
    assert "whole link" in page and "as counted" in page
    assert "stroke-dasharray" not in page.split(f.id, 2)[-1].split("</section>")[0]


def test_stream_series_keeps_every_packet() -> None:
    report, evidence = _real_report()
    for f in report.findings:
        series = stream_series(f, evidence.get(f.id), 1768471200.0, 0.25, 60)
        assert sum(series) == pytest.approx(f.packets)
    f = report.findings[0]
    assert sum(stream_series(f, None, 1768471200.0, 0.25, 60)) == pytest.approx(f.packets)


def test_report_command_writes_page(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "-q", str(PCAPS / "jmirror.pcap"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "jmirror" in page and "10.9.0.20" in page
    scan = CliRunner().invoke(main, ["scan", "-q", "--format", "html", str(PCAPS / "tzsp.pcap")])
    assert scan.output.startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------ a real browser


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered RGB(A) rows of an 8-bit PNG (enough for a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack_from(">IIBB", body)
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    report, evidence = _real_report()
    # As many inputs as a week of hourly captures: the list must not push the summary away.
    many = [InputSummary(path=f"span-{i:02d}.pcap", packets=10, bytes=900) for i in range(70)]
    report = report.model_copy(update={"inputs": report.inputs + many})
    page = tmp_path / "report.html"
    page.write_text(render_html(report, evidence=evidence), encoding="utf-8")
    shot = tmp_path / "shot.png"
    cmd = [
        str(_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=900,700",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), proc.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (900, 700)
    # Not blank: many colours, and a real share of pixels differ from the page background.
    channels = len(rows[0]) // width
    pixels = [r[i : i + 3] for r in rows[::4] for i in range(0, len(r), channels * 4)]
    background = max(set(pixels), key=pixels.count)
    assert len(set(pixels)) > 20
    assert sum(p != background for p in pixels) > len(pixels) * 0.05
    # The severity tiles (critical's dark red) are on the first screen despite 74 inputs.
    critical = bytes.fromhex("8b0000")
    assert sum(p == critical for p in pixels) > 50


def test_many_inputs_fold_and_every_kind_has_endpoints() -> None:
    names = ("tee-copies.pcap", "targeted-mirror.pcap", "x2x3-keepalive.pcap", "erspan-3.pcap")
    result = scan_paths([str(PCAPS / n) for n in names])
    report = result.report.model_copy(
        update={
            "inputs": [
                InputSummary(path=f"day-{i:02d}.pcap", packets=100, bytes=10_000) for i in range(70)
            ]
            + [InputSummary(path="bad.pcap", errors=["truncated record"])]
        }
    )
    page = render_html(report, result.timeline, result.evidence)
    parsed = _parse(page)
    text = "".join(parsed.text)
    # 71 inputs: one summary line, the table folded inside <details>.
    assert "71 inputs, 7000 packets, 700.0 KB, 1 with problems" in text
    head, _, rest = page.partition("<details>")
    assert rest and "day-69.pcap" in rest.split("</details>")[0] and "day-00" not in head
    # Plain copies: MACs are the endpoints, in the title, the table and the details.
    assert "00:1b:54:0a:01:01 → 52:54:00:9c:00:0a" in text
    assert "tee-copy from 00:1b:54:0a:01:01 to 52:54:00:9c:00:0a" in text
    # No Python syntax: lists joined, booleans as words.
    for python in ("['", "=[", "True", "False", ": None", "=None", " None;", "{'"):
        assert python not in text, python
    assert "targets: 192.168.20.158" in text and "keepalive only: yes" in text


def test_each_stream_chart_has_its_own_time_and_scale() -> None:
    result = scan_paths([str(PCAPS / n) for n in ("x2x3-keepalive.pcap", "tzsp.pcap")])
    page = render_html(result.report, result.timeline, result.evidence)
    for f in result.report.findings:
        section = page.split(f'id="f-{f.id}"', 1)[1].split("</section>", 1)[0]
        svg = section.split("<svg", 2)[1]
        labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        # The x axis starts at the stream's own start (its clock time), not the capture's.
        assert f.first_seen[11:19] in labels or labels[2] <= f.first_seen[11:19], labels
        # Both scales labelled, short numbers that fit the margins.
        numbers = [x for x in labels if re.fullmatch(r"[0-9.]+[kM]?", x)]
        assert len(numbers) >= 4 and all(len(x) <= 5 for x in numbers), labels
    assert "e+0" not in page


@pytest.mark.parametrize(
    ("value", "text"), [(1710.0, "1.7k"), (25000.0, "25k"), (0.25, "0.25"), (142.0, "142")]
)
def test_axis_numbers(value: float, text: str) -> None:
    from detector.report.html import _number

    assert _number(value) == text
