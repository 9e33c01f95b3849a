"""What the stage benchmarks share: a timing snippet run in a fresh Python process inside a
given mirrorwatch checkout, the --rounds/--tree arguments, and rounds interleaved over trees."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
Figures = dict[str, Any]


def run_in_tree(
    tree: Path, code: str, args: list[str], env: dict[str, str] | None = None
) -> Figures:
    """Run ``python -c code args...`` with ``tree`` first on the path; the JSON object the
    snippet prints last."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        # Run in the tree: ``python -c`` puts the working directory first on the path.
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# A stage benchmark's child: the flow hashes' salt fixed (the findings of different trees can be
# compared), its timers set up (they add CPU seconds to ``spent``), one scan ``-j 1`` of the file
# given, and ``spent`` printed with the scan's CPU seconds and a digest of its findings.
_SCAN_BEFORE = """
import hashlib, json, sys, time
from detector.flows import table

table.SALT = table.U64(0x5EED)
from detector.report import renderer
from detector.scan import scan_paths

cpu = time.process_time  # user + system seconds of this process
spent = {}
"""
_SCAN_AFTER = """
c0 = cpu()
result = scan_paths([sys.argv[1]], None, jobs=1)
spent["scan"] = cpu() - c0
findings = renderer("jsonl")(result.report)
spent["findings"] = hashlib.sha256(findings.encode()).hexdigest()[:16]
print(json.dumps(spent))
"""


def timed_scan(timers: str) -> str:
    """The code of a child that times a scan with ``timers`` (Python that wraps what it
    times and adds to ``spent``) in place."""
    return _SCAN_BEFORE + timers + _SCAN_AFTER


def tree_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser (described by the first paragraph of ``doc``) with what every stage benchmark
    takes: --rounds, and --tree for each checkout to compare (this one if none)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", action="append", type=Path, help="a mirrorwatch checkout")
    return ap


def trees_of(args: argparse.Namespace) -> list[Path]:
    return [t.resolve() for t in args.tree or [REPO]]


def interleaved(
    rounds: int, runs: dict[str, Callable[[], Figures]], show: Callable[[Figures], str]
) -> dict[str, list[Figures]]:
    """Each of ``runs`` once per round, in turn (drift in the machine's load hits every run
    alike), each result printed as ``show`` words it; every result, by run."""
    got: dict[str, list[Figures]] = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            figures = run()
            got[name].append(figures)
            print(f"round {r + 1} {name}: {show(figures)}", flush=True)
    return got


def medians(got: list[Figures], names: Iterable[str]) -> dict[str, float]:
    """The median over the rounds of each figure named (NaN where a round lacks it)."""
    return {k: statistics.median(float(g.get(k, "nan")) for g in got) for k in names}


def print_findings_identical(results: Iterable[list[Figures]]) -> None:
    """Whether every run wrote the same findings (their digest under "findings")."""
    digests = {g["findings"] for got in results for g in got}
    print("findings identical across trees and rounds:", "yes" if len(digests) == 1 else "NO")
