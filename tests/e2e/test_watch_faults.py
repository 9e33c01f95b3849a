"""`mirrorwatch watch` when the capture itself goes wrong, on a veth pair in namespaces of its own:
the interface goes down and comes back, the interface disappears, and promiscuous mode."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
from netlib import Net, Watcher, sh

pytestmark = pytest.mark.slow
WAIT = 60.0  # for an event that must come: long enough for a loaded machine

# Sends N Ethernet frames on an interface (from inside its namespace).
SEND = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
frame = bytes.fromhex("020000000002" "020000000001" "88b5") + b"mirrorwatch-fault-test".ljust(50)
for _ in range(int(sys.argv[2])):
    s.send(frame)
"""


def _pair(net: Net) -> tuple[str, str]:
    a, b = net.ns("a"), net.ns("b")
    net.veth(a, "va0", b, "vb0")
    return a, b


def _capture_events(w: Watcher, state: str) -> list[dict[str, Any]]:
    return [e for e in w.events if e["event"] == "capture" and e["state"] == state]


def _read_packets(w: Watcher) -> int:
    sums = [e for e in w.events if e["event"] == "summary"]
    return int(sums[-1]["captures"][0]["read_packets"]) if sums else 0


def test_interface_down_up_then_gone(make_net: Callable[[str], Net]) -> None:
    """The kernel ring follows its interface: down (an event, capture paused), up (an event,
    capture resumed), deleted (an event, exit 2) — never running on blind."""
    net = make_net("fd")
    a, b = _pair(net)
    w = Watcher(net, b, "vb0", "--capture", "afpacket")
    w.wait_ready()
    net.ip(b, "link", "set", "vb0", "down")
    assert w.wait(lambda: _capture_events(w, "down"), WAIT), net.log(w.log_name)
    net.ip(b, "link", "set", "vb0", "up")
    assert w.wait(lambda: _capture_events(w, "up"), WAIT), net.log(w.log_name)
    # Frames sent after it came back are read: the capture did resume.
    net.x(a, sys.executable, "-c", SEND, "va0", "25")
    assert w.wait(lambda: _read_packets(w) >= 25, WAIT), w.events[-1]
    net.ip(a, "link", "del", "va0")  # deletes the pair: vb0 is gone
    assert w.wait(lambda: _capture_events(w, "gone"), WAIT), net.log(w.log_name)
    rc = w.exited(WAIT)  # it ends by itself: no signal from us
    assert rc == 2, net.log(w.log_name)
    gone = _capture_events(w, "gone")[0]
    assert gone["interface"] == "vb0" and "disappeared" in gone["message"]
    final = [e for e in w.events if e["event"] == "summary" and e["final"]]
    assert final and any("disappeared" in f for f in final[0]["failures"])
    assert "disappeared" in net.log(w.log_name)  # and on stderr, for the journal


def test_interface_gone_under_tcpdump(make_net: Callable[[str], Net]) -> None:
    net = make_net("fg")
    a, b = _pair(net)
    w = Watcher(net, b, "vb0", "--capture", "tcpdump")
    w.wait_ready()
    net.ip(a, "link", "del", "va0")
    assert w.wait(lambda: _capture_events(w, "failed"), WAIT), net.log(w.log_name)
    rc = w.exited(WAIT)  # it ends by itself: no signal from us
    assert rc == 2, net.log(w.log_name)
    final = [e for e in w.events if e["event"] == "summary" and e["final"]]
    assert final and final[0]["failures"]


def _promiscuity(net: Net, ns: str, dev: str) -> int:
    out = sh("ip", "-n", ns, "-d", "link", "show", dev).stdout
    m = re.search(r"promiscuity (\d+)", out)
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("method", ["afpacket", "tcpdump"])
@pytest.mark.parametrize("promisc", [True, False])
def test_promiscuous_mode(make_net: Callable[[str], Net], method: str, promisc: bool) -> None:
    net = make_net(f"p{method[0]}{int(promisc)}")
    _, b = _pair(net)
    args = ["--capture", method] + ([] if promisc else ["--no-promisc"])
    w = Watcher(net, b, "vb0", *args)
    w.wait_ready()
    assert _promiscuity(net, b, "vb0") == (1 if promisc else 0)
    assert w.stop() == 0
    assert _promiscuity(net, b, "vb0") == 0  # left as it was found
