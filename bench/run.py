"""Time mirrorwatch and reference readers on the same captures, in the same run.

    python bench/run.py                         # bench/out/uplink.pcap (see make_capture.py)
    python bench/run.py --suite                 # every capture make_capture.py --suite wrote
    python bench/run.py --suite --suite-dir /tmp/suite   # ... with --out /tmp/suite/uplink.pcap
    python bench/run.py FILE_OR_DIR... --rounds 3 --dask

For every input and every tool that is installed and can read it: wall seconds, packets/s
(packets counted from the input itself), CPU seconds (user + system of the whole process tree,
from wait4) and the peak resident memory of the process tree (sampled every 20 ms from /proc).
Rounds are interleaved (every tool once, then again) so that drift in the machine's load hits
every tool alike; medians are printed.  With --dask, `mirrorwatch scan --cluster` also runs on a
local Dask scheduler with two single-threaded worker processes; its CPU seconds and memory add
the workers' to the command's.  The inputs should be in the page cache: they are read once
before the first round.  The checkouts' modules are compiled to bytecode first, as an install
does: with PYTHONDONTWRITEBYTECODE set, every run would otherwise compile them again (about
0.2 CPU-seconds a run).  With --installed, each checkout is instead pip-installed (not
editable) into a virtual environment of its own under bench/out/venvs, as README's quick start
installs it, and its `mirrorwatch` command is timed: the interpreter then starts without the .pth
hooks of the installation the bench runs from (an editable install's finder, site-wide
customisation), which on some machines add 0.05 s to every start.  This script prints figures; it
asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
DEFAULT_FILE = OUT / "uplink.pcap"
# What make_capture.py --suite writes, in the order of the table.
SUITE = [
    "uplink.pcap",
    "uplink-5x.pcap",
    "uplink-2m-flows.pcap",
    "uplink-200-files",
    "uplink.pcap.gz",
]
sys.path.insert(0, str(BENCH))
from adversarial import _rss_kib, _tree  # noqa: E402 - the process-tree sampler of that bench


def capture_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and ".pcap" in p.name)
    return [path]


def count_packets(path: Path) -> int:
    """Records in pcap, pcapng or gzip files (or a directory of them), by walking the
    record/block headers; also warms the page cache."""
    total = 0
    for f in capture_files(path):
        with gzip.open(f, "rb") if f.suffix == ".gz" else f.open("rb") as fh:
            data = fh.read()
        total += _records(data)
    return total


def _records(data: bytes) -> int:
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


def mirrorwatch_cmd(tree: Path = REPO, installed: bool = False) -> list[str]:
    """The command that runs mirrorwatch from ``tree``: its modules on PYTHONPATH, or (with
    ``installed``) the ``mirrorwatch`` command of a virtual environment it is installed into."""
    if installed:
        return [str(install(tree))]
    return [sys.executable, "-m", "detector.cli"]


@functools.cache
def install(tree: Path) -> Path:
    """``tree`` pip-installed, not editable, into a virtual environment of its own under
    bench/out/venvs (as README's quick start installs it); the path of its ``mirrorwatch``.
    The environment is made once per commit; a tree with uncommitted changes is installed
    again (without its dependencies) every time."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unversioned"
    changed = bool(git("status", "--porcelain", "--untracked-files=no")) or head == "unversioned"
    venv = OUT / "venvs" / f"{tree.name}-{head}"
    command = venv / "bin" / "mirrorwatch"
    if command.exists() and not changed:
        return command
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    again = ["--no-deps", "--force-reinstall"] if command.exists() else []
    print(f"installing {tree} into {venv}", file=sys.stderr, flush=True)
    subprocess.run(
        # The cluster extra too, for --dask (the scan imports it only with --cluster).
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *again, f"{tree}[cluster]"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return command


@dataclass
class Tool:
    name: str
    argv: list[str]
    ok_codes: frozenset[int] = frozenset({0})
    # Reads only one plain capture file (not a directory; gzip only where it says so).
    one_file: bool = True
    gzip: bool = False
    tree: Path = REPO  # the mirrorwatch checkout it runs
    installed: bool = False  # run from a virtual environment it is installed into


@dataclass
class Result:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    mib: list[float] = field(default_factory=list)
    failed: str = ""


def tools_for(
    path: Path, dask_address: str | None, others: list[Path], installed: bool = False
) -> list[Tool]:
    f = str(path)
    # mirrorwatch exits 1 when it reports a finding at or above --fail-on: a normal outcome here.
    found = frozenset({0, 1})
    tools = []
    for tree in (REPO, *others):  # other checkouts: before and after a change, in the same rounds
        mw = [*mirrorwatch_cmd(tree, installed), "scan", f, "--format", "json", "-q"]
        for j in ("2", "1"):
            name = (
                f"mirrorwatch scan -j {j}" if tree == REPO else f"mirrorwatch -j {j} ({tree.name})"
            )
            tools.append(Tool(name, [*mw, "-j", j], found, one_file=False, gzip=True, tree=tree,
                              installed=installed))  # fmt: skip
    if dask_address:
        mw = [*mirrorwatch_cmd(REPO, installed), "scan", f, "--format", "json", "-q"]
        tools.append(
            Tool(
                "mirrorwatch --cluster (2 workers)",
                [*mw, "--cluster", dask_address],
                found,
                one_file=False,
                gzip=True,
            )
        )
    if shutil.which("tcpdump"):
        tools.append(Tool("tcpdump -r", ["tcpdump", "-r", f, "-w", "/dev/null"]))
    if shutil.which("suricata"):
        # No rules (-S /dev/null loads only that empty file), logs into a throw-away directory.
        tools.append(
            Tool(
                "suricata -r, no rules",
                [
                    "suricata",
                    "-r",
                    f,
                    "-l",
                    "{tmp}",
                    "-S",
                    "/dev/null",
                    "-k",
                    "none",
                    "--runmode",
                    "single",
                ],
            )
        )
    if shutil.which("tshark"):
        tools.append(Tool("tshark -z io,phs", ["tshark", "-r", f, "-q", "-z", "io,phs"], gzip=True))
    readable = []
    for t in tools:
        if path.is_dir() and t.one_file:
            continue
        if path.suffix == ".gz" and not t.gzip:
            continue
        readable.append(t)
    return readable


def _cpu_seconds(pids: list[int]) -> float:
    """User + system seconds so far of running processes (for the Dask workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_once(tool: Tool, extra: list[int]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak tree MiB, error) of one run; ``extra`` processes (Dask workers)
    count in CPU and memory."""
    with tempfile.TemporaryDirectory(prefix="mwbench-") as tmp:
        argv = [a.replace("{tmp}", tmp) for a in tool.argv]
        # As a user runs it: no thread settings of the bench's own (the command sets its own).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if not tool.installed:
            env["PYTHONPATH"] = str(tool.tree)
        extra_cpu = _cpu_seconds(extra)
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=tool.tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            kib = sum(_rss_kib(p) for p in {*_tree(proc.pid), *extra})
            peak = max(peak, kib)
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime + _cpu_seconds(extra) - extra_cpu
        err = ""
        if proc.returncode not in tool.ok_codes:
            text = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            lines = [x for x in text.splitlines() if x.strip()]
            err = f"exit {proc.returncode}: {lines[-1][:70] if lines else ''}"
        if proc.stderr:
            proc.stderr.close()
        return wall, cpu, peak / 1024, err


class DaskCluster:
    """A scheduler and two single-threaded worker processes on this machine."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="mwbench-dask-")
        info = Path(self.dir.name) / "scheduler.json"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        self.procs = [
            subprocess.Popen(
                [
                    "dask",
                    "scheduler",
                    "--scheduler-file",
                    str(info),
                    "--port",
                    "0",
                    "--no-dashboard",
                ],
                **quiet,
            )
        ]
        while not info.exists():  # the scheduler writes the file once it listens
            time.sleep(0.1)
        self.procs.append(
            subprocess.Popen(
                [
                    "dask",
                    "worker",
                    "--scheduler-file",
                    str(info),
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                ],
                **quiet,
            )
        )
        from distributed import Client

        with Client(scheduler_file=str(info)) as client:
            client.wait_for_workers(2)
            self.address = client.scheduler.address
            self.worker_pids = list(client.run(os.getpid).values())

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            p.wait(30)
        self.dir.cleanup()


def bench(
    path: Path,
    rounds: int,
    cluster: DaskCluster | None,
    only: list[str],
    others: list[Path],
    installed: bool = False,
) -> None:
    t = time.perf_counter()
    packets = count_packets(path)
    size = sum(f.stat().st_size for f in capture_files(path))
    print(
        f"\n## {path.name}: {packets:,} packets, {size / 1e6:.0f} MB in "
        f"{len(capture_files(path))} file(s) (counted in {time.perf_counter() - t:.1f} s)"
    )
    tools = [
        x
        for x in tools_for(path, cluster and cluster.address, others, installed)
        if not only or any(o in x.name for o in only)
    ]
    results = {tool.name: Result() for tool in tools}
    for _ in range(max(1, rounds)):
        for tool in tools:  # interleaved
            res = results[tool.name]
            if res.failed:
                continue
            extra = cluster.worker_pids if cluster and "--cluster" in tool.argv else []
            wall, cpu, mib, err = run_once(tool, extra)
            if err:
                res.failed = err
                continue
            res.wall.append(wall)
            res.cpu.append(cpu)
            res.mib.append(mib)
    base = results.get("mirrorwatch scan -j 2")
    base_cpu = statistics.median(base.cpu) if base and base.cpu else None
    print("\n| tool | wall s | packets/s | CPU s | tree MiB | CPU × mirrorwatch -j 2 | runs |")
    print("|---|---|---|---|---|---|---|")
    for tool in tools:
        res = results[tool.name]
        if res.failed:
            print(f"| {tool.name} | failed: {res.failed} | | | | | |")
            continue
        wall, cpu, mib = (statistics.median(x) for x in (res.wall, res.cpu, res.mib))
        ratio = f"{cpu / base_cpu:.2f}" if base_cpu else "-"
        print(
            f"| {tool.name} | {wall:.2f} | {packets / wall / 1e3:,.0f} k | {cpu:.2f} | "
            f"{mib:.0f} | {ratio} | {len(res.wall)} |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("inputs", nargs="*", type=Path)
    ap.add_argument("--suite", action="store_true", help="every capture of make_capture --suite")
    ap.add_argument(
        "--suite-dir", type=Path, default=OUT,
        help="where make_capture --suite wrote them (the directory of its --out)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown")
    ap.add_argument("--dask", action="store_true", help="also scan on a local Dask cluster")
    ap.add_argument("--only", action="append", default=[], help="tools whose name has this")
    ap.add_argument(
        "--tree", action="append", type=Path, default=[],
        help="also run mirrorwatch from this checkout (e.g. before a change)",
    )  # fmt: skip
    ap.add_argument(
        "--installed", action="store_true",
        help="run each checkout's `mirrorwatch` as pip installs it, in a venv of its own",
    )  # fmt: skip
    args = ap.parse_args(argv)
    inputs: list[Path] = list(args.inputs)
    if args.suite:
        inputs += [args.suite_dir / name for name in SUITE]
    inputs = [p.resolve() for p in inputs or [DEFAULT_FILE]]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        print(
            f"not found: {', '.join(missing)}: make them with bench/make_capture.py",
            file=sys.stderr,
        )
        return 2
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"at start; {args.rounds} interleaved round(s), medians"
    )
    trees = [t.resolve() for t in args.tree]
    for tree in (REPO, *trees):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "detector")],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    cluster = DaskCluster() if args.dask else None
    try:
        for path in inputs:
            bench(path, args.rounds, cluster, args.only, trees, args.installed)
    finally:
        if cluster:
            cluster.close()
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
