"""Time the format prefilters inside a scan, decoder by decoder, and the whole scan.

    python bench/prefilters.py FILE [--rounds 3] [--tree DIR ...] [--top 12]

Each round scans FILE (``-j 1``, in a fresh process) and adds up the CPU seconds spent in
``PrefilterRoute._passed`` (routing the UDP and TCP payload rows and running the prefilters) and
in each decoder's ``prefilter``, with the rows each was given, beside the whole scan's.  With
several ``--tree`` checkouts of mirrorwatch, rounds are interleaved (every tree once, then again)
so that drift in the machine's load hits every tree alike; medians are printed last, and whether
every tree wrote the same findings (the flow hashes' salt is fixed).  It prints figures; it
asserts nothing.
"""

from __future__ import annotations

import functools
import statistics
from pathlib import Path

from child import (
    Figures,
    interleaved,
    print_findings_identical,
    run_in_tree,
    timed_scan,
    tree_arguments,
    trees_of,
)

# Run in the child, with the tree first on its path.
CHILD = timed_scan("""
from detector import prefilter_route
from detector.protocols.registry import all_decoders

spent["passed"] = 0.0
rows = spent["rows"] = {}

def timed(cls, original):
    def prefilter(self, head, length):
        c = cpu()
        out = original(self, head, length)
        spent[cls.__name__] = spent.get(cls.__name__, 0.0) + cpu() - c
        rows[cls.__name__] = rows.get(cls.__name__, 0) + len(length)
        return out
    return prefilter

for cls in {type(d) for d in all_decoders() if d.transport in ("udp", "tcp")}:
    if "prefilter" in vars(cls):
        cls.prefilter = timed(cls, vars(cls)["prefilter"])

passed = prefilter_route.PrefilterRoute._passed

def timed_passed(self, *args):
    c = cpu()
    out = list(passed(self, *args))
    spent["passed"] += cpu() - c
    return iter(out)

prefilter_route.PrefilterRoute._passed = timed_passed
""")

TOTALS = ("scan", "passed")


def _own(got: Figures) -> float:
    """The prefilters' own seconds: every figure but the totals."""
    return sum(v for k, v in got.items() if isinstance(v, float) and k not in TOTALS)


def main() -> None:
    ap = tree_arguments(__doc__)
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=12, help="decoders shown, costliest first")
    args = ap.parse_args()
    path = str(Path(args.file).resolve())
    runs = {
        str(tree): functools.partial(run_in_tree, tree, CHILD, [path]) for tree in trees_of(args)
    }
    got_all = interleaved(
        args.rounds,
        runs,
        lambda got: (
            f"prefilters {_own(got):.3f} s, routing and prefilters "
            f"{got['passed']:.3f} s, scan {got['scan']:.3f} s CPU"
        ),
    )
    for tree, got in got_all.items():
        names = {k for g in got for k, v in g.items() if isinstance(v, float)}
        med = {k: statistics.median(float(g.get(k, 0.0)) for g in got) for k in names}
        print(
            f"median {tree}: prefilters {_own(med):.3f} s, routing and prefilters "
            f"{med['passed']:.3f} s, of {med['scan']:.3f} s CPU "
            f"({100 * med['passed'] / med['scan']:.1f} %)"
        )
        costly = sorted((k for k in med if k not in TOTALS), key=lambda k: -med[k])
        for name in costly[: args.top]:
            given = got[0]["rows"].get(name, 0)
            print(f"    {name:28} {med[name]:.3f} s  {given:>9,} rows")
    print_findings_identical(got_all.values())


if __name__ == "__main__":
    main()
