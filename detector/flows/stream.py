"""One followed stream, and one aggregate of the streams a budget folded together.

A ``Stream`` holds everything the engine keeps for one directed outer flow it recognised: the
decoder and what that decoder remembers (templates, a PDU half read), where the stream is in its
sampling stride, its TCP reassembly buffer, its copy-matching tally, the budget groups it counts
in, and the evidence it gathers.  Forgetting a stream (idle, or folded into an aggregate) is
dropping this one object after giving back what it held against the engine's budgets.  The
evidence itself is plain data: it pickles as it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from detector.evidence import SampleBudget, StreamEvidence
from detector.flows.copies import CopyMatch
from detector.flows.tcp import TcpBuffer, TcpReassembler
from detector.protocols.base import Decoder
from detector.protocols.templates import TemplateCache

# A budget group: ("to", family, collector, port, transport), ("pair", protocol, src, dst) or
# ("all", protocol, transport).
Group = tuple[object, ...]
# Exporters counted per aggregate before the table is pruned to the busiest half.
MAX_EXPORTERS_COUNTED = 1024


def release_state(state: object | None) -> None:
    """Give a decoder state's templates back to their budget."""
    if isinstance(state, TemplateCache):
        state.release()


@dataclass(repr=False, eq=False)
class Stream:
    """What the engine keeps for one stream it follows; the evidence is what it hands on."""

    evidence: StreamEvidence
    decoder: Decoder
    state: object | None
    # Position in the sampling stride (packets past the full-decode budget).
    phase: int = 0
    # Packets of the stream decoded by the other engines of a scan cut in parts: it is sampled
    # as if this engine had decoded them too.
    decoded_before: int = 0
    tcp: TcpBuffer | None = None
    # Carried copies matched to their originals; None where nothing carried is a copy.
    copies: CopyMatch | None = None
    # The budget groups the stream is kept in (the collector group last).
    groups: list[Group] = field(default_factory=list)

    @property
    def key(self) -> int:
        return self.evidence.key

    def restart(self, state: object | None) -> None:
        """Start the decoder afresh (bytes were lost, or the old state broke)."""
        release_state(self.state)
        self.state = state

    def release(self, tcp: TcpReassembler) -> None:
        """Give back the templates and waiting TCP bytes the stream holds."""
        release_state(self.state)
        self.state = None
        tcp.forget(self.tcp)
        self.tcp = None

    def drop_samples(self, samples: SampleBudget) -> None:
        """The stream's evidence leaves the engine: its samples leave the budget."""
        samples.used -= self.evidence.sample_bytes()


@dataclass(repr=False, eq=False)
class Aggregate:
    """The streams of one budget group past its limit, as one stream, with the exporters that
    sent them."""

    evidence: StreamEvidence
    exporters: Counter[str] = field(default_factory=Counter)

    def count_exporter(self, src: str, packets: int) -> None:
        c = self.exporters
        c[src] += packets
        if len(c) > MAX_EXPORTERS_COUNTED:
            # Keep the busiest half; the number folded is counted apart.
            self.exporters = Counter(dict(c.most_common(MAX_EXPORTERS_COUNTED // 2)))
