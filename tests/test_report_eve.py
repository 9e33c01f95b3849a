"""EVE output: Suricata alert lines that validate against Suricata's own EVE schema, with values
as Suricata writes them, and docs/eve.md built from the same tables as the code."""

from __future__ import annotations

import json
import re
import socket

import jsonschema
import pytest
from click.testing import CliRunner
from mwtest import PCAPS, ROOT, SAMPLES, sample_scan
from test_docs import reported_protocols

from detector.cli import main
from detector.findings import Endpoint, Finding, Report
from detector.report import renderer
from detector.report.eve import (
    FLOW_ID_BITS,
    PROTOCOL_SID,
    eve_event,
    render_eve,
    signature_id,
    with_tables,
)
from detector.scan import ScanResult

DOC_PATH = ROOT / "docs" / "eve.md"
EVE_SCHEMA = ROOT.parent / "shared" / "schemas" / "suricata-eve.schema.json"


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
    return Report(version="t", inputs=[], stats={}, findings=list(findings))


@pytest.fixture(scope="module")
def scans() -> dict[str, ScanResult]:
    return {p.name: sample_scan(p) for p in SAMPLES}


@pytest.fixture(scope="module")
def lines(scans: dict[str, ScanResult]) -> list[dict]:
    out = []
    for r in scans.values():
        text = render_eve(r.report, sensor="span-a", include_info=True, evidence=r.evidence)
        out += [json.loads(line) for line in text.splitlines()]
    return out


def test_samples_give_lines(lines: list[dict]) -> None:
    assert len(SAMPLES) > 60
    assert len(lines) > 60
    assert {ev["app_proto"] for ev in lines} >= {"tzsp", "tee-copy", "ipip", "rpcap", "pcli"}


