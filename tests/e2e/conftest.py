"""Fixtures of the end-to-end tests: namespaces torn down whatever happens, emitter checks, and a
table of measured times from a stream's first packet to its finding at the end of the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netlib import LATENCIES, Net


def _unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (creates network namespaces)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed (see tests/e2e/APT_PACKAGES)"
    probe = f"mw-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns` is unavailable here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


_WHY: list[str | None] = []


@pytest.fixture
def make_net() -> Iterator[Callable[[str], Net]]:
    if not _WHY:
        _WHY.append(_unavailable())
    if _WHY[0]:
        pytest.skip(_WHY[0])
    nets: list[Net] = []

    def make(tag: str) -> Net:
        n = Net(tag)
        nets.append(n)
        return n

    try:
        yield make
    finally:
        for n in nets:
            n.teardown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not LATENCIES:
        return
    terminalreporter.section("mirrorwatch watch: first packet -> finding (target: within 10 s)")
    for test, stream, secs in LATENCIES:
        terminalreporter.write_line(f"{secs:6.2f} s  {stream:<28} {test}")
