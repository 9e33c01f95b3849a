"""Time the work on packets of streams already found (mirrors, flow exports) inside a scan.

    python bench/known.py FILE [--rounds 3] [--tree DIR ...]

Each round scans FILE (``-j 1``, in a fresh process) and adds up the CPU seconds spent in
``Engine._schedule`` (counting a batch's rows of known streams and picking those to decode) and
``Engine._decode_known`` (decoding them: the decoders' checks, the carried frames, the flow
records, the evidence they add to), beside the whole scan's, and counts the rows decoded.  With
several ``--tree`` checkouts of mirrorwatch, rounds are interleaved (every tree once, then
again) so that drift in the machine's load hits every tree alike; medians are printed last, and
whether every tree wrote the same findings (the flow hashes' salt is fixed).  It prints figures;
it asserts nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import child

# Run in a fresh process, with the tree first on its path.
CHILD = child.timed_scan("""
from detector import engine

spent.update(schedule=0.0, decode=0.0, rows=0)
schedule, decode_known = engine.Engine._schedule, engine.Engine._decode_known

def timed_schedule(self, *args):
    c = cpu()
    items = schedule(self, *args)
    spent["schedule"] += cpu() - c
    return items

def timed_decode(self, v, items):
    c = cpu()
    decode_known(self, v, items)
    spent["decode"] += cpu() - c
    spent["rows"] += len(items)

engine.Engine._schedule = timed_schedule
engine.Engine._decode_known = timed_decode
""")


def main() -> None:
    ap = child.tree_arguments(__doc__)
    ap.add_argument("file")
    args = ap.parse_args()
    path = str(Path(args.file).resolve())
    runs = {
        str(tree): functools.partial(child.run_in_tree, tree, CHILD, [path])
        for tree in child.trees_of(args)
    }
    got_all = child.interleaved(
        args.rounds,
        runs,
        lambda got: (
            f"schedule {got['schedule']:.3f} s, decode_known {got['decode']:.3f} s "
            f"({got['rows']} rows), scan {got['scan']:.3f} s CPU"
        ),
    )
    for tree, got in got_all.items():
        med = child.medians(got, ("schedule", "decode", "rows", "scan"))
        stage = med["schedule"] + med["decode"]
        print(
            f"median {tree}: schedule {med['schedule']:.3f} s + decode_known "
            f"{med['decode']:.3f} s = {stage:.3f} s "
            f"({1e6 * med['decode'] / max(1.0, med['rows']):.1f} us a decoded row), of "
            f"{med['scan']:.3f} s CPU ({100 * stage / med['scan']:.1f} %)"
        )
    child.print_findings_identical(got_all.values())


if __name__ == "__main__":
    main()
