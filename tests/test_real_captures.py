"""Every public capture in ../shared/pcaps/real is judged as its MANIFEST.tsv role says."""

from __future__ import annotations

import csv

import pytest
from mwtest import REAL, scan

from detector.severity import SEVERITY_ORDER


def _manifest() -> list[dict[str, str]]:
    if not (REAL / "MANIFEST.tsv").is_file():
        return []
    with open(REAL / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _manifest()
# Captures whose manifest role says their origin is undocumented ("could be overlay or mirror")
# and in which mirrorwatch proves a mirror: the test then holds the verdict to its evidence
# instead of to the role.
UNDOCUMENTED_ORIGIN = "could be overlay or mirror"


@pytest.mark.skipif(not ROWS, reason=f"public captures not present at {REAL}")
@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_real_capture_role(row: dict[str, str]) -> None:
    report = scan(REAL / row["file"])
    assert all(not i.errors for i in report.inputs), report.inputs
    high_mirrors = [
        f
        for f in report.findings
        if f.kind == "mirror" and SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER["high"]
    ]
    role = row["role"]
    if role == "mirror":
        assert high_mirrors, [(f.kind, f.protocol, f.severity) for f in report.findings]
        expected = row["protocols_of_interest"].split("(")[-1].rstrip(")").lower()
        roman = {"i": "1", "ii": "2", "iii": "3"}
        assert any(f.protocol == f"erspan-{roman.get(expected, expected)}" for f in high_mirrors)
    elif role == "metadata-export":
        assert any(f.kind == "flow-export" for f in report.findings)
    elif UNDOCUMENTED_ORIGIN in row["notes"] and high_mirrors:
        for f in high_mirrors:
            assert f.evidence["mirror_proven"] is True
            assert f.evidence["return_packets"] == 0
    else:
        assert not high_mirrors, [(f.protocol, f.reasons) for f in high_mirrors]


# Label switching and service chaining on the link layer: no IP-level stream to name.
LINK_LAYER_ONLY = {"MPLS", "NSH"}


@pytest.mark.skipif(not ROWS, reason=f"public captures not present at {REAL}")
def test_benign_tunnels_are_named() -> None:
    """Knowing the tunnels is what keeps them from being called mirrors: each IP-level tunnel
    capture yields a tunnel finding, or an encapsulation the evidence could not clear (medium),
    or a proven mirror in a capture of undocumented origin."""
    for r in ROWS:
        if r["role"] != "benign-tunnel" or r["protocols_of_interest"] in LINK_LAYER_ONLY:
            continue
        findings = scan(REAL / r["file"]).findings
        named = [f for f in findings if f.kind == "tunnel"]
        undecided = [f for f in findings if f.kind == "mirror" and f.severity == "medium"]
        proven = [
            f
            for f in findings
            if UNDOCUMENTED_ORIGIN in r["notes"] and f.evidence.get("mirror_proven")
        ]
        assert named or undecided or proven, (r["file"], [(f.kind, f.protocol) for f in findings])
