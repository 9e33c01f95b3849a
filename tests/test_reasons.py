"""Reasons: every finding gives a stable code for each sentence, every code is documented, and
the verdict's steps leave figures behind each code."""

from __future__ import annotations

import re

from mwtest import PCAPS, ROOT, SAMPLES, sample_scan

from detector.policy.reasons import PROSE
from detector.report.eve import eve_event

DOCUMENTED = set(
    re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "docs" / "reasons.md").read_text(), re.M)
)


def test_every_code_is_documented() -> None:
    assert set(PROSE) == DOCUMENTED


def test_each_reason_has_its_code() -> None:
    seen: set[str] = set()
    for sample in SAMPLES:
        for f in sample_scan(sample).report.findings:
            assert len(f.reason_codes) == len(f.reasons) > 0, (sample.name, f.protocol)
            assert set(f.reason_codes) <= set(PROSE)
            seen.update(f.reason_codes)
    # The samples exercise most of the verdict; a code none of them gives is tested apart.
    assert len(seen) >= len(PROSE) * 2 // 3, sorted(set(PROSE) - seen)


def test_codes_in_eve_metadata() -> None:
    (f,) = sample_scan(PCAPS / "vxlan-mirror-8472.pcap").report.findings
    md = eve_event(f, sensor="s")["alert"]["metadata"]
    assert md["reason_codes"] == f.reason_codes and md["reasons"] == f.reasons
    assert {"validated", "usual-port", "both-way-inner", "inner-hosts"} <= set(f.reason_codes)
    assert f.evidence["inner_both_directions"] >= 1 and f.evidence["mirror_proven"] is True


def test_tunnel_folds_both_directions() -> None:
    (f,) = sample_scan(PCAPS / "gre-teb-tunnel.pcap").report.findings
    assert (f.kind, f.severity) == ("tunnel", "info")
    assert f.reason_codes[-1] == "tunnel-both-directions"
    assert int(f.evidence["packets_back"]) > 0 and f.evidence["return_packets"] > 0
