"""Packet counts over time, for the link and for each finding's stream (the report's charts)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from detector.evidence import StreamEvidence

# At most this many bins in a chart: long captures get wider bins.
MAX_BINS = 600


@dataclass(repr=False, eq=False)
class Timeline:
    """Packets per fixed interval, as the engine counted them.

    ``link`` is every packet on the link per bin; ``streams`` maps a finding id to its stream's
    packets per bin (same bins).  Streams without counts are estimated from their samples."""

    start: float  # epoch seconds of the first bin
    bin_seconds: float
    link: list[int]
    streams: dict[str, list[int]] = field(default_factory=dict)


def build_timeline(
    link_seconds: Mapping[int, list[int]], evidence: Mapping[str, StreamEvidence]
) -> Timeline | None:
    """Bin the engine's per-second counts (link: second → [packets, bytes]; streams: their
    ``timeline``) into at most MAX_BINS bins."""
    if not link_seconds:
        return None
    first, last = min(link_seconds), max(link_seconds)
    width = max(1, math.ceil((last - first + 1) / MAX_BINS))
    bins = (last - first) // width + 1
    link = [0] * bins
    for sec, (packets, _bytes) in link_seconds.items():
        link[(sec - first) // width] += packets
    streams: dict[str, list[int]] = {}
    for fid, ev in evidence.items():
        if not ev.timeline:
            continue
        row = [0] * bins
        for sec, n in ev.timeline.items():
            if first <= sec <= last:
                row[(sec - first) // width] += n
        streams[fid] = row
    return Timeline(start=float(first), bin_seconds=float(width), link=link, streams=streams)
