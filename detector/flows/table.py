"""Bidirectional flow table kept in numpy columns, updated once per batch.

Rows are hashed to 64-bit flow keys (direction-normalised); a vectorised open-addressing index
maps keys to dense flow ids, so Python work per batch is a handful of numpy calls, not a loop over
packets or flows.  Idle flows are evicted by rebuilding the index from the live flows, so memory
follows the number of concurrent flows, not the length of the capture.

Every hash starts from a salt drawn when the process starts (worker processes are forked and
share it): the hashes are invertible, so without the salt a sender could choose addresses whose
keys all land in one chain of the index and make every lookup walk it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = np.uint64
_M1 = U64(0x9E3779B97F4A7C15)
_M2 = U64(0xBF58476D1CE4E5B9)
_M3 = U64(0x94D049BB133111EB)
# Keys are compared only within one run (one process and the workers it forks).
SALT = U64(int.from_bytes(os.urandom(8), "little"))


def mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of a 64-bit value."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> U64(30))) * _M2
        x = (x ^ (x >> U64(27))) * _M3
        return x ^ (x >> U64(31))


def address_hash(addr: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    """Hash of the four address words per row (IPv4 in word 3), salted."""
    a = addr.astype(U64)
    with np.errstate(over="ignore"):
        h = mix64(((a[:, 0] << U64(32)) | a[:, 1]) ^ SALT)
        return mix64(h ^ ((a[:, 2] << U64(32)) | a[:, 3]) * _M1)


def endpoint_hash(
    addr_h: npt.NDArray[np.uint64], port: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """Hash of (address, port) per row, from the address hash."""
    return mix64(addr_h ^ port.astype(U64))


@dataclass(slots=True)
class RowKeys:
    """The hashes the engine needs for each row, computed once per batch."""

    src_host: npt.NDArray[np.uint64]
    dst_host: npt.NDArray[np.uint64]
    flow: npt.NDArray[np.uint64]  # same for both directions of a flow
    direction: npt.NDArray[np.int8]
    directed: npt.NDArray[np.uint64]  # differs between the two directions


def row_keys(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    sport: npt.NDArray[np.int64],
    dport: npt.NDArray[np.int64],
    proto: npt.NDArray[np.int64],
) -> RowKeys:
    hs = address_hash(src)
    hd = address_hash(dst)
    a = endpoint_hash(hs, sport)
    b = endpoint_hash(hd, dport)
    p = proto.astype(U64)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    with np.errstate(over="ignore"):
        flow = mix64(mix64(lo) ^ (hi * _M1) ^ p)
        directed = mix64(a * _M1 ^ b ^ p)
    # 0 marks an empty slot in the index.
    flow[flow == 0] = U64(1)
    directed[directed == 0] = U64(1)
    return RowKeys(hs, hd, flow, (a > b).astype(np.int8), directed)


class HashIndex:
    """Vectorised open addressing: uint64 keys (never 0) → dense ids 0..count-1, given to new
    keys in the order they are added.

    Linear probing, at most half full.  A new table is laid out by one sort of the keys on their
    home slots; keys added to a table probe in rounds, each round a few numpy calls over the
    keys still looking for a slot (no sort, no allocation of the table's size).
    """

    MIN_CAP = 1 << 14

    def __init__(self, capacity: int = MIN_CAP) -> None:
        self.cap = capacity
        self.keys = np.zeros(capacity, dtype=U64)
        self.ids = np.full(capacity, -1, dtype=np.int64)
        self.count = 0

    def _fill(self, cap: int, keys: npt.NDArray[np.uint64], ids: npt.NDArray[np.int64]) -> None:
        """A new table of ``cap`` slots holding distinct ``keys``.  In order of home slot, each
        key takes the first slot at or after its home that no earlier key took: slot i of the
        sorted keys is i + the running maximum of (home - rank)."""
        self.cap = cap
        self.keys = np.zeros(cap, dtype=U64)
        self.ids = np.full(cap, -1, dtype=np.int64)
        home = (keys & U64(cap - 1)).astype(np.int64)
        order = np.argsort(home)
        rank = np.arange(len(keys), dtype=np.int64)
        slot = np.maximum.accumulate(home[order] - rank) + rank
        fits = slot < cap
        placed = order[fits]
        self.keys[slot[fits]] = keys[placed]
        self.ids[slot[fits]] = ids[placed]
        wrapped = order[~fits]
        if wrapped.size:
            # Every slot from their home to the end is taken: they probe on from slot 0.
            self._place(keys[wrapped], ids[wrapped], np.zeros(len(wrapped), dtype=np.int64))

    def _place(
        self,
        keys: npt.NDArray[np.uint64],
        ids: npt.NDArray[np.int64],
        pos: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Insert distinct keys known to be absent, probing from their home slots (or ``pos``).
        Each round the keys at a free slot claim it by writing their id there; the id that
        stays wins the slot, and the others move on."""
        mask = self.cap - 1
        if pos is None:
            pos = (keys & U64(mask)).astype(np.int64)
        pending = np.arange(len(keys))
        while pending.size:
            p = pos[pending]
            free = self.keys[p] == 0
            slots, claim = p[free], pending[free]
            self.ids[slots] = ids[claim]
            won = self.ids[slots] == ids[claim]
            self.keys[slots[won]] = keys[claim[won]]
            placed = np.zeros(len(pending), dtype=np.bool_)
            placed[np.nonzero(free)[0][won]] = True
            pending = pending[~placed]
            pos[pending] = (pos[pending] + 1) & mask

    def lookup_or_add(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Ids of distinct ``keys`` (adding the absent ones) and which were added."""
        ids = self.lookup(keys)
        added = ids < 0
        n = int(added.sum())
        if not n:
            return ids, added
        new = np.arange(self.count, self.count + n, dtype=np.int64)
        ids[added] = new
        self.count += n
        cap = self.cap
        while self.count > cap // 2:
            cap *= 2
        if cap == self.cap:
            self._place(keys[added], new)
        else:
            used = self.keys != 0
            self._fill(
                cap,
                np.concatenate([self.keys[used], keys[added]]),
                np.concatenate([self.ids[used], new]),
            )
        return ids, added

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Ids of ``keys``, -1 where absent."""
        mask = self.cap - 1
        ids = np.full(len(keys), -1, dtype=np.int64)
        pos = (keys & U64(mask)).astype(np.int64)
        pending = np.arange(len(keys))
        while pending.size:
            k = self.keys[pos[pending]]
            hit = k == keys[pending]
            ids[pending[hit]] = self.ids[pos[pending[hit]]]
            pending = pending[~hit & (k != 0)]
            pos[pending] = (pos[pending] + 1) & mask
        return ids

    def rebuild(self, keys: npt.NDArray[np.uint64]) -> None:
        """Keep only ``keys`` (distinct), numbered 0..len-1 in the given order."""
        cap = self.MIN_CAP
        while len(keys) > cap // 2:
            cap *= 2
        self.count = len(keys)
        self._fill(cap, keys, np.arange(len(keys), dtype=np.int64))


class FlowTable:
    """Per-flow, per-direction packet and byte counters with first/last times."""

    def __init__(self, idle_timeout: float = 120.0, max_flows: int = 65_536) -> None:
        self.index = HashIndex()
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        self.key = np.zeros(0, dtype=U64)
        self.proto = np.zeros(0, dtype=np.int16)
        # Payload packets of the flow that no format's prefilter accepted (saturates at 255).
        self.quiet = np.zeros(0, dtype=np.uint8)
        self.first = np.zeros(0, dtype=np.float64)
        self.last = np.zeros(0, dtype=np.float64)
        # Batch in which each flow was last seen: the clock that orders evictions when
        # capture time does not advance.
        self.seen = np.zeros(0, dtype=np.int64)
        self.batches = 0
        self.counts = np.zeros((0, 4), dtype=np.int64)
        self.total_flows = 0
        self.shed = 0  # flows evicted while still active, because the table was full
        self.peak_flows = 0

    def __len__(self) -> int:
        return self.index.count

    def update(
        self,
        keys: npt.NDArray[np.uint64],
        direction: npt.NDArray[np.int8],
        proto: npt.NDArray[np.int64],
        wire: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Account one batch of rows; returns each row's flow id and the rows that started a
        new flow."""
        if not len(keys):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        ukeys, first_row, inv = np.unique(keys, return_index=True, return_inverse=True)
        uids, added = self.index.lookup_or_add(ukeys)
        n = self.index.count
        if n > len(self.key):
            grow = max(n, 2 * len(self.key), 1024)
            self.key = _resize(self.key, grow)
            self.proto = _resize(self.proto, grow)
            self.quiet = _resize(self.quiet, grow)
            self.first = _resize(self.first, grow)
            self.last = _resize(self.last, grow)
            self.seen = _resize(self.seen, grow)
            self.counts = _resize(self.counts, grow)
        new = uids[added]
        self.key[new] = ukeys[added]
        self.proto[new] = proto[first_row[added]]
        self.quiet[new] = 0
        self.first[new] = ts[first_row[added]]
        self.total_flows += int(added.sum())
        m = len(ukeys)
        # Per distinct flow of this batch: packets and bytes per direction, first and last time.
        slot = inv * 2 + direction
        pk = np.bincount(slot, minlength=2 * m).reshape(m, 2)
        by = np.bincount(slot, weights=wire, minlength=2 * m).reshape(m, 2).astype(np.int64)
        self.counts[uids, 0:2] += pk
        self.counts[uids, 2:4] += by
        last = np.full(m, -np.inf)
        np.maximum.at(last, inv, ts)
        self.last[uids] = np.maximum(self.last[uids], last)
        self.batches += 1
        self.seen[uids] = self.batches
        self.peak_flows = max(self.peak_flows, n)
        return uids[inv], first_row[added]

    def add_quiet(self, fids: npt.NDArray[np.int64]) -> None:
        """Count payload packets that no prefilter accepted, per flow (saturating)."""
        ids, counts = np.unique(fids, return_counts=True)
        self.quiet[ids] = np.minimum(self.quiet[ids].astype(np.int64) + counts, 255)

    def full(self) -> bool:
        return self.index.count >= self.max_flows

    def expire(self, now: float, keep: set[int] | None = None) -> int:
        """Evict flows idle longer than the timeout (all but ``keep`` keys); returns how many.
        A table still full after that keeps the flows seen in the latest batches (whatever
        their timestamps say) down to three quarters of its size."""
        n = self.index.count
        if n < self.max_flows // 2:
            return 0
        live = self.last[:n] >= now - self.idle_timeout
        kept = np.zeros(n, dtype=np.bool_)
        if keep:
            kept = np.isin(self.key[:n], np.fromiter(keep, dtype=U64, count=len(keep)))
            live |= kept
        if live.all() and n < self.max_flows:
            return 0
        room = self.max_flows * 3 // 4
        if live.sum() > room:
            # Still too many: keep the streams' flows, then the most recently seen.
            order = np.lexsort((-self.last[:n], -self.seen[:n], ~kept))[:room]
            self.shed += int(live.sum()) - len(order)
            live = np.zeros(n, dtype=np.bool_)
            live[order] = True
        idx = np.nonzero(live)[0]
        gone = n - len(idx)
        self.key = self.key[idx].copy()
        self.proto = self.proto[idx].copy()
        self.quiet = self.quiet[idx].copy()
        self.first = self.first[idx].copy()
        self.last = self.last[idx].copy()
        self.seen = self.seen[idx].copy()
        self.counts = self.counts[idx].copy()
        self.index.rebuild(self.key)
        return gone

    def counters(self, key: int) -> tuple[int, int, int, int] | None:
        """(pkts dir0, pkts dir1, bytes dir0, bytes dir1) of one flow key, None if not present."""
        fid = int(self.index.lookup(np.array([key], dtype=U64))[0])
        if fid < 0:
            return None
        c = self.counts[fid]
        return int(c[0]), int(c[1]), int(c[2]), int(c[3])


def _resize(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out
