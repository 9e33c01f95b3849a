"""Golden outputs: every bundled sample's findings, in their stable fields, as reviewed.

Layout and how to rewrite them after a reviewed change: tests/formats/README.md. In short,
``tests/formats/<protocol>/<sample>.json`` holds the findings of that protocol in that sample of
pcaps/expected.tsv, and

    python3 -m pytest -q -p no:cacheprovider tests/test_formats.py --update-goldens

rewrites them (commit the changed files with the change).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest
from mwtest import PCAPS, ROOT, expected_samples, sample_scan

from detector.findings import Finding

GOLDENS = ROOT / "tests" / "formats"
NO_FINDING = "none"
SAMPLES = sorted({row["file"] for row in expected_samples()})
# Evidence figures the verdict rests on (the rest, such as rates or which host bucket an
# encrypted copy tracked, varies with capture details or the run's hash salt).
STABLE_EVIDENCE = (
    "validated", "decoded", "carried_packets", "inner_conversations", "inner_both_directions",
    "copy_match_share", "return_packets", "certainty_basis", "mirror_proven", "targeted",
    "evidence_level", "never_leaves", "keepalive_only",
)  # fmt: skip
WATCHED = 5


def stable(f: Finding) -> dict[str, Any]:
    """The fields of a finding that only a change of behaviour changes: no run times, no ids
    derived from them, scores rounded to what a reader compares."""
    out: dict[str, Any] = {
        "kind": f.kind,
        "protocol": f.protocol,
        "severity": f.severity,
        "reason_codes": f.reason_codes,
        "confidence": round(f.confidence, 2),
        "identification": round(f.identification, 2),
        "certainty": round(f.certainty, 2),
        "exporter": f.exporter.label,
        "collector": f.collector.label,
        "transport": f.transport,
        "packets": f.packets,
        "bytes": f.bytes,
        "session": f.session,
        "watched": [w.ip or w.mac for w in f.watched[:WATCHED]],
        "evidence": {k: f.evidence[k] for k in STABLE_EVIDENCE if k in f.evidence},
        "allow_listed": f.allow_listed,
    }
    return out


def actual(sample: str) -> dict[str, list[dict[str, Any]]]:
    """{protocol: stable findings} of one sample, as the goldens lay them out."""
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for f in sample_scan(PCAPS / sample).report.findings:
        by_protocol.setdefault(f.protocol, []).append(stable(f))
    return by_protocol or {NO_FINDING: []}


def golden_name(sample: str) -> str:
    return sample.replace("/", "-") + ".json"


def golden_files(sample: str) -> dict[str, Path]:
    return {p.parent.name: p for p in GOLDENS.glob(f"*/{golden_name(sample)}")}


def as_text(findings: list[dict[str, Any]]) -> str:
    return json.dumps(findings, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("sample", SAMPLES)
def test_sample_matches_golden(sample: str, request: pytest.FixtureRequest) -> None:
    got = actual(sample)
    files = golden_files(sample)
    if request.config.getoption("--update-goldens"):
        for protocol, path in files.items():
            if protocol not in got:
                path.unlink()
        for protocol, findings in got.items():
            path = GOLDENS / protocol / golden_name(sample)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(as_text(findings))
        return
    diffs = []
    for protocol in sorted(set(got) | set(files)):
        name = f"tests/formats/{protocol}/{golden_name(sample)}"
        want = files[protocol].read_text() if protocol in files else ""
        have = as_text(got[protocol]) if protocol in got else ""
        if want != have:
            diffs.extend(
                difflib.unified_diff(
                    want.splitlines(keepends=True), have.splitlines(keepends=True),
                    f"{name} (golden)", f"{name} (this scan)",
                )
            )  # fmt: skip
    if diffs:
        pytest.fail(
            "output differs from the golden files; if the change is meant, review it and "
            "rewrite them with --update-goldens:\n" + "".join(diffs),
            pytrace=False,
        )


def test_every_golden_belongs_to_a_sample() -> None:
    """A golden file whose sample left pcaps/expected.tsv is stale, not a check."""
    names = {golden_name(s) for s in SAMPLES}
    stale = [p for p in GOLDENS.glob("*/*.json") if p.name not in names]
    assert not stale, stale
