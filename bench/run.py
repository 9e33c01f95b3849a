"""Time mirrorwatch and reference readers on the same capture, in the same run.

    python bench/run.py                  # bench/out/uplink.pcap (see make_capture.py)
    python bench/run.py FILE --repeat 3  # medians of 3 runs each

For every tool that is installed: wall time, packets/s (packet count read from the file) and
peak resident memory.  Memory comes from `/usr/bin/time -v` when present, otherwise from
getrusage(RUSAGE_CHILDREN) (a high-water mark over all children so far, so it can only be
trusted for the first and largest tool).  The file should be in the page cache: a warm-up read
is done first.  This script prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().parent / "out" / "uplink.pcap"
GNU_TIME = Path("/usr/bin/time")


def count_packets(path: Path) -> int:
    """Records in a pcap or pcapng file, by walking the record/block headers."""
    with path.open("rb") as fh:
        data = fh.read()
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        off, n = 0, 0
        while off + 8 <= len(data):
            btype, blen = struct.unpack_from(endian + "II", data, off)
            if blen < 12:
                break
            n += btype in (3, 6)
            off += blen
        return n
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    caplen = struct.Struct(endian + "8xI4x")
    off, n = 24, 0
    while off + 16 <= len(data):
        off += 16 + caplen.unpack_from(data, off)[0]
        n += 1
    return n


def mirrorwatch_cmd() -> list[str]:
    exe = shutil.which("mirrorwatch")
    return [exe] if exe else [sys.executable, "-m", "detector.cli"]


@dataclass
class Tool:
    name: str
    argv: list[str]
    ok_codes: frozenset[int] = frozenset({0})


@dataclass
class Result:
    wall: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    failed: str = ""


def tools_for(path: Path) -> list[Tool]:
    f = str(path)
    # mirrorwatch exits 1 when it reports a finding at or above --fail-on: a normal outcome here.
    mw = [*mirrorwatch_cmd(), "scan", f, "--format", "json", "-q"]
    tools = [Tool("mirrorwatch scan", mw, ok_codes=frozenset({0, 1}))]
    if shutil.which("tcpdump"):
        tools.append(Tool("tcpdump -r -w /dev/null", ["tcpdump", "-r", f, "-w", "/dev/null"]))
    if shutil.which("suricata"):
        # No rules (-S /dev/null loads only that empty file), logs into a throw-away directory.
        tools.append(
            Tool(
                "suricata -r (no rules)",
                ["suricata", "-r", f, "-l", "{tmp}", "-S", "/dev/null", "-k", "none"],
            )
        )
    if shutil.which("tshark"):
        tools.append(Tool("tshark -q -z io,phs", ["tshark", "-r", f, "-q", "-z", "io,phs"]))
    return tools


def run_once(tool: Tool, cwd: Path) -> tuple[float, float | None, str]:
    """(wall seconds, peak RSS MiB or None, error text)."""
    with tempfile.TemporaryDirectory(prefix="mwbench-") as tmp:
        argv = [a.replace("{tmp}", tmp) for a in tool.argv]
        timing = Path(tmp) / "time.txt"
        use_time = GNU_TIME.exists()
        if use_time:
            argv = [str(GNU_TIME), "-v", "-o", str(timing), *argv]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        wall = time.perf_counter() - start
        rss: float | None = None
        if use_time and timing.exists():
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing.read_text())
            rss = int(m.group(1)) / 1024 if m else None
        else:
            after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            rss = after / 1024 if after > before else None
        err = ""
        if proc.returncode not in tool.ok_codes:
            lines = [x for x in proc.stderr.decode(errors="replace").splitlines() if x.strip()]
            err = f"exit {proc.returncode}: {lines[-1][:70] if lines else ''}"
        return wall, rss, err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; medians are shown")
    ap.add_argument(
        "--only", action="append", default=[], help="run only tools whose name has this"
    )
    args = ap.parse_args(argv)
    path: Path = args.file.resolve()
    if not path.is_file():
        print(f"{path} not found: make it with `python bench/make_capture.py`", file=sys.stderr)
        return 2
    repo = Path(__file__).resolve().parents[1]
    t = time.perf_counter()
    packets = count_packets(path)  # also warms the page cache
    print(
        f"{path}: {packets:,} packets, {path.stat().st_size / 1e6:.0f} MB "
        f"(counted in {time.perf_counter() - t:.1f} s)"
    )
    tools = [x for x in tools_for(path) if not args.only or any(o in x.name for o in args.only)]
    results = {tool.name: Result() for tool in tools}
    for _ in range(max(1, args.repeat)):
        for tool in tools:  # interleaved, so drift in machine load hits every tool alike
            res = results[tool.name]
            if res.failed:
                continue
            wall, rss, err = run_once(tool, repo)
            if err:
                res.failed = err
                continue
            res.wall.append(wall)
            if rss is not None:
                res.rss_mib.append(rss)
    print(f"\n{'tool':<26} {'wall s':>8} {'packets/s':>12} {'peak MiB':>9}  runs")
    for tool in tools:
        res = results[tool.name]
        if res.failed:
            print(f"{tool.name:<26} {'failed':>8}  {res.failed}")
            continue
        wall = statistics.median(res.wall)
        rss = f"{statistics.median(res.rss_mib):9.0f}" if res.rss_mib else f"{'?':>9}"
        print(f"{tool.name:<26} {wall:8.2f} {packets / wall:12,.0f} {rss}  {len(res.wall)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
