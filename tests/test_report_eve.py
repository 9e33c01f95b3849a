"""EVE output: Suricata-shaped alert lines, one per finding, with the fields docs/eve.md lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from detector.findings import Endpoint, Finding, Report
from detector.report import renderer
from detector.report.eve import PROTOCOL_SID, render_eve, signature_id
from detector.scan import scan_paths

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
DOC = (ROOT / "docs" / "eve.md").read_text()


def _finding(**kw: object) -> Finding:
    base: dict[str, object] = dict(
        id="mw-0123456789abcdef",
        kind="mirror",
        protocol="erspan-2",
        severity="medium",
        confidence=0.9,
        exporter=Endpoint(ip="10.1.0.1"),
        collector=Endpoint(ip="10.9.0.10"),
        transport="gre",
        first_seen="2026-01-15T10:00:00Z",
        last_seen="2026-01-15T10:00:05.5Z",
        packets=10,
        bytes=1000,
    )
    base.update(kw)
    return Finding.model_validate(base)


def _report(*findings: Finding) -> Report:
    return Report(schema="mirrorwatch/1", version="t", inputs=[], stats={}, findings=list(findings))


def _documented(section: str) -> set[str]:
    """Backticked names in the first column of the tables of a docs section."""
    body = DOC.split(section, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", body, re.M))


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    result = scan_paths([str(PCAPS / n) for n in ("pcli.pcap", "tzsp.pcap", "erspan-3.pcap")])
    text = render_eve(result.report)
    assert text.endswith("\n")
    out = [json.loads(line) for line in text.splitlines()]
    assert len(out) == len(result.report.findings) == 3
    return out


def test_lines_carry_documented_fields(lines: list[dict]) -> None:
    top, alert = _documented("## Fields"), _documented("### `alert`")
    assert {"timestamp", "event_type", "src_ip", "dest_ip", "proto", "alert"} <= top
    for ev in lines:
        assert set(ev) <= top
        assert top - {"src_port", "dest_port"} <= set(ev)
        assert set(ev["alert"]) == alert
        assert ev["event_type"] == "alert"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000", ev["timestamp"])
        a = ev["alert"]
        assert (a["action"], a["gid"], a["rev"]) == ("allowed", 1, 1)
        assert a["severity"] in (1, 2, 3)
        assert ev["mirrorwatch"]["id"].startswith("mw-")
        assert ev["flow_id"] > 0


def test_values_follow_the_finding(lines: list[dict]) -> None:
    by_proto = {ev["app_proto"]: ev for ev in lines}
    pcli = by_proto["pcli"]
    assert (pcli["src_ip"], pcli["dest_ip"], pcli["dest_port"]) == ("10.1.0.9", "10.9.0.20", 40123)
    assert pcli["proto"] == "UDP"
    assert pcli["alert"]["signature_id"] == 9_200_000 + PROTOCOL_SID["pcli"]
    assert pcli["alert"]["category"] == "Lawful Intercept Export"
    assert pcli["mirrorwatch"]["session"] == {"cccid": 316065}
    assert pcli["alert"]["severity"] == 1  # critical
    gre = by_proto["erspan-3"]
    assert gre["proto"] == "GRE" and "src_port" not in gre and "dest_port" not in gre
    assert gre["src_ip"] == "2001:db8:1::1"


@pytest.mark.parametrize(
    ("severity", "eve"),
    [("critical", 1), ("high", 1), ("medium", 2), ("low", 3), ("info", 3)],
)
def test_severity_mapping(severity: str, eve: int) -> None:
    ev = json.loads(render_eve(_report(_finding(severity=severity))))
    assert ev["alert"]["severity"] == eve


def test_signature_ids_are_stable_per_protocol() -> None:
    assert signature_id("mirror", "vxlan") == 9_100_006
    assert signature_id("tunnel", "vxlan") == 9_400_006
    assert signature_id("mirror", "tzsp") != signature_id("mirror", "erspan-2")
    # Unlisted names get a number from their name alone, outside the table's range.
    sid = signature_id("mirror", "new-format")
    assert sid == signature_id("mirror", "new-format") and 9_100_500 <= sid < 9_101_000
    # Every table entry is documented with the same number.
    for name, number in PROTOCOL_SID.items():
        assert re.search(rf"\| {re.escape(name)} \| {number} \|", DOC), name


def test_registered_and_empty_report() -> None:
    assert renderer("eve")(_report()) == ""
    f = _finding(transport="ip/4", protocol="ipip", kind="tunnel", severity="info")
    ev = json.loads(renderer("eve")(_report(f)))
    assert ev["proto"] == "IPIP" and ev["alert"]["category"] == "Tunnel"
    assert ev["flow"]["end"] == "2026-01-15T10:00:05.500000+0000"
