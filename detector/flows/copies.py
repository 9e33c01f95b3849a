"""Match copies to their originals, and find unencapsulated copies (iptables TEE, nft dup).

Native packets are fingerprinted a batch at once; a sample of them (by fingerprint, so the same
packets are kept wherever they appear) is remembered for a time window.  A carried copy inside a
mirror stream is looked up there: a match proves the stream carries copies and gives the delay.
The same IP packet seen twice natively, addressed to two different L2 destinations within a
short time, is a plain copy re-sent to a collector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.flows.fingerprint import RANK_BITS

# Natives are remembered this long (seconds of capture time) for matching.
WINDOW = 10.0
# A second sighting of one packet within this time, to another L2 destination, is a plain copy.
TEE_WINDOW = 0.5
# Natives remembered at most; past it the sample narrows (one packet in 2, then 4, 8, 16).
MAX_NATIVES = 150_000
MAX_PENDING = 100_000
MAX_LEVEL = RANK_BITS

# A remembered native: (time, L2 destination, rank of its fields).
Native = tuple[float, int, int]


@dataclass
class PlainCopies:
    """Packets seen twice natively: the second sighting went to another L2 destination."""

    l2src: int
    l2dst: int
    first_seen: float
    last_seen: float
    matches: int = 0
    # Scaled by the sampling in force when each was seen.
    estimated_packets: int = 0
    estimated_bytes: int = 0
    delays: list[float] = field(default_factory=list)
    # (src ip, dst ip) of the copied packets, with counts.
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    # Packet bytes of a few copies for evidence captures.
    samples: list[tuple[float, bytes]] = field(default_factory=list)


@dataclass
class CopyMatch:
    """Copy matching results for one stream."""

    checked: int = 0
    matched: int = 0
    delays: list[float] = field(default_factory=list)


class CopyMatcher:
    def __init__(self) -> None:
        self.natives: dict[int, Native] = {}
        self.pending: list[tuple[int, float, int]] = []  # (fp, ts, stream key), unmatched copies
        self.streams: dict[int, CopyMatch] = {}
        self.plain: dict[tuple[int, int], PlainCopies] = {}
        self.level = 0  # the sample keeps ranks below 2 ** (RANK_BITS - level)
        self._pruned_at = 0.0

    @property
    def keep_below(self) -> int:
        return 1 << (RANK_BITS - self.level)

    def add_natives(
        self,
        fps: npt.NDArray[np.uint64],
        ranks: npt.NDArray[np.uint64],
        ts: npt.NDArray[np.float64],
        l2dst: npt.NDArray[np.int64],
        l2src: npt.NDArray[np.int64],
        wire: npt.NDArray[np.int64],
        addrs: Callable[[int], tuple[str, str]],
        packet: Callable[[int], bytes],
    ) -> None:
        """Remember a batch of native packets (already in the sample).  ``addrs`` and ``packet``
        give row i's addresses and bytes, asked for only when a plain copy is seen."""
        natives = self.natives
        scale = 1 << self.level
        for i, (fp, rank, t, dmac, smac) in enumerate(
            zip(fps.tolist(), ranks.tolist(), ts.tolist(), l2dst.tolist(), l2src.tolist(),
                strict=True)
        ):  # fmt: skip
            prev = natives.get(fp)
            if prev is None:
                natives[fp] = (t, dmac, rank)
                continue
            if dmac != prev[1] and dmac and t - prev[0] <= TEE_WINDOW:
                key = (smac, dmac)
                pc = self.plain.get(key)
                if pc is None:
                    pc = self.plain[key] = PlainCopies(smac, dmac, t, t)
                pc.matches += 1
                pc.estimated_packets += scale
                pc.estimated_bytes += int(wire[i]) * scale
                pc.last_seen = max(pc.last_seen, t)
                pc.first_seen = min(pc.first_seen, t)
                if len(pc.delays) < 1000:
                    pc.delays.append(t - prev[0])
                pair = addrs(i)
                if pair in pc.pairs or len(pc.pairs) < 4096:
                    pc.pairs[pair] = pc.pairs.get(pair, 0) + scale
                if len(pc.samples) < 200:
                    pc.samples.append((t, packet(i)))
        if len(ts):
            self._prune(float(ts.max()))

    def check_copy(self, stream: int, fp: int, ts: float) -> None:
        """A carried copy (already in the sample) of stream ``stream``."""
        m = self.streams.setdefault(stream, CopyMatch())
        m.checked += 1
        prev = self.natives.get(fp)
        if prev is not None:
            m.matched += 1
            if len(m.delays) < 1000:
                m.delays.append(ts - prev[0])
        elif len(self.pending) < MAX_PENDING:
            self.pending.append((fp, ts, stream))

    def settle(self) -> None:
        """Match pending copies against natives that arrived after them."""
        still = []
        for fp, ts, stream in self.pending:
            prev = self.natives.get(fp)
            if prev is not None:
                m = self.streams[stream]
                m.matched += 1
                if len(m.delays) < 1000:
                    m.delays.append(ts - prev[0])
            else:
                still.append((fp, ts, stream))
        self.pending = still

    def _prune(self, now: float) -> None:
        full = len(self.natives) >= MAX_NATIVES
        if now - self._pruned_at < WINDOW and not full:
            return
        self.settle()
        self._pruned_at = now
        horizon = now - WINDOW
        self.natives = {k: v for k, v in self.natives.items() if v[0] >= horizon}
        while len(self.natives) >= MAX_NATIVES // 2 and self.level < MAX_LEVEL:
            # Too much to remember: narrow the sample and forget what falls out of it.
            self.level += 1
            bound = self.keep_below
            self.natives = {k: v for k, v in self.natives.items() if v[2] < bound}
        if len(self.natives) >= MAX_NATIVES:
            oldest = sorted(self.natives.items(), key=lambda kv: kv[1][0])
            self.natives = dict(oldest[len(oldest) // 2 :])
        self.pending = [p for p in self.pending if p[1] >= horizon]
