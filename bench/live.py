"""Live throughput: replay a capture onto a veth at top speed while ``mirrorwatch watch`` runs on
the peer, and print what it processed and what was dropped on the way.

    sudo python bench/live.py                           # bench/out/uplink.pcap (make_capture.py)
    sudo python bench/live.py --pcap x.pcap --limit 200000

Needs root (two network namespaces named mw-bench-*), tcpreplay and tcpdump.  Figures:
  sent          packets tcpreplay put on the wire, and its rate
  captured      tcpdump's own counters: captured, received by filter, dropped by kernel
  read          packets the watch read from the pipe and ran through the engine
  processed/s   packets over the wall time from the first sent to the last processed, and
                over the time the engine itself was busy (its ceiling on this machine)
  memory        peak resident memory of the watch process, sampled every 20 ms
  event log     lines and bytes the watch wrote, by event type
Losses show up as kernel drops (the capture ring overflowed while the engine was behind).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adversarial import _rss_kib, _tree  # noqa: E402

DEFAULT_PCAP = ROOT / "bench" / "out" / "uplink.pcap"
TX, RX = "mw-bench-tx", "mw-bench-rx"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def setup() -> None:
    teardown()
    for ns in (TX, RX):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "bench-tx0", "netns", TX, "type", "veth", "peer", "name", "bench-rx0",
       "netns", RX)  # fmt: skip
    for ns, dev in ((TX, "bench-tx0"), (RX, "bench-rx0")):
        # Large frames in the capture must not be refused by the veth.
        sh("ip", "-n", ns, "link", "set", dev, "mtu", "9000", "up")


def teardown() -> None:
    for ns in (TX, RX):
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)


class Watch:
    def __init__(self, extra: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = ["ip", "netns", "exec", RX, sys.executable, "-m", "detector.cli", "watch",
               "-i", "bench-rx0", "--format", "jsonl", "--summary-every", "1", *extra]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT, env=env, text=True)  # fmt: skip
        self.summaries: list[dict[str, Any]] = []
        self.findings: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.log_lines: dict[str, int] = {}
        self.log_bytes = 0
        self.peak_kib = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in set(_tree(self.proc.pid))))
            time.sleep(0.02)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.log_bytes += len(line.encode())
            self.log_lines[ev["event"]] = self.log_lines.get(ev["event"], 0) + 1
            with self.cond:
                if ev["event"] == "summary":
                    self.summaries.append(ev)
                elif "finding" in ev:
                    self.findings[ev["finding"]["id"]] = ev["finding"]
                self.cond.notify_all()

    def wait_summary(self, timeout: float) -> bool:
        with self.cond:
            n = len(self.summaries)
            return self.cond.wait_for(lambda: len(self.summaries) > n, timeout)

    def packets(self) -> int:
        return self.summaries[-1]["stats"]["packets"] if self.summaries else 0

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        time.sleep(0.2)
        final = [s for s in self.summaries if s.get("final")]
        if not final:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise SystemExit(f"watch ended without a final summary: {err[-2000:]}")
        return final[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", type=Path, default=DEFAULT_PCAP)
    ap.add_argument("--limit", type=int, default=0, help="send only this many packets")
    ap.add_argument("--mbps", type=float, default=0, help="send at this rate instead of top speed")
    ap.add_argument("--buffer-size", type=int, default=None, help="watch --buffer-size (KiB)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        return _fail("needs root (creates network namespaces)")
    for tool, pkg in (("tcpreplay", "tcpreplay"), ("tcpdump", "tcpdump"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return _fail(f"{tool} not installed (Debian package {pkg})")
    if not args.pcap.is_file():
        return _fail(f"{args.pcap} missing: make it with python bench/make_capture.py")
    setup()
    try:
        extra = [] if args.buffer_size is None else ["--buffer-size", str(args.buffer_size)]
        w = Watch(extra)
        if not w.wait_summary(20):
            return _fail("watch did not start: " + (w.proc.stderr.read() if w.proc.stderr else ""))
        speed = ["--mbps", str(args.mbps)] if args.mbps else ["--topspeed"]
        limit = ["--limit", str(args.limit)] if args.limit else []
        t0 = time.monotonic()
        r = sh("ip", "netns", "exec", TX, "tcpreplay", "-i", "bench-tx0", *speed, *limit,
               str(args.pcap), check=False)  # fmt: skip
        t_sent = time.monotonic() - t0
        if r.returncode != 0:
            return _fail(f"tcpreplay failed: {r.stderr.strip() or r.stdout.strip()}")
        # Let the engine drain what the pipe and the ring still hold.
        # A busy engine writes no summary until its batch is done: only a summary that arrived
        # and shows no new packets means the backlog is drained (or a minute without progress).
        last, t_last = -1, time.monotonic()
        while True:
            arrived = w.wait_summary(10)
            now = w.packets()
            if now != last:
                last, t_last = now, time.monotonic()
            elif arrived or time.monotonic() - t_last > 60:
                break
        final = w.stop()
    finally:
        teardown()
    report(r.stdout, t_sent, t_last - t0, final, w.findings)
    print(f"memory              peak {w.peak_kib / 1024:.0f} MiB (watch process tree)")
    print(f"event log           {sum(w.log_lines.values())} lines, {w.log_bytes:,} bytes: "
          f"{w.log_lines}")  # fmt: skip
    return 0


def _num(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else "?"


def report(replay: str, t_sent: float, t_done: float, final: dict[str, Any],
           findings: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    st, cap = final["stats"], final["captures"][0]
    sent = _num(r"Actual: (\d+) packets", replay)
    pps = _num(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay)
    print(f"sent                {sent} packets in {t_sent:.2f} s ({pps} pps)")
    print(f"capture             captured {cap.get('captured', '?')}, received by filter "
          f"{cap.get('received_by_filter', '?')}, dropped by kernel "
          f"{cap.get('dropped_by_kernel', '?')}, dropped by interface "
          f"{cap.get('dropped_by_interface', 0)}")  # fmt: skip
    print(f"read by watch       {cap['read_packets']} packets, {cap['read_bytes']} bytes")
    lost = int(sent) - cap["read_packets"] if sent.isdigit() else None
    if lost is not None:
        print(f"capture loss        {lost} packets ({lost / max(1, int(sent)):.2%} of sent)")
    print(f"processed/s (wall)  {st['packets'] / max(t_done, 1e-9):,.0f} packets/s "
          f"(first sent to last processed, {t_done:.2f} s)")  # fmt: skip
    print(f"processed/s (busy)  {st['engine_packets_per_second']:,.0f} packets/s "
          f"(engine busy {st['engine_seconds']:.2f} s)")  # fmt: skip
    print(f"flows / hosts       {st['flows']} / {st['hosts']}; streams {st['streams']}")
    for f in findings.values():
        print(f"finding             {f['severity']:<8} {f['protocol']:<12} {f['kind']:<12} "
              f"{f['exporter']['ip']} -> {f['collector']['ip']}")  # fmt: skip


def _fail(msg: str) -> int:
    print(f"bench/live.py: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
