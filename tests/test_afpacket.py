"""The kernel-ring capture (AF_PACKET, TPACKET_V3) on a veth pair in a namespace of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to make a network namespace with a veth pair",
)

# Runs inside the namespace: send frames on one end, capture on the other, print what came.
PROBE = r"""
import json, re, socket, subprocess, sys, threading, time
from scapy.all import Ether, IP, UDP, Raw, raw
from detector.capture.reader import InputStats
from detector.live.afpacket import AfPacketSource

bpf = sys.argv[1] or None
promisc = sys.argv[2] == "1"

def promiscuity():
    out = subprocess.run(["ip", "-d", "link", "show", "mwb"], capture_output=True, text=True)
    return int(re.search(r"promiscuity (\d+)", out.stdout).group(1))

src = AfPacketSource("mwb", bpf, promisc=promisc)
src.start()
while_open = promiscuity()
got = []
END = b"end-of-probe"
def read():
    for batch in src.batches(InputStats("mwb")):
        got.extend(batch.packet(i) for i in range(len(batch)))
t = threading.Thread(target=read); t.start()
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); tx.bind(("mwa", 0))
eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
def udp(port, payload):
    return raw(eth / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=4000, dport=port)
               / Raw(payload))
for i in range(40):
    tx.send(udp(37008 if i % 2 else 53, b"x" * 100))
# A last frame that passes any filter used here: once it is in, so is everything sent before
# it (a veth delivers in order), and anything the filter should have refused would be there.
tx.send(udp(37008, END))
deadline = time.time() + 120
while time.time() < deadline and not any(p.endswith(END) for p in got):
    time.sleep(0.02)
src.stop(); t.join(120); src.close()  # join returns when the reader ends
got = [p for p in got if not p.endswith(END)]
ports = sorted({int.from_bytes(p[36:38], "big") for p in got if len(p) > 38 and p[23] == 17})
print(json.dumps({"packets": len(got), "ports": ports, "tool": src.stats.tool,
                  "sizes": sorted({len(p) for p in got}),
                  "promiscuity": [while_open, promiscuity()]}))
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"mw-afp-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run = ["ip", "-n", name]
        subprocess.run([*run, "link", "add", "mwa", "type", "veth", "peer", "name", "mwb"],
                       check=True)  # fmt: skip
        for dev in ("mwa", "mwb", "lo"):
            subprocess.run([*run, "link", "set", dev, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _probe(
    ns: str, bpf: str = "", promisc: bool = True, wrap: tuple[str, ...] = ()
) -> dict[str, object]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, *wrap, sys.executable, "-c", PROBE, bpf,
         "1" if promisc else "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_ring_delivers_every_frame(namespace: str) -> None:
    got = _probe(namespace)
    # The membership holds the interface promiscuous while the ring is open, and only then.
    assert got["promiscuity"] == [1, 0]
    # IPv6 router solicitations and the like may come too; our 40 frames must all be there.
    assert isinstance(got["packets"], int) and got["packets"] >= 40
    assert got["ports"] == [53, 37008]
    assert 142 in got["sizes"]  # 14 + 20 + 8 + 100: the whole frame, not a snap length
    tool = got["tool"]
    assert isinstance(tool, dict) and tool["dropped_by_kernel"] == 0
    assert tool["captured"] == got["packets"] + 1  # and the probe's last frame


def test_not_promiscuous_when_told_not(namespace: str) -> None:
    # (Promiscuous by default while capturing: test_ring_delivers_every_frame.)
    assert _probe(namespace, promisc=False)["promiscuity"] == [0, 0]


def test_capture_filter_is_compiled_and_attached(namespace: str) -> None:
    # Attached before the ring receives: not one frame of another port, even at the start.
    got = _probe(namespace, "udp port 37008")
    assert got["packets"] == 20
    assert got["ports"] == [37008]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_capture_and_promiscuous_mode_need_only_cap_net_raw(namespace: str) -> None:
    """What the service unit grants: CAP_NET_RAW and no other capability (no CAP_NET_ADMIN)."""
    only_net_raw = ("setpriv", "--inh-caps", "-all", "--bounding-set", "-all,+net_raw")
    got = _probe(namespace, wrap=only_net_raw)
    assert got["promiscuity"] == [1, 0]
    assert isinstance(got["packets"], int) and got["packets"] >= 40
