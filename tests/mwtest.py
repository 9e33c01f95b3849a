"""Shared test helpers: sample and real-capture locations, a scan-to-findings shortcut.

A plain module (not conftest.py) so its name cannot clash with the e2e suite's conftest."""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from hypothesis import HealthCheck, settings

from detector.findings import Report
from detector.protocols.base import PREFILTER_BYTES
from detector.scan import ScanResult, scan_paths

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
REAL = ROOT.parent / "shared" / "pcaps" / "real"


@functools.cache
def sample_generator() -> ModuleType:
    """pcaps/generate.py as a module: the builders of the bundled samples, for tests that craft
    variations of them."""
    spec = importlib.util.spec_from_file_location("pcaps_generate", PCAPS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def uplink_capture(out: Path, packets: int) -> Path:
    """A synthetic uplink capture from bench/make_capture.py (mirror streams, flow export)."""
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_capture.py"), "--packets", str(packets),
         "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def scan(*paths: Path | str) -> Report:
    return scan_paths([str(p) for p in paths]).report


def expected_samples() -> list[dict[str, str]]:
    with open(PCAPS / "expected.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def heads(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Payloads as the engine hands them to prefilters: (n, PREFILTER_BYTES) bytes, zero past
    each payload's end, and the payload lengths."""
    head = np.zeros((len(payloads), PREFILTER_BYTES), dtype=np.uint8)
    for i, p in enumerate(payloads):
        cut = p[:PREFILTER_BYTES]
        head[i, : len(cut)] = np.frombuffer(cut, dtype=np.uint8)
    return head, np.array([len(p) for p in payloads], dtype=np.int64)


SAMPLES = sorted(p for p in PCAPS.rglob("*.pcap*") if "bad" not in p.parts)


@functools.cache
def sample_scan(path: Path) -> ScanResult:
    """One scan per sample per test run, shared by the output tests."""
    return scan_paths([str(path)])


# Examples per property test in CI; MIRRORWATCH_FUZZ_EXAMPLES=N raises it for a longer local run.
FUZZ_SCALE = max(1, int(os.environ.get("MIRRORWATCH_FUZZ_EXAMPLES", "1")))


def fuzz(examples: int) -> settings:
    """Settings of a property (fuzz) test: derandomised in CI, new examples in a longer run."""
    return settings(
        max_examples=examples * FUZZ_SCALE,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
