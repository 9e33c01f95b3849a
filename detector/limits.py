"""Memory budgets of one engine, set by configuration (``[limits]``), never by the input.

Whoever can put a packet on the watched link writes mirrorwatch's input, so every table that
grows with what the packets say has a budget here.  When one is reached the engine sheds the
least useful state (see docs/config.md), counts what it shed (``shed_*`` in the report's stats
and the live summaries) and marks the findings it cut (``evidence.truncated``).

The defaults keep the whole process tree of a scan (two worker processes) under 256 MiB for any
input; every figure is per engine, and a scan runs one engine per worker process.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

# glibc's mallopt parameters, and the values set by steady_heap().
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# A batch's columns and blocks (up to 32,768 rows: 8 bytes, 4 hashes or 4 address words a
# row) come from the heap, reused batch after batch: in a mapping of their own each is faulted
# in page by page every batch (at 256 KiB, a capture of tiny packets spent a third of its CPU
# on page faults; 2 MiB takes 60 % of those faults away for 6 MiB more at peak).  Keeping more
# free heap top than 4 MiB would take more faults away, but that is memory each process holds.
MMAP_THRESHOLD = 2 << 20
TRIM_THRESHOLD = 4 << 20


def steady_heap() -> bool:
    """Keep freed memory going back to the system (glibc; elsewhere nothing is done).

    By default glibc raises its mmap threshold to the size of each large block freed, after
    which the engine's per-batch arrays come from a heap that is given back only from its top:
    fragments of it stay resident (about 15 MiB per engine on a capture of tiny packets).  Fixed
    thresholds keep those arrays in their own mappings, unmapped when freed."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@dataclass(repr=False, eq=False)
class Limits:
    """The budgets that bound the engine's memory whatever the input."""

    # Streams (one direction of an outer flow recognised as a format) held with their evidence.
    streams: int = 2048
    # Streams of one format toward one collector (address, port) kept apart; past this they
    # are folded into one aggregate stream that counts its exporters and keeps the busiest.
    streams_per_collector: int = 32
    # Port-only tunnel streams (NAT-T, WireGuard, OpenVPN, MPLS in UDP...) kept apart per host
    # pair and format; the others are folded into one stream per pair.
    tunnel_streams_per_pair: int = 4
    # Flows in the flow table, and distinct hosts counted exactly (past it, counting restarts).
    flows: int = 65_536
    hosts: int = 131_072
    # Flow-export templates: per stream, fields of one template, fields over every stream.
    templates_per_stream: int = 1024
    template_fields: int = 512
    template_fields_total: int = 262_144
    # TCP reassembly: bytes waiting for a gap to fill, per stream and over every stream.
    tcp_stream_bytes: int = 1 << 20
    tcp_total_bytes: int = 16 << 20
    # IP fragments waiting for their datagram: pieces (zero-length ones too) and bytes.
    fragment_packets: int = 16_384
    fragment_bytes: int = 16 << 20
    # Evidence packets kept per stream (outer and carried) and their bytes over every stream.
    samples_per_stream: int = 200
    sample_bytes: int = 16 << 20
    # Seconds of the link's packet timeline kept (the most recent), and cells of per-second
    # counts over every stream's timeline (each stream gets a share, at most timeline_seconds;
    # past it a stream's timeline is kept at a coarser step: 2 s, 4 s...).
    timeline_seconds: int = 86_400
    timeline_cells: int = 65_536
    # Copy matching: native packets remembered (past it the sample narrows), carried copies
    # waiting for their original, and L2 (source, destination) pairs of plain copies counted.
    copy_natives: int = 122_880
    copy_pending: int = 100_000
    plain_copies: int = 10_000
    # Findings a live watch remembers having written.
    live_findings: int = 4096