@pytest.mark.skipif(not EVE_SCHEMA.exists(), reason=f"{EVE_SCHEMA} not present")
def test_every_line_validates_against_suricatas_schema(lines: list[dict]) -> None:
    schema = json.loads(EVE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for ev in lines:
        errors = [e.message for e in validator.iter_errors(ev)]
        assert not errors, (ev["app_proto"], errors[:3])
    # The schema does reject what earlier lines carried: a top-level object of our own.
    assert list(validator.iter_errors({**lines[0], "mirrorwatch": {}}))


def test_values_as_suricata_writes_them(lines: list[dict]) -> None:
    for ev in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000", ev["timestamp"])
        assert 0 < ev["flow_id"] < 2**FLOW_ID_BITS
        assert ev["host"] == "span-a" and ev["event_type"] == "alert"
        a = ev["alert"]
        assert (a["action"], a["gid"], a["rev"]) == ("allowed", 1, 1)
        assert a["severity"] in (1, 2, 3)
        for key, values in a["metadata"].items():
            assert values and all(isinstance(v, str) for v in values), key
        assert "" not in (ev.get("src_ip"), ev.get("dest_ip"))
        if "src_ip" in ev:
            assert ev["community_id"].startswith("1:")
    # One signature text per signature id, whatever the stream.
    texts: dict[int, set[str]] = {}
    for ev in lines:
        texts.setdefault(ev["alert"]["signature_id"], set()).add(ev["alert"]["signature"])
    assert all(len(t) == 1 for t in texts.values()), texts
    assert not any(re.search(r"\d+\.\d+\.\d+\.\d+", next(iter(t))) for t in texts.values())


def test_by_kind(lines: list[dict]) -> None:
    by = {ev["app_proto"]: ev for ev in lines}
    tee = by["tee-copy"]
    assert not {"src_ip", "dest_ip", "proto", "community_id"} & set(tee)
    assert tee["ether"] == {"src_mac": "00:1b:54:0a:01:01", "dest_mac": "52:54:00:9c:00:0a"}
    assert tee["alert"]["metadata"]["collector"] == ["52:54:00:9c:00:0a"]
    assert by["ipip"]["proto"] == "IP-in-IP" and by["6in4"]["proto"] == "IPv6"
    assert by["erspan-3"]["proto"] == "GRE" and "src_port" not in by["erspan-3"]
    pcli = next(ev for ev in lines if ev["app_proto"] == "pcli" and ev["dest_port"] == 40123)
    assert pcli["alert"]["metadata"]["session_cccid"] == ["316065"]
    assert pcli["alert"]["signature_id"] == 9_200_000 + PROTOCOL_SID["pcli"]
    # TCP: both directions of the connection, apart.
    x2x3 = [ev for ev in lines if ev["app_proto"] == "etsi-x2x3"]
    assert x2x3 and all(ev["flow"]["pkts_toclient"] > 0 for ev in x2x3)
    erspan = [ev for ev in lines if ev["app_proto"] == "erspan-2" and "vlan" in ev]
    assert [120] in [ev["vlan"] for ev in erspan]


def test_tcp_directions_add_up(scans: dict[str, ScanResult]) -> None:
    for name in ("rpcap.pcap", "etsi-102232.pcap", "x2x3-xcc.pcap"):
        for f in scans[name].report.findings:
            flow = eve_event(f, sensor="s")["flow"]
            if "packets_back" in f.evidence:
                assert flow["pkts_toserver"] + flow["pkts_toclient"] == f.packets
                assert flow["bytes_toserver"] + flow["bytes_toclient"] == f.bytes


def test_community_id_is_the_standard_one() -> None:
    # The Community ID specification's own example flow.
    f = _finding(
        transport="tcp",
        exporter=Endpoint(ip="128.232.110.120", port=34855),
        collector=Endpoint(ip="66.35.250.204", port=80),
    )
    assert eve_event(f, sensor="s")["community_id"] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_info_findings_only_when_asked(scans: dict[str, ScanResult]) -> None:
    report = scans["gtp-u.pcap"].report
    assert [f.severity for f in report.findings] == ["info"]
    assert render_eve(report) == ""
    assert json.loads(render_eve(report, include_info=True))["alert"]["category"] == "Tunnel"


@pytest.mark.parametrize(
    ("severity", "eve"),
    [("critical", 1), ("high", 1), ("medium", 2), ("low", 3), ("info", 3)],
)
def test_severity_mapping(severity: str, eve: int) -> None:
    ev = json.loads(render_eve(_report(_finding(severity=severity)), include_info=True))
    assert ev["alert"]["severity"] == eve


def test_signature_ids_are_stable_per_protocol() -> None:
    assert signature_id("mirror", "vxlan") == 9_100_006
    assert signature_id("tunnel", "vxlan") == 9_400_006
    assert signature_id("mirror", "tzsp") != signature_id("mirror", "erspan-2")
    sid = signature_id("mirror", "new-format")
    assert sid == signature_id("mirror", "new-format") and 9_100_500 <= sid < 9_101_000
    assert len(set(PROTOCOL_SID.values())) == len(PROTOCOL_SID)


def test_every_reported_protocol_has_a_number(lines: list[dict]) -> None:
    names = reported_protocols() | {ev["app_proto"] for ev in lines}
    assert names - set(PROTOCOL_SID) <= {"netflow", "ip-in-ip"}  # reported as -v5..., ipip


def test_doc_tables_are_the_codes() -> None:
    doc = DOC_PATH.read_text()
    assert "<!-- table: sids -->" in doc and "| tee-copy | 12 | 9100012 |" in doc
    assert with_tables(doc) == doc, "run: python3 -m detector.report.eve docs/eve.md"


def test_cli_sensor_name_and_default_host() -> None:
    runner = CliRunner()
    path = str(PCAPS / "tzsp.pcap")
    res = runner.invoke(main, ["scan", "-q", "--format", "eve", "--sensor-name", "span-a", path])
    assert json.loads(res.output)["host"] == "span-a"
    res = runner.invoke(main, ["scan", "-q", "--format", "eve", path])
    assert json.loads(res.output)["host"] == socket.gethostname()
    assert renderer("eve")(_report()) == ""


def test_doc_example_is_one_valid_line() -> None:
    body = DOC_PATH.read_text().split("```json", 1)[1].split("```", 1)[0]
    example = json.loads(body)
    assert set(example) <= set(eve_event(_finding(transport="udp"), sensor="s")) | {
        "src_port",
        "dest_port",
        "community_id",
        "ether",
    }
