"""Shared test helpers: sample and real-capture locations, a scan-to-findings shortcut.

A plain module (not conftest.py) so its name cannot clash with the e2e suite's conftest."""

from __future__ import annotations

import csv
from pathlib import Path

from detector.findings import Report
from detector.scan import scan_paths

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
REAL = ROOT.parent / "shared" / "pcaps" / "real"


def scan(*paths: Path | str) -> Report:
    return scan_paths([str(p) for p in paths]).report


def expected_samples() -> list[dict[str, str]]:
    with open(PCAPS / "expected.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))
