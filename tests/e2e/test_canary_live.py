"""`mirrorwatch canary` from one namespace, `mirrorwatch watch` on the receiving interface of
another: every canary format is reported, named as a canary, by the normal detection."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from netlib import REPO, Net, Watcher, wait_capturing

from detector.canary import FORMATS, KINDS

pytestmark = pytest.mark.slow

SENDER, SENSOR = "10.200.77.1", "10.200.77.2"


def test_every_canary_is_reported(make_net: Callable[[str], Net]) -> None:
    net = make_net("canary")
    snd, sen = net.ns("snd"), net.ns("sen")
    net.veth(snd, "cnr0", sen, "cns0")
    net.ip(snd, "addr", "add", f"{SENDER}/24", "dev", "cnr0")
    net.ip(sen, "addr", "add", f"{SENSOR}/24", "dev", "cns0")
    w = Watcher(net, sen, "cns0")
    wait_capturing(w.proc, "watch")
    w.wait_ready()
    env = {"PYTHONPATH": str(REPO)}
    missing = []
    for fmt in FORMATS:
        sent = net.bg(
            snd, f"canary-{fmt}", sys.executable, "-m", "detector.cli", "canary",
            "--format", fmt, "--to", SENSOR, cwd=str(REPO), env=env,
        )  # fmt: skip
        # Bounds a hung sender, not a slow one: scapy starts slowly on a loaded machine.
        assert sent.wait(300) == 0, net.log(f"canary-{fmt}")

        def reported(fmt: str = fmt) -> bool:
            return any(
                s.latest["protocol"] == fmt
                and s.latest["kind"] == KINDS[fmt]
                and s.latest["exporter"]["ip"] == SENDER
                and s.latest["evidence"].get("canary") is True
                for s in list(w.by_id.values())
            )

        if not w.wait(reported, 60):
            missing.append(fmt)
    w.stop()
    assert not missing, f"not reported as canaries: {missing}\n{w.describe()}"
    kinds = {s.latest["protocol"]: s.latest for s in w.by_id.values()}
    # Judged by the normal detection: mirrors high, flow exports medium.
    assert kinds["tzsp"]["severity"] == "high" and kinds["ipfix"]["severity"] == "medium"


def test_canary_needs_an_address_or_a_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "detector.cli", "canary", "--format", "tzsp"],
        capture_output=True, text=True, cwd=str(REPO), env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 2 and "--to ADDRESS" in proc.stderr
