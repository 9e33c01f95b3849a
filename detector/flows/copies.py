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

from detector.flows.fingerprint import COPIES, RANK_BITS, use_compiled
from detector.flows.table import KeyIndex

# Natives are remembered this long (seconds of capture time) for matching.
WINDOW = 10.0
# A second sighting of one packet within this time, to another L2 destination, is a plain copy.
TEE_WINDOW = 0.5
# Natives remembered at most, carried copies waiting for their original, and L2 pairs counted
# as plain copies: the defaults of [limits] copy_natives, copy_pending and plain_copies.  Past
# MAX_NATIVES the sample narrows (one packet in 2, then 4, 8, 16).
MAX_NATIVES = 122_880
MAX_PENDING = 100_000
MAX_PLAIN = 10_000
# A one-way duplicate stream is kept when this share of its packets is not already explained by
# a two-way one.
PLAIN_UNEXPLAINED = 0.2
MAX_LEVEL = RANK_BITS
# Natives added to the sample per second of capture time, at most (the sample narrows past it).
TARGET_RATE = 6000
# Natives remembered since the index was last sorted whole, at most (see _NativeIndex).
RECENT_KEYS = 8192


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
    # Fingerprints of the duplicated packets (bounded), to tell which streams explain which.
    fps: set[int] = field(default_factory=set)

    def both_ways(self) -> bool:
        """Copies of both directions of some conversation went to this destination."""
        return any((b, a) in self.pairs for a, b in self.pairs)


@dataclass(repr=False, eq=False)
class CopyMatch:
    """Copy matching results for one stream (the stream holds it; copies waiting for their
    original hold it too, so a stream that is gone meanwhile is no error)."""

    checked: int = 0
    matched: int = 0
    delays: list[float] = field(default_factory=list)


@dataclass(repr=False, eq=False, slots=True)
class _Natives:
    """One batch of sampled native packets, as ``CopyMatcher.add_natives`` was given them."""

    fps: npt.NDArray[np.uint64]
    ranks: npt.NDArray[np.uint64]
    ts: npt.NDArray[np.float64]
    l2dst: npt.NDArray[np.int64]
    l2src: npt.NDArray[np.int64]
    wire: npt.NDArray[np.int64]
    addrs: Callable[[int], tuple[str, str]]
    packet: Callable[[int], bytes]


@dataclass(repr=False, eq=False, slots=True)
class _Match:
    """A batch of natives against those remembered: the new fingerprints (ascending) with their
    ids and first rows, and the sightings that may be copies: (row, id) of natives remembered,
    in row order, then (row, first row) of new ones the batch holds more than once."""

    new_ids: npt.NDArray[np.int64]
    new_keys: npt.NDArray[np.uint64]
    firsts: npt.NDArray[np.int64]
    before: list[tuple[int, int]]
    now: list[tuple[int, int]]


