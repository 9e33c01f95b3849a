"""Every number that decides what the engine can see, in one place.

The engine cannot afford Python work for every packet, so it samples, and it stops looking at
flows that never showed a known format.  Each such shortcut is a blind spot an operator should
know about (docs/how-it-works.md, "What mirrorwatch cannot see") and may tune in the config file
(``[detection]``, detector.config).  No shortcut is permanent: a flow set aside is still probed
now and then, so a stream that starts with junk is found a few packets after its first real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.flows.table import U64

# An odd 64-bit multiplier (the golden ratio's bits) that spreads low bits upward.
_SPREAD = U64(0x9E3779B97F4A7C15)


@dataclass(repr=False, eq=False)
class Detection:
    """How much of each flow and stream the engine decodes, samples or sets aside."""

    # Every packet of a new stream is decoded up to this many, then a sample...
    full_decode: int = 128
    # ...one in `sample_stride` packets, and one in `late_sample_stride` once the stream has
    # `late_sample_after` decoded packets (the evidence has converged by then).
    sample_stride: int = 16
    late_sample_after: int = 512
    late_sample_stride: int = 256
    # Flow exports: every template at first, then one packet in this many (records are weighted).
    flow_export_stride: int = 4
    # A directed flow whose candidate packets failed this many times without one success is set
    # aside: only one of its packets in `reject_probe_stride` is still tried (a second chance
    # that costs 1/stride of the work).
    reject_after: int = 6
    reject_probe_stride: int = 16
    # Payload packets of a UDP / TCP flow that no format's prefilter accepted before its later
    # packets are only probed, one in `quiet_probe_stride`.  A handover stream joined mid-PDU
    # shows a PDU start within a few segments (a PDU carries one packet, or a record of one);
    # most TCP flows are shorter than 24 packets, so a larger number prefilters nearly all.
    quiet_after_udp: int = 8
    quiet_after_tcp: int = 8
    quiet_probe_stride: int = 16
    # Verdict: a stream whose format has no magic number is reported only when at least this
    # share of its decoded packets validated (a stream is judged by its share, not its best).
    min_validated_share: float = 0.5

    def stride(self, decoded: int) -> int:
        """Decode one packet in this many, for a stream with ``decoded`` packets decoded."""
        if decoded < self.full_decode:
            return 1
        return self.sample_stride if decoded < self.late_sample_after else self.late_sample_stride

    def quiet_after(self, l4proto: int) -> int:
        return self.quiet_after_tcp if l4proto == 6 else self.quiet_after_udp


def probe(
    keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.float64], stride: int
) -> npt.NDArray[np.bool_]:
    """About one row in ``stride`` per flow, picked by a hash of the flow key and the packet's
    timestamp (its bits: any value, NaN included, hashes): spread over the flow's life, not
    predictable from its content."""
    if stride <= 1:
        return np.ones(len(keys), dtype=np.bool_)
    bits = np.ascontiguousarray(ts, dtype=np.float64).view(U64)
    # The flow keys are salted hashes already: one multiply carries every bit of the time
    # into the high bits of the product, which pick the probe when they are below the share
    # (a full mix of each costs several times more).
    with np.errstate(over="ignore"):
        return (keys ^ bits) * _SPREAD < U64(((1 << 64) - 1) // stride)


# The values named in the docs table (docs/how-it-works.md) and settable in [detection].
FIELDS = tuple(Detection.__dataclass_fields__)
