"""Strings from packets never reach a terminal raw, nor split a JSON line.

The rpcap sample's device name ("eth1", four bytes) is replaced by four hostile bytes: an ANSI
"clear screen" or a Unicode line separator; the name is shown in every report format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from mwtest import PCAPS

from detector.live.output import EventWriter
from detector.live.tracker import Change
from detector.report import RENDERERS, renderer
from detector.report.html import render_html
from detector.report.safe import json_line_safe, safe_lines, safe_text
from detector.scan import ScanResult, scan_paths

CLEAR_SCREEN = b"\x1b[2J"
LINE_SEPARATOR = "\u2028x".encode()


def rpcap_with_device(tmp_path: Path, device: bytes) -> ScanResult:
    data = (PCAPS / "rpcap.pcap").read_bytes()
    assert data.count(b"eth1") == 1 and len(device) == 4
    path = tmp_path / "rpcap.pcap"
    path.write_bytes(data.replace(b"eth1", device))
    return scan_paths([str(path)])


def test_escape_sequences_from_a_packet_are_shown_escaped(tmp_path: Path) -> None:
    result = rpcap_with_device(tmp_path, CLEAR_SCREEN)
    for fmt in RENDERERS:
        if fmt == "html":
            out = render_html(result.report, result.timeline, result.evidence)
        else:
            out = renderer(fmt)(result.report)
        assert "\x1b" not in out, fmt
    text = renderer("text")(result.report)
    assert "device \\x1b[2J" in text


def test_line_separators_are_escaped_in_json_formats(tmp_path: Path) -> None:
    result = rpcap_with_device(tmp_path, LINE_SEPARATOR)
    for fmt in ("json", "jsonl", "eve"):
        out = renderer(fmt)(result.report)
        assert "\u2028" not in out, fmt
        assert "\\u2028" in out, fmt
        lines = [out] if fmt == "json" else out.splitlines()
        assert all(json.loads(line) for line in lines)
    assert "\u2028" not in renderer("text")(result.report)


@pytest.mark.parametrize("fmt", ["text", "jsonl", "eve"])
def test_watch_output_is_safe(tmp_path: Path, fmt: str) -> None:
    result = rpcap_with_device(tmp_path, CLEAR_SCREEN)
    finding = next(f for f in result.report.findings if any("\x1b" in r for r in f.reasons))
    finding.reasons.append("odd\u2028reason")
    out = io.StringIO()
    writer = EventWriter(out, fmt)
    writer.change(Change("finding", finding, []))
    writer.change(Change("escalation", finding, ["watched host \x1b]0;owned\x07 added"]))
    written = out.getvalue()
    assert "\x1b" not in written and "\x07" not in written and "\u2028" not in written
    if fmt != "text":
        assert all(json.loads(line) for line in written.splitlines())


def test_sanitisers() -> None:
    assert safe_text("a\x1b[31mb\x00\x7f\x9b\u202e\n") == "a\\x1b[31mb\\x00\\x7f\\x9b\\u202e\\x0a"
    assert safe_text("München 10.0.0.1 ✓") == "München 10.0.0.1 ✓"
    assert safe_lines("one\x1b\ntwo") == "one\\x1b\ntwo"
    assert json_line_safe('{"a":"x\u2029"}') == '{"a":"x\\u2029"}'
