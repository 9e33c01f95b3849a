"""Time the capture reader alone: the record walk that turns a file into packet batches.

    python bench/walk.py FILE... [--rounds 3] [--tree DIR ...] [--python-walk]

Each round reads every FILE with ``read_batches`` (no engine) in a fresh process and prints the
CPU seconds (user + system) of the read loop, wall seconds and packets/s.  With several
``--tree`` checkouts of mirrorwatch, rounds are interleaved (every tree once, then again) so
that drift in the machine's load hits every tree alike; medians are printed last.
``--python-walk`` times each tree a second time with the compiled record walk turned off.  It prints
figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from child import run_in_tree

REPO = Path(__file__).resolve().parent.parent

# Run in the child, with the tree first on its path.
CHILD = """
import json, resource, sys, time
from detector.capture.reader import InputStats, open_stream, read_batches, reading

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

packets = 0
c0, w0 = cpu(), time.perf_counter()
for path in sys.argv[1:]:
    stats = InputStats(path)
    stream = open_stream(path)
    for batch in reading(read_batches(stream, stats), stats):
        packets += len(batch)
    stream.close()
print(json.dumps({"packets": packets, "cpu": cpu() - c0, "wall": time.perf_counter() - w0}))
"""


def run_once(tree: Path, files: list[str], python_walk: bool = False) -> dict[str, float]:
    env = {"MIRRORWATCH_PURE_PYTHON": "1"} if python_walk else None
    return run_in_tree(tree, CHILD, [str(Path(f).resolve()) for f in files], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tree", action="append", type=Path, help="a mirrorwatch checkout")
    ap.add_argument(
        "--python-walk",
        action="store_true",
        help="also time each tree with MIRRORWATCH_PURE_PYTHON=1 (the walk without the compiled "
        "extension)",
    )
    args = ap.parse_args()
    trees = [t.resolve() for t in args.tree or [REPO]]
    modes = [False, True] if args.python_walk else [False]
    runs: dict[str, list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for tree in trees:
            for python_walk in modes:
                got = run_once(tree, args.files, python_walk)
                name = f"{tree}{' (Python walk)' if python_walk else ''}"
                runs.setdefault(name, []).append(got)
                print(
                    f"round {r + 1} {name}: {got['packets']:.0f} packets, "
                    f"cpu {got['cpu']:.3f} s, wall {got['wall']:.3f} s",
                    flush=True,
                )
    for tree, got in runs.items():
        cpu = statistics.median(g["cpu"] for g in got)
        wall = statistics.median(g["wall"] for g in got)
        pps = got[0]["packets"] / wall if wall else 0.0
        print(f"median {tree}: cpu {cpu:.3f} s, wall {wall:.3f} s, {pps / 1e6:.2f} M packets/s")


if __name__ == "__main__":
    main()
