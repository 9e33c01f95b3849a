"""Canary streams: each format, written to a capture, is found by the normal detection and
named as a canary only with a valid marker on every packet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mwtest import PCAPS
from scapy.utils import rdpcap, wrpcap

from detector import canary
from detector.cli import main
from detector.report.eve import eve_event
from detector.scan import scan_paths


def _write(tmp_path: Path, fmt: str, *extra: str) -> Path:
    out = tmp_path / f"{fmt}.pcap"
    res = CliRunner().invoke(main, ["canary", "--format", fmt, "--write", str(out), *extra])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("fmt", canary.FORMATS)
def test_each_format_is_detected_and_named(tmp_path: Path, fmt: str) -> None:
    path = _write(tmp_path, fmt, "--count", "12")
    (f,) = scan_paths([str(path)]).report.findings
    assert (f.protocol, f.kind) == (fmt, canary.KINDS[fmt])
    assert f.severity == {"mirror": "high", "flow-export": "medium"}[f.kind]
    assert f.packets == 12
    assert f.evidence["canary"] is True and f.evidence["canary_packets"] == 12
    assert "canary" in f.reason_codes
    assert eve_event(f, sensor="s")["alert"]["metadata"]["canary"] == ["true"]
    # The copied conversation or the flow records name the documentation hosts.
    assert {w.ip for w in f.watched} >= {canary.INNER_A, canary.INNER_B}


def test_another_key_is_no_canary_but_still_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "vxlan")
    monkeypatch.setenv(canary.KEY_ENV, "the sensor's own key")
    (f,) = scan_paths([str(path)]).report.findings
    assert f.protocol == "vxlan" and f.severity == "high"
    assert "canary" not in f.evidence


def test_shared_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(canary.KEY_ENV, "k3y")
    path = _write(tmp_path, "tzsp")
    (f,) = scan_paths([str(path)]).report.findings
    assert f.evidence["canary"] is True


def test_marked_packets_in_a_real_stream_do_not_relabel_it(tmp_path: Path) -> None:
    # Canary TZSP packets sent along a real TZSP stream (same exporter, collector and port).
    real = rdpcap(str(PCAPS / "tzsp.pcap"))
    first = real[0]
    fake = canary.frames(canary.packets("tzsp", first["IP"].dst, 10, canary.canary_key(),
                                        src=first["IP"].src))  # fmt: skip
    for i, p in enumerate(fake):
        p.time = float(real[0].time) + 0.001 * i
    mixed = tmp_path / "mixed.pcap"
    wrpcap(str(mixed), sorted([*real, *fake], key=lambda p: float(p.time)))
    found = [f for f in scan_paths([str(mixed)]).report.findings if f.protocol == "tzsp"]
    assert found and all("canary" not in f.evidence for f in found)


def test_marker() -> None:
    key = b"k"
    m = canary.marker(key, 1768471200, 0xABCDEF01)
    assert len(m) == canary.MARKER_LEN and m.startswith(b"MWCANARY1 1768471200 abcdef01 ")
    assert canary.valid_marker(b"xx" + m + b"yy", key)
    assert not canary.valid_marker(m, b"other key")
    forged = m[:-1] + (b"0" if m[-1:] != b"0" else b"1")
    assert not canary.valid_marker(forged, key)
    assert not canary.valid_marker(m.replace(b"1768471200", b"1768471201"), key)


def test_usage() -> None:
    res = CliRunner().invoke(main, ["canary", "--format", "tzsp"])
    assert res.exit_code == 2 and "--to ADDRESS" in res.output
    res = CliRunner().invoke(main, ["canary", "--format", "nope", "--write", "x.pcap"])
    assert res.exit_code == 2


def test_eve_of_a_canary_validates(tmp_path: Path) -> None:
    path = _write(tmp_path, "sflow")
    res = CliRunner().invoke(main, ["scan", "-q", "--format", "eve", str(path)])
    line = json.loads(res.output)
    assert line["app_proto"] == "sflow" and line["alert"]["metadata"]["canary"] == ["true"]
