"""Shared test helpers: sample and real-capture locations, a scan-to-findings shortcut.

A plain module (not conftest.py) so its name cannot clash with the e2e suite's conftest."""

from __future__ import annotations

import collections
import csv
import functools
import importlib.util
import multiprocessing
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar, cast

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


# Long work some tests wait for, by the name of the fixture that waits: conftest.py starts it
# with the first unit test when a selected test uses that fixture, and runs those tests last.  The
# suite runs its tests one at a time, so work started early (subprocesses, mostly) runs on the
# core they leave idle.
EARLY: dict[str, Callable[[], object]] = {}
T = TypeVar("T")


def early(fixture: str) -> Callable[[Callable[[], T]], Callable[[], T]]:
    """Register a starter (called once, its result kept) for the fixture of that name."""

    def register(start: Callable[[], T]) -> Callable[[], T]:
        once = functools.cache(start)
        EARLY[fixture] = once
        return once

    return register


def _make(call: Callable[[], T]) -> T:
    return call()


class EarlyCalls(Generic[T]):
    """Calls made one at a time, in the background, from the moment this is made (after the
    calls of earlier EarlyCalls: one background thread makes them all, so the tests keep a core
    of their own).  The test that wants them makes the calls still waiting alongside it (two at a
    time), so a test run on its own loses nothing.  ``python``: calls that compute in Python
    (which would hold this process's interpreter lock) are made in the background by a worker
    process, so they must pickle; calls that wait on a subprocess are made by the thread."""

    def __init__(self, calls: Sequence[Callable[[], T]], python: bool = False) -> None:
        self.python = python
        self._waiting = collections.deque(enumerate(calls))
        self._results: list[T | None] = [None] * len(calls)
        self._errors: list[BaseException] = []
        self._left = len(calls)
        self._done = threading.Condition()
        _BACKGROUND.put(self)
        if not _WORKER:
            # A daemon: an interrupted suite does not wait for calls nobody will read.
            _WORKER.append(threading.Thread(target=_work_in_background, daemon=True))
            _WORKER[0].start()

    def work(self, make: Callable[[Callable[[], T]], T] = _make) -> None:
        """Make the calls still waiting, one after the other (by ``make``)."""
        while True:
            with self._done:
                if not self._waiting:
                    return
                i, call = self._waiting.popleft()
            try:
                self._results[i] = make(call)
            except BaseException as exc:  # raised again, in the test, by results()
                self._errors.append(exc)
            with self._done:
                self._left -= 1
                self._done.notify_all()

    def results(self) -> list[T]:
        self.work()
        with self._done:
            self._done.wait_for(lambda: self._left == 0)
        if self._errors:
            raise self._errors[0]
        return cast("list[T]", self._results)


_BACKGROUND: queue.SimpleQueue[EarlyCalls[Any]] = queue.SimpleQueue()
_WORKER: list[threading.Thread] = []


def _work_in_background() -> None:
    # An executor rather than a Pool: a worker that dies fails its call (BrokenProcessPool), where
    # a Pool would wait for its result forever; the next call gets a new worker.
    worker: list[ProcessPoolExecutor] = []

    def in_worker(call: Callable[[], T]) -> T:
        if not worker:
            worker.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        try:
            return worker[0].submit(call).result()
        except BrokenProcessPool:
            worker.clear()
            raise

    while True:
        calls = _BACKGROUND.get()
        calls.work(in_worker if calls.python else _make)


def run_command(argv: Sequence[str]) -> Callable[[], subprocess.CompletedProcess[str]]:
    """A command to run as it is, its output kept (for EarlyCalls)."""
    return functools.partial(subprocess.run, list(argv), capture_output=True, text=True,
                             timeout=600)  # fmt: skip


@early("generated_samples")
def generating_samples() -> tuple[Path, EarlyCalls[subprocess.CompletedProcess[str]]]:
    """Every sample as ``python pcaps/generate.py`` writes it, into a fresh directory (half the
    samples by each of two runs, so that a wait for them uses both cores)."""
    out = Path(tempfile.mkdtemp(prefix="mirrorwatch-samples-"))
    names = list(sample_generator().SAMPLES)
    cmd = [sys.executable, str(PCAPS / "generate.py"), "--out", str(out)]
    return out, EarlyCalls([run_command([*cmd, *names[k::2]]) for k in range(2)])


def printed_with_and_without_pure_python(code: str) -> tuple[str, str]:
    """What ``python -c code`` prints in a fresh process: without MIRRORWATCH_PURE_PYTHON, and
    with it set to 1 (the compiled forms are chosen once, at import)."""
    env = {k: v for k, v in os.environ.items() if k != "MIRRORWATCH_PURE_PYTHON"}
    printed = []
    for pure in (False, True):
        if pure:
            env["MIRRORWATCH_PURE_PYTHON"] = "1"
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        printed.append(run.stdout.strip())
    return printed[0], printed[1]


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
