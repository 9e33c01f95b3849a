"""Time the outer header decode and the row hashing alone, batch by batch.

    python bench/headers.py FILE... [--rounds 3] [--tree DIR ...] [--pure-python]

Each round reads every FILE with ``read_batches`` in a fresh process and, per batch, measures the
CPU seconds (user + system, of the calling thread) of ``decode_headers``, of ``row_keys_at``
over the IP rows and of ``payload_heads`` over the rows with a payload, as the engine calls them;
reading itself is not counted.  With several ``--tree`` checkouts rounds are interleaved (every
tree once, then again) so that drift in the machine's load hits every tree alike; medians are
printed last.
``--pure-python`` times each tree a second time with the compiled forms turned off
(``MIRRORWATCH_PURE_PYTHON=1``).  It prints figures; it asserts nothing.
"""

from __future__ import annotations

import functools
import statistics
from pathlib import Path

from child import interleaved, run_in_tree, tree_arguments, trees_of

# Run in the child, with the tree first on its path.
CHILD = """
import json, sys, time
import numpy as np
from detector.capture.reader import InputStats, open_stream, read_batches, reading
from detector.decode.headers import decode_headers, payload_heads
try:
    from detector.flows.table import row_keys_at
except ImportError:  # a tree from before it: the engine gathered the rows' columns first
    from detector.flows.table import row_keys

    def row_keys_at(h, rows):
        return row_keys(h.src[rows], h.dst[rows], h.sport[rows], h.dport[rows], h.proto[rows])

clock = time.thread_time  # this thread only: a gzip or stdin input is read by another
packets = 0
spent = {"decode": 0.0, "keys": 0.0, "heads": 0.0}
for path in sys.argv[1:]:
    stats = InputStats(path)
    stream = open_stream(path)
    for batch in reading(read_batches(stream, stats), stats):
        packets += len(batch)
        c0 = clock()
        h = decode_headers(batch)
        c1 = clock()
        rows = np.nonzero(h.ipver > 0)[0]
        c2 = clock()
        row_keys_at(h, rows)
        c3 = clock()
        picked = rows[h.paylen[rows] > 0]
        c4 = clock()
        payload_heads(batch, h, picked)
        c5 = clock()
        spent["decode"] += c1 - c0
        spent["keys"] += c3 - c2
        spent["heads"] += c5 - c4
    stream.close()
print(json.dumps({"packets": packets, **spent}))
"""
STAGES = ("decode", "keys", "heads")


def main() -> None:
    ap = tree_arguments(__doc__)
    ap.add_argument("files", nargs="+")
    ap.add_argument(
        "--pure-python",
        action="store_true",
        help="also time each tree with MIRRORWATCH_PURE_PYTHON=1 (numpy forms only)",
    )
    args = ap.parse_args()
    files = [str(Path(f).resolve()) for f in args.files]
    runs = {
        f"{tree}{' (pure Python)' if pure else ''}": functools.partial(
            run_in_tree, tree, CHILD, files, {"MIRRORWATCH_PURE_PYTHON": "1"} if pure else None
        )
        for tree in trees_of(args)
        for pure in ([False, True] if args.pure_python else [False])
    }
    got_all = interleaved(
        args.rounds,
        runs,
        lambda got: (
            f"{got['packets']:.0f} packets, cpu " + ", ".join(f"{s} {got[s]:.3f} s" for s in STAGES)
        ),
    )
    for name, got in got_all.items():
        med = {s: statistics.median(g[s] for g in got) for s in STAGES}
        per = 1e9 / got[0]["packets"] if got[0]["packets"] else 0.0
        figures = ", ".join(f"{s} {med[s]:.3f} s ({med[s] * per:.0f} ns/packet)" for s in STAGES)
        print(f"median {name}: {figures}, total {sum(med.values()):.3f} s")


if __name__ == "__main__":
    main()
