"""Time the flow accounting alone, batch by batch: the flow table and the host set.

    python bench/flows.py FILE... [--rounds 3] [--tree DIR ...] [--rows N]

Each round reads every FILE with ``read_batches`` in a fresh process, decodes each batch's outer
headers and hashes its IP rows (not counted), then measures the CPU seconds (user + system, of
the calling thread) of what the engine does with them per slice of at most ``--rows`` rows (the
engine's largest slice by default; a few hundred is what a live capture gives): the flow table's
``update``, the host set's additions of the new flows' hosts, and the table's ``expire`` where
the engine calls it (every 10 s of capture time, or when the table is full), with the default
limits.  With several ``--tree`` checkouts rounds are interleaved (every tree once, then
again) so that drift in the machine's load hits every tree alike; medians are printed last
(``MIRRORWATCH_PURE_PYTHON=1`` in the environment times the numpy forms).  It prints figures;
it asserts nothing.
"""

from __future__ import annotations

import functools
import os
import statistics
from pathlib import Path

from child import Figures, interleaved, run_in_tree, tree_arguments, trees_of

# Run in the child, with the tree first on its path.
CHILD = """
import json, sys, time
import numpy as np
from detector.capture.reader import InputStats, open_stream, read_batches, reading
from detector.decode.headers import decode_headers
from detector.engine import MAX_BATCH_ROWS
from detector.flows.groups import distinct
from detector.flows import table
from detector.flows.table import FlowTable, row_keys_at
from detector.limits import Limits

def new_hosts():
    # The host set the engine makes (a tree from before the compiled one: the sorted set).
    return table.key_set(limits.hosts) if hasattr(table, "key_set") else table.KeySet()

def add_hosts(hosts, k, rows):
    if hasattr(hosts, "add_rows"):
        hosts.add_rows(k.src_host, k.dst_host, rows)
    else:
        hosts.add(distinct(np.concatenate([k.src_host[rows], k.dst_host[rows]])))

slice_rows = int(sys.argv[1]) or MAX_BATCH_ROWS
limits = Limits()
flows, hosts = FlowTable(max_flows=limits.flows), new_hosts()
clock = time.thread_time  # this thread only: a gzip or stdin input is read by another
packets = 0
last_expire = 0.0
spent = {"update": 0.0, "hosts": 0.0, "expire": 0.0}
for path in sys.argv[2:]:
    stats = InputStats(path)
    stream = open_stream(path)
    for batch in reading(read_batches(stream, stats), stats):
        packets += len(batch)
        h = decode_headers(batch)
        ip = np.nonzero(h.ipver > 0)[0]
        for a in range(0, len(ip), slice_rows):
            rows = ip[a : a + slice_rows]
            if hosts.count + 2 * len(rows) > limits.hosts:
                hosts = new_hosts()
            k = row_keys_at(h, rows)
            proto, wire, ts = h.proto[rows], batch.wirelen[rows], batch.ts[rows]
            c0 = clock()
            _, new_rows = flows.update(k.flow, k.direction, proto, wire, ts)
            c1 = clock()
            add_hosts(hosts, k, new_rows)
            c2 = clock()
            last = float(ts.max())
            if last - last_expire > 10 or flows.full():
                last_expire = last
                flows.expire(last, keep=set())
            c3 = clock()
            spent["update"] += c1 - c0
            spent["hosts"] += c2 - c1
            spent["expire"] += c3 - c2
    stream.close()
print(json.dumps({"packets": packets, "flows": flows.total_flows, **spent}))
"""
STAGES = ("update", "hosts", "expire")


def main() -> None:
    ap = tree_arguments(__doc__)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rows", type=int, default=0, help="rows a slice (the engine's by default)")
    args = ap.parse_args()
    child_args = [str(args.rows)] + [str(Path(f).resolve()) for f in args.files]
    pure = {"MIRRORWATCH_PURE_PYTHON": os.environ.get("MIRRORWATCH_PURE_PYTHON", "")}
    trees = {str(tree): functools.partial(run_in_tree, tree, CHILD, child_args, pure)
             for tree in trees_of(args)}  # fmt: skip

    def show(got: Figures) -> str:
        spent = ", ".join(f"{s} {got[s]:.3f} s" for s in STAGES)
        return f"{got['packets']:.0f} packets, {got['flows']:.0f} flows, cpu {spent}"

    for tree, got in interleaved(args.rounds, trees, show).items():
        med = {s: statistics.median(g[s] for g in got) for s in STAGES}
        ns = 1e9 / max(got[0]["packets"], 1)
        each = ", ".join(f"{s} {med[s]:.3f} s ({med[s] * ns:.0f} ns/packet)" for s in STAGES)
        print(f"median {tree}: {each}, total {sum(med.values()):.3f} s")


if __name__ == "__main__":
    main()