class _NativeIndex:
    """Fingerprints → ids of the natives remembered, in two sorted parts: those of the last
    rebuild, and those added since.  A batch's new fingerprints are merged into the small recent
    part; the two are merged once it holds RECENT_KEYS, so a batch costs work in proportion to
    the recent part, not to everything remembered."""

    def __init__(self) -> None:
        self.settled = KeyIndex()  # ids 0 .. settled.count - 1
        self.recent = KeyIndex()  # ids from settled.count on, less settled.count

    @property
    def count(self) -> int:
        return self.settled.count + self.recent.count

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Ids of ``keys``, -1 where absent."""
        ids = self.settled.lookup(keys)
        if self.recent.count:
            miss = np.nonzero(ids < 0)[0]
            more = self.recent.lookup(keys[miss])
            ids[miss] = np.where(more >= 0, more + self.settled.count, -1)
        return ids

    def lookup_or_add(
        self, keys: npt.NDArray[np.uint64], compiled: bool = use_compiled
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Ids of ``keys``, sorted and distinct (the absent ones get the next ids, in order),
        and which were added: one compiled pass where built (``compiled``), else numpy."""
        if compiled:
            return self._lookup_or_add_compiled(keys)
        ids = self.settled.lookup(keys)
        miss = np.nonzero(ids < 0)[0]
        more, fresh = self.recent.lookup_or_add(keys[miss])
        ids[miss] = more + self.settled.count
        added = np.zeros(len(keys), np.bool_)
        added[miss] = fresh
        return ids, added

    def _lookup_or_add_compiled(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        assert COPIES is not None, "the compiled copy loops are not built"
        recent, room = self.recent, self.recent.count + len(keys)
        ids, added = np.empty(len(keys), np.int64), np.empty(len(keys), np.bool_)
        merged_keys, merged_ids = np.empty(room, np.uint64), np.empty(room, np.int64)
        column = np.ascontiguousarray
        count = COPIES.index_add(
            self.settled.keys, self.settled.ids, recent.keys, recent.ids,
            column(keys, dtype=np.uint64), ids, added, merged_keys, merged_ids,
        )  # fmt: skip
        recent.keys, recent.ids, recent.count = merged_keys[:count], merged_ids[:count], count
        return ids, added

    def settle(self, keys: npt.NDArray[np.uint64], compiled: bool = use_compiled) -> None:
        """Merge the recent part into the settled one when it is full; ``keys`` holds every
        remembered key at its id.  Both parts are sorted already: one compiled merge where
        built (``compiled``), else the settled part adds the recent keys in the order of their
        ids."""
        if self.recent.count < RECENT_KEYS:
            return
        settled, recent = self.settled, self.recent
        if compiled:
            assert COPIES is not None, "the compiled copy loops are not built"
            total = settled.count + recent.count
            merged_keys, merged_ids = np.empty(total, np.uint64), np.empty(total, np.int64)
            COPIES.index_merge(
                settled.keys, settled.ids, recent.keys, recent.ids, merged_keys, merged_ids
            )
            settled.keys, settled.ids, settled.count = merged_keys, merged_ids, total
        else:
            settled.lookup_or_add(keys[settled.count : self.count])
        self.recent = KeyIndex()

    def rebuild(self, keys: npt.NDArray[np.uint64]) -> None:
        """Keep only ``keys`` (distinct), numbered 0..len-1 in the given order."""
        self.settled.rebuild(keys)
        self.recent = KeyIndex()


class CopyMatcher:
    """Remembered natives live in numpy columns behind a sorted key index, so a batch of
    natives costs a few array operations; Python sees only the rare duplicates."""

    def __init__(
        self,
        max_natives: int = MAX_NATIVES,
        max_pending: int = MAX_PENDING,
        max_plain: int = MAX_PLAIN,
        compiled: bool = use_compiled,
    ) -> None:
        # The compiled look-ups and matching where built (``compiled`` chooses, for the tests).
        self.compiled = compiled
        self.max_natives = max_natives
        self.max_pending = max_pending
        self.max_plain = max_plain
        self.index = _NativeIndex()
        self.fp = np.zeros(0, dtype=np.uint64)
        self.ts = np.zeros(0, dtype=np.float64)
        self.l2dst = np.zeros(0, dtype=np.int64)
        self.l2src = np.zeros(0, dtype=np.int64)
        self.rank = np.zeros(0, dtype=np.uint64)
        # Carried copies not matched yet: (fingerprint, time, the stream's results).
        self.pending: list[tuple[int, float, CopyMatch]] = []
        self.plain: dict[tuple[int, int], PlainCopies] = {}
        self.level = 0  # the sample keeps ranks below 2 ** (RANK_BITS - level)
        self._pruned_at = 0.0

    @property
    def keep_below(self) -> int:
        return 1 << (RANK_BITS - self.level)

    def __len__(self) -> int:
        return self.index.count

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
        if not len(fps):
            return
        n = _Natives(fps, ranks, ts, l2dst, l2src, wire, addrs, packet)
        match = self._match_compiled(n) if self.compiled else self._match_numpy(n)
        # Sightings that may be copies: of natives remembered, then of new ones the batch
        # holds more than once (each compared with its first sighting).
        for i, p in match.before:
            self._duplicate(n, i, (int(self.l2src[p]), int(self.l2dst[p]), float(self.ts[p])))
        for r, r0 in match.now:
            self._duplicate(n, r, (int(n.l2src[r0]), int(l2dst[r0]), float(ts[r0])))
        self._remember(n, match.new_ids, match.new_keys, match.firsts)
        self._adapt(len(fps), float(ts.min()), float(ts.max()))
        self._prune(float(ts.max()))

    def _match_compiled(self, n: _Natives) -> _Match:
        """:meth:`_match_numpy` in one compiled pass over the batch's natives, with the index
        look-ups and the recent part's merge of :meth:`_NativeIndex.lookup_or_add`."""
        assert COPIES is not None, "the compiled copy loops are not built"
        k, recent, settled = len(n.fps), self.index.recent, self.index.settled
        fps = np.ascontiguousarray(n.fps, dtype=np.uint64)
        new_keys, new_ids, firsts = (np.empty(k, t) for t in (np.uint64, np.int64, np.int64))
        merged_keys = np.empty(recent.count + k, np.uint64)
        merged_ids = np.empty(recent.count + k, np.int64)
        pairs = np.empty(4 * k, np.int64)
        column = np.ascontiguousarray
        added, count, before, now = COPIES.natives_match(
            fps, np.argsort(fps, kind="stable"), column(n.ts, dtype=np.float64),
            column(n.l2dst, dtype=np.int64), settled.keys[: settled.count],
            settled.ids[: settled.count], recent.keys[: recent.count], recent.ids[: recent.count],
            self.ts, self.l2dst, new_keys, new_ids, firsts, merged_keys, merged_ids, pairs,
            TEE_WINDOW,
        )  # fmt: skip
        recent.keys, recent.ids, recent.count = merged_keys[:count], merged_ids[:count], count
        pairs = pairs[: 2 * (before + now)].reshape(-1, 2).tolist()
        return _Match(new_ids[:added], new_keys[:added], firsts[:added], pairs[:before],
                      pairs[before:])  # fmt: skip

    def _match_numpy(self, n: _Natives) -> _Match:
        """The batch's natives against those remembered: one sort of the batch's fingerprints
        and one look-up of each distinct one (the new ones added to the index)."""
        fps = n.fps
        order = np.argsort(fps)
        ranked = fps[order]
        at = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
        lengths = _lengths(at, len(fps))
        ukeys = fps[order[at]]
        # The sort is not stable: the least row of each run is its packet's first sighting.
        firsts = np.minimum.reduceat(order, at)
        ids, added = self.index.lookup_or_add(ukeys, compiled=False)
        group = np.empty(len(fps), np.intp)
        ranked_group = np.repeat(np.arange(len(at)), lengths)
        group[order] = ranked_group
        known = np.nonzero(~added[group])[0]
        before = self._seen_before(n, known, ids[group[known]])
        # The rows of packets new to the index that the batch holds more than once.
        repeated = np.repeat(added & (lengths > 1), lengths)
        now = self._seen_now(n, order[repeated], ranked_group[repeated]) if repeated.any() else []
        return _Match(ids[added], ukeys[added], firsts[added], before, now)

    def _seen_before(
        self, n: _Natives, k: npt.NDArray[np.int64], prev: npt.NDArray[np.int64]
    ) -> list[tuple[int, int]]:
        """Rows ``k`` repeat natives of earlier batches (remembered as ``prev``): a second
        sighting to another L2 destination is a copy.  The pairs (row, id) that are."""
        if not len(k):
            return []
        copy = (
            (n.l2dst[k] != self.l2dst[prev])
            & (n.l2dst[k] != 0)
            & (n.ts[k] - self.ts[prev] <= TEE_WINDOW)
        )
        return list(zip(k[copy].tolist(), prev[copy].tolist(), strict=True))

    def _seen_now(
        self, n: _Natives, rows: npt.NDArray[np.intp], packet: npt.NDArray[np.intp]
    ) -> list[tuple[int, int]]:
        """``rows`` are of packets not remembered yet that the batch holds more than once
        (``packet`` tells them apart): the later sightings of each are compared with its first,
        packet by packet and in capture order."""
        order = np.lexsort((rows, packet))
        rows, packet = rows[order], packet[order]
        starts = np.flatnonzero(np.concatenate([[True], packet[1:] != packet[:-1]]))
        first = np.repeat(rows[starts], _lengths(starts, len(rows)))
        later = np.ones(len(rows), np.bool_)
        later[starts] = False
        ts, l2dst = n.ts, n.l2dst
        copy = later & (l2dst[rows] != l2dst[first]) & (l2dst[rows] != 0)
        copy &= ts[rows] - ts[first] <= TEE_WINDOW
        return list(zip(rows[copy].tolist(), first[copy].tolist(), strict=True))

    def _remember(
        self,
        n: _Natives,
        new_ids: npt.NDArray[np.int64],
        ukeys: npt.NDArray[np.uint64],
        firsts: npt.NDArray[np.intp],
    ) -> None:
        """Keep the first sightings ``firsts`` of new packets under their ids."""
        count = self.index.count
        if count > len(self.ts):
            # Doubling, but not past the budget: a prune follows a batch that crosses it.
            grow = max(count, min(2 * len(self.ts), self.max_natives), 4096)
            self.fp = _resize(self.fp, grow)
            self.ts = _resize(self.ts, grow)
            self.l2dst = _resize(self.l2dst, grow)
            self.l2src = _resize(self.l2src, grow)
            self.rank = _resize(self.rank, grow)
        self.fp[new_ids] = ukeys
        self.ts[new_ids] = n.ts[firsts]
        self.l2dst[new_ids] = n.l2dst[firsts]
        self.l2src[new_ids] = n.l2src[firsts]
        self.rank[new_ids] = n.ranks[firsts]
        self.index.settle(self.fp, compiled=self.compiled)

    def _adapt(self, kept: int, start: float, end: float) -> None:
        """Narrow the sample when natives arrive faster than TARGET_RATE a second (what is
        remembered costs CPU as well as memory); widen it again on a quiet link."""
        rate = kept / max(end - start, 1e-3)
        if kept >= 64 and rate > TARGET_RATE and self.level < MAX_LEVEL:
            self.level = min(MAX_LEVEL, self.level + max(1, int(np.log2(rate / TARGET_RATE))))
        elif rate < TARGET_RATE / 8 and self.level > 0 and end - start > 0.5:
            self.level -= 1

    def _duplicate(self, n: _Natives, i: int, first: tuple[int, int, float]) -> None:
        """Row ``i`` repeats a packet first seen as ``first`` (L2 source, destination, time).
        Which sighting is the copy is not known yet (TEE in PREROUTING sends the copy before
        the original leaves): both are recorded, and ``plain_streams`` keeps the destination
        that received copies of both directions."""
        t = float(n.ts[i])
        pair = n.addrs(i)
        if pair[0] == pair[1]:
            # Addressed to its own sender (BFD echo, RFC 5881): a probe the neighbour loops
            # straight back, so it crosses the link twice by design, not a copy.
            return
        data = n.packet(i)
        fp = int(n.fps[i])
        scale = 1 << self.level
        for smac, dmac in ((int(n.l2src[i]), int(n.l2dst[i])), (first[0], first[1])):
            pc = self.plain.get((smac, dmac))
            if pc is None:
                if len(self.plain) >= self.max_plain:
                    continue
                pc = self.plain[(smac, dmac)] = PlainCopies(smac, dmac, t, t)
            pc.matches += 1
            pc.estimated_packets += scale
            pc.estimated_bytes += int(n.wire[i]) * scale
            pc.last_seen = max(pc.last_seen, t)
            pc.first_seen = min(pc.first_seen, first[2])
            if len(pc.delays) < 1000:
                pc.delays.append(abs(t - first[2]))
            if pair in pc.pairs or len(pc.pairs) < 4096:
                pc.pairs[pair] = pc.pairs.get(pair, 0) + scale
            if len(pc.fps) < 8192:
                pc.fps.add(fp)
            if len(pc.samples) < 200:
                pc.samples.append((t, data))

    def plain_streams(self, min_matches: int = 3) -> list[PlainCopies]:
        """Plain-copy streams worth a finding: a destination that received copies of both
        directions of conversations explains the duplicates it shares with one-way ones (the
        other sighting of each packet), which are then left out."""
        entries = [pc for pc in self.plain.values() if pc.matches >= min_matches]
        both = [pc for pc in entries if pc.both_ways()]
        covered: set[int] = set().union(*(pc.fps for pc in both)) if both else set()
        return [
            pc
            for pc in entries
            if pc in both or len(pc.fps - covered) > PLAIN_UNEXPLAINED * len(pc.fps)
        ]

    def _native_ts(self, fp: int) -> float | None:
        fid = int(self.index.lookup(np.array([fp], dtype=np.uint64))[0])
        return None if fid < 0 else float(self.ts[fid])

    def check_copy(self, m: CopyMatch, fp: int, ts: float) -> None:
        """A carried copy (already in the sample) of the stream whose results are ``m``."""
        m.checked += 1
        native = self._native_ts(fp)
        if native is not None:
            m.matched += 1
            if len(m.delays) < 1000:
                m.delays.append(ts - native)
        elif len(self.pending) < self.max_pending:
            self.pending.append((fp, ts, m))

    def settle(self) -> None:
        """Match pending copies against natives that arrived after them."""
        if not self.pending:
            return
        fps = np.array([p[0] for p in self.pending], dtype=np.uint64)
        ids = self.index.lookup(fps)
        still = []
        for (fp, ts, m), fid in zip(self.pending, ids.tolist(), strict=True):
            if fid >= 0:
                m.matched += 1
                if len(m.delays) < 1000:
                    m.delays.append(ts - float(self.ts[fid]))
            else:
                still.append((fp, ts, m))
        self.pending = still

    def _prune(self, now: float) -> None:
        n = self.index.count
        if now - self._pruned_at < WINDOW and n < self.max_natives:
            return
        self.settle()
        self._pruned_at = now
        keep = self.ts[:n] >= now - WINDOW
        while keep.sum() >= self.max_natives // 2 and self.level < MAX_LEVEL:
            # Too much to remember: narrow the sample and forget what falls out of it.
            self.level += 1
            keep &= self.rank[:n] < np.uint64(self.keep_below)
        idx = np.nonzero(keep)[0]
        if len(idx) >= self.max_natives:
            idx = idx[np.argsort(self.ts[idx])][len(idx) // 2 :]
        self.fp = self.fp[idx].copy()
        self.ts = self.ts[idx].copy()
        self.l2dst = self.l2dst[idx].copy()
        self.l2src = self.l2src[idx].copy()
        self.rank = self.rank[idx].copy()
        self.index.rebuild(self.fp)
        self.pending = [p for p in self.pending if p[1] >= now - WINDOW]


def _lengths(at: npt.NDArray[np.intp], n: int) -> npt.NDArray[np.intp]:
    """The lengths of the runs of ``n`` rows that start at ``at`` (ascending, the first 0):
    ``np.diff(at, append=n)`` without its cost in a call made every batch."""
    lengths = np.empty_like(at)
    lengths[:-1] = at[1:] - at[:-1]
    lengths[-1:] = n - at[-1:]
    return lengths


def _resize(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=a.dtype)
    out[: len(a)] = a
    return out
