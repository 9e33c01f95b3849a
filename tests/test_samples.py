"""Every bundled sample is found as what pcaps/expected.tsv says it holds."""

from __future__ import annotations

import pytest
from mwtest import PCAPS, expected_samples, scan

from detector.protocols import registry
from detector.severity import SEVERITY_ORDER

SAMPLES = expected_samples()


@pytest.mark.parametrize("row", SAMPLES, ids=[f"{r['file']}:{r['protocol']}" for r in SAMPLES])
def test_sample_is_found(row: dict[str, str]) -> None:
    report = scan(PCAPS / row["file"])
    findings = report.findings
    undeclared = {f.protocol for f in findings} - set(registry.protocol_specs())
    assert not undeclared, f"protocols without a spec (detector.protocols): {undeclared}"
    if row["kind"] == "none":
        assert not [f for f in findings if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER["high"]]
        return
    match = [f for f in findings if f.kind == row["kind"] and f.protocol == row["protocol"]]
    assert match, f"expected {row['kind']}/{row['protocol']}, got " + str(
        [(f.kind, f.protocol, f.severity) for f in findings]
    )
    f = match[0]
    assert f.reasons and f.packets > 0 and f.bytes > 0
    assert f.first_seen <= f.last_seen
    if f.kind in ("mirror", "intercept"):
        assert f.severity in ("medium", "high", "critical")
        if f.evidence.get("carried_packets"):
            assert f.watched, "a copy stream must say whose traffic is inside"
    elif f.kind == "flow-export":
        assert f.severity == "medium"
    else:
        assert f.severity == "info"


def test_overlay_lookalikes_are_not_mirrors() -> None:
    for name in ("vxlan-overlay.pcap", "gre-teb-tunnel.pcap"):
        report = scan(PCAPS / name)
        assert report.findings
        assert all(f.kind == "tunnel" and f.severity == "info" for f in report.findings), name
        assert any("came-back" in f.reason_codes for f in report.findings)


def test_mirror_evidence_is_explained() -> None:
    (f,) = [f for f in scan(PCAPS / "vxlan-mirror-8472.pcap").findings if f.protocol == "vxlan"]
    assert f.severity == "high"
    assert f.evidence["mirror_proven"] is True
    assert f.evidence["inner_both_directions"] >= 1
    assert f.collector.port == 8472
    assert f.session["vni"] == "4242"
    assert "usual-port" in f.reason_codes


def test_stable_ids() -> None:
    a = scan(PCAPS / "tzsp.pcap").findings[0].id
    b = scan(PCAPS / "tzsp.pcap.gz").findings[0].id
    assert a == b


def test_nested_vxlan_inside_erspan_is_reported_once() -> None:
    report = scan(PCAPS / "erspan-2-vxlan.pcap")
    assert [f.protocol for f in report.findings] == ["erspan-2"]


def test_sflow_sample_holding_vxlan_is_sflow_only() -> None:
    report = scan(PCAPS / "sflow-vxlan.pcap")
    assert {f.protocol for f in report.findings} == {"sflow"}


def test_fragmented_erspan_is_reassembled() -> None:
    (f,) = scan(PCAPS / "erspan-2-fragmented.pcap").findings
    assert f.protocol == "erspan-2"
    assert f.evidence.get("fragmented_datagrams_frames", 0) > 0
