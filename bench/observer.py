"""Time the encrypted-copy observer and the copy matcher inside a scan, and the whole scan.

    python bench/observer.py FILE [--rounds 3] [--tree DIR ...] [--batch-rows N]

Each round scans FILE (``-j 1``, in a fresh process) and adds up the CPU seconds spent in
``encrypted.observe`` (candidates, host names, bytes per bin), in ``EncryptedCopies.settle``
(closing bins into the running sums) and in ``Engine._natives`` (sampling, fingerprinting and
remembering native packets for copy matching), beside the whole scan's.  With several ``--tree``
checkouts of mirrorwatch, rounds are interleaved (every tree once, then again) so that drift in
the machine's load hits every tree alike; medians are printed last, and whether every tree wrote
the same findings (the flow hashes' salt is fixed).  ``--batch-rows`` gives every tree the same
largest batch (``engine.MAX_BATCH_ROWS``), so that trees that cut batches differently are
compared on the same batches.  It prints figures; it asserts nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path

from child import (
    Figures,
    interleaved,
    medians,
    print_findings_identical,
    run_in_tree,
    timed_scan,
    tree_arguments,
    trees_of,
)

# Run in the child, with the tree first on its path.
CHILD = timed_scan("""
from detector import engine

if sys.argv[2] != "0":
    engine.MAX_BATCH_ROWS = int(sys.argv[2])
spent.update(observe=0.0, settle=0.0, natives=0.0)
observe, settle = engine.encrypted.observe, engine.encrypted.EncryptedCopies.settle
natives = engine.Engine._natives

def timed_observe(*args):
    c = cpu()
    observe(*args)
    spent["observe"] += cpu() - c

def timed_settle(self):
    c = cpu()
    settle(self)
    spent["settle"] += cpu() - c

def timed_natives(self, *args):
    c = cpu()
    natives(self, *args)
    spent["natives"] += cpu() - c

engine.encrypted.observe = timed_observe
engine.Engine._natives = timed_natives
engine.encrypted.EncryptedCopies.settle = timed_settle
""")


def run_once(tree: Path, path: str, batch_rows: int) -> Figures:
    return run_in_tree(tree, CHILD, [str(Path(path).resolve()), str(batch_rows)])


def main() -> None:
    ap = tree_arguments(__doc__)
    ap.add_argument("file")
    ap.add_argument(
        "--batch-rows", type=int, default=0, help="the largest batch in every tree (0: its own)"
    )
    args = ap.parse_args()
    runs = {
        str(tree): functools.partial(run_once, tree, args.file, args.batch_rows)
        for tree in trees_of(args)
    }
    got_all = interleaved(
        args.rounds,
        runs,
        lambda got: (
            f"observe {got['observe']:.3f} s, settle {got['settle']:.3f} s, natives "
            f"{got['natives']:.3f} s, scan {got['scan']:.3f} s CPU"
        ),
    )
    for tree, got in got_all.items():
        med = medians(got, ("observe", "settle", "natives", "scan"))
        stage = med["observe"] + med["settle"]
        print(
            f"median {tree}: observe {med['observe']:.3f} s + settle {med['settle']:.3f} s = "
            f"{stage:.3f} s, natives {med['natives']:.3f} s, of {med['scan']:.3f} s CPU "
            f"({100 * (stage + med['natives']) / med['scan']:.1f} %)"
        )
    print_findings_identical(got_all.values())


if __name__ == "__main__":
    main()
