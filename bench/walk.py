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

import functools
import statistics
from pathlib import Path

from child import Figures, interleaved, run_in_tree, tree_arguments, trees_of

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


def run_once(tree: Path, files: list[str], python_walk: bool = False) -> Figures:
    env = {"MIRRORWATCH_PURE_PYTHON": "1"} if python_walk else None
    return run_in_tree(tree, CHILD, [str(Path(f).resolve()) for f in files], env)


def main() -> None:
    ap = tree_arguments(__doc__)
    ap.add_argument("files", nargs="+")
    ap.add_argument(
        "--python-walk",
        action="store_true",
        help="also time each tree with MIRRORWATCH_PURE_PYTHON=1 (the walk without the compiled "
        "extension)",
    )
    args = ap.parse_args()
    runs = {
        f"{tree}{' (Python walk)' if python_walk else ''}": functools.partial(
            run_once, tree, args.files, python_walk
        )
        for tree in trees_of(args)
        for python_walk in ([False, True] if args.python_walk else [False])
    }
    got_all = interleaved(
        args.rounds,
        runs,
        lambda got: (
            f"{got['packets']:.0f} packets, cpu {got['cpu']:.3f} s, wall {got['wall']:.3f} s"
        ),
    )
    for tree, got in got_all.items():
        cpu = statistics.median(g["cpu"] for g in got)
        wall = statistics.median(g["wall"] for g in got)
        pps = got[0]["packets"] / wall if wall else 0.0
        print(f"median {tree}: cpu {cpu:.3f} s, wall {wall:.3f} s, {pps / 1e6:.2f} M packets/s")


if __name__ == "__main__":
    main()
