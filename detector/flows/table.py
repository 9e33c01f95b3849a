"""Bidirectional flow table kept in numpy columns, updated once per batch.

Rows are hashed to 64-bit flow keys (direction-normalised); an open-addressing index maps keys to
dense flow ids.  Hashing, the index and the counters are compiled loops (numba) over a batch, so
Python work per batch is a few calls, not a loop over packets or flows.  Idle flows are evicted
by rebuilding the index from the live flows, so memory follows the number of concurrent flows,
not the length of the capture.

Every hash starts from a salt drawn when the process starts (worker processes are forked and
share it): the hashes are invertible, so without the salt a sender could choose addresses whose
keys all land in one chain of the index and make every lookup walk it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.jit import compiled

U64 = np.uint64
_M1 = U64(0x9E3779B97F4A7C15)
_M2 = U64(0xBF58476D1CE4E5B9)
_M3 = U64(0x94D049BB133111EB)
# Keys are compared only within one run (one process and the workers it forks).
SALT = U64(int.from_bytes(os.urandom(8), "little"))
_S27, _S30, _S31, _S32 = U64(27), U64(30), U64(31), U64(32)
_ZERO, _ONE = U64(0), U64(1)


def mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of a 64-bit value."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> U64(30))) * _M2
        x = (x ^ (x >> U64(27))) * _M3
        return x ^ (x >> U64(31))


@compiled()
def _mix(x: np.uint64) -> np.uint64:
    """mix64 of one value (compiled twin, same constants and steps)."""
    x = (x ^ (x >> _S30)) * _M2
    x = (x ^ (x >> _S27)) * _M3
    return x ^ (x >> _S31)


@compiled()
def _address_hash(w: npt.NDArray[np.uint32], salt: np.uint64) -> np.uint64:
    h = _mix(((U64(w[0]) << _S32) | U64(w[1])) ^ salt)
    return _mix(h ^ ((U64(w[2]) << _S32) | U64(w[3])) * _M1)


@compiled()
def _row_keys(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    sport: npt.NDArray[np.int64],
    dport: npt.NDArray[np.int64],
    proto: npt.NDArray[np.int64],
    salt: np.uint64,
    out: npt.NDArray[np.uint64],
    direction: npt.NDArray[np.int8],
) -> None:
    """out rows: source host, destination host, flow (both directions alike), directed."""
    for i in range(len(sport)):
        hs = _address_hash(src[i], salt)
        hd = _address_hash(dst[i], salt)
        a = _mix(hs ^ U64(sport[i]))
        b = _mix(hd ^ U64(dport[i]))
        p = U64(proto[i])
        lo, hi = (a, b) if a < b else (b, a)
        flow = _mix(_mix(lo) ^ (hi * _M1) ^ p)
        directed = _mix(a * _M1 ^ b ^ p)
        out[0, i] = hs
        out[1, i] = hd
        # 0 marks an empty slot in the index.
        out[2, i] = flow if flow != _ZERO else _ONE
        out[3, i] = directed if directed != _ZERO else _ONE
        direction[i] = 1 if a > b else 0


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
    n = len(sport)
    out = np.empty((4, n), dtype=U64)
    direction = np.empty(n, dtype=np.int8)
    # The salt is an argument, never a global: compiled code caches globals as constants, and
    # the cache outlives the run.
    _row_keys(
        np.ascontiguousarray(src), np.ascontiguousarray(dst),
        np.ascontiguousarray(sport, dtype=np.int64), np.ascontiguousarray(dport, dtype=np.int64),
        np.ascontiguousarray(proto, dtype=np.int64), SALT, out, direction,
    )  # fmt: skip
    return RowKeys(out[0], out[1], out[2], direction, out[3])


@compiled()
def _probe(table: npt.NDArray[np.uint64], key: np.uint64) -> int:
    """Slot of ``key`` in ``table``, or of the empty slot where it would go."""
    mask = len(table) - 1
    pos = np.int64(key & U64(mask))
    while table[pos] != key and table[pos] != _ZERO:
        pos = (pos + 1) & mask
    return pos


@compiled()
def _lookup(
    table: npt.NDArray[np.uint64],
    ids: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int64],
) -> None:
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        out[i] = ids[pos] if table[pos] != _ZERO else -1


@compiled()
def _lookup_or_add(
    table: npt.NDArray[np.uint64],
    ids: npt.NDArray[np.int64],
    count: int,
    keys: npt.NDArray[np.uint64],
    out: npt.NDArray[np.int64],
    added: npt.NDArray[np.bool_],
) -> int:
    """Ids of ``keys``, the absent ones added with the next ids; the new count.  The table
    must have room for every key."""
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        if table[pos] == _ZERO:
            table[pos] = keys[i]
            ids[pos] = count
            count += 1
            added[i] = True
        else:
            added[i] = False
        out[i] = ids[pos]
    return count


@compiled()
def _refill(
    table: npt.NDArray[np.uint64],
    ids: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    key_ids: npt.NDArray[np.int64],
) -> None:
    """Place distinct nonzero ``keys`` (absent from ``table``) with their ids."""
    for i in range(len(keys)):
        if keys[i] != _ZERO:
            pos = _probe(table, keys[i])
            table[pos] = keys[i]
            ids[pos] = key_ids[i]


class HashIndex:
    """Open addressing: uint64 keys (never 0) → dense ids 0..count-1, given to new keys in the
    order they are added.  Linear probing, at most half full, one compiled loop per call."""

    MIN_CAP = 1 << 14

    def __init__(self, capacity: int = MIN_CAP) -> None:
        self.cap = capacity
        self.keys = np.zeros(capacity, dtype=U64)
        self.ids = np.full(capacity, -1, dtype=np.int64)
        self.count = 0

    def _room(self, more: int) -> None:
        """Grow so that ``more`` keys can be added without passing half full."""
        cap = self.cap
        while self.count + more > cap // 2:
            cap *= 2
        if cap != self.cap:
            keys, ids = self.keys, self.ids
            self.cap = cap
            self.keys = np.zeros(cap, dtype=U64)
            self.ids = np.full(cap, -1, dtype=np.int64)
            _refill(self.keys, self.ids, keys, ids)

    def lookup_or_add(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Ids of ``keys`` (adding the absent ones) and which were added."""
        keys = np.ascontiguousarray(keys, dtype=U64)
        self._room(len(keys))
        ids = np.empty(len(keys), dtype=np.int64)
        added = np.empty(len(keys), dtype=np.bool_)
        self.count = _lookup_or_add(self.keys, self.ids, self.count, keys, ids, added)
        return ids, added

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Ids of ``keys``, -1 where absent."""
        ids = np.empty(len(keys), dtype=np.int64)
        _lookup(self.keys, self.ids, np.ascontiguousarray(keys, dtype=U64), ids)
        return ids

    def rebuild(self, keys: npt.NDArray[np.uint64]) -> None:
        """Keep only ``keys`` (distinct), numbered 0..len-1 in the given order."""
        cap = self.MIN_CAP
        while len(keys) > cap // 2:
            cap *= 2
        self.cap = cap
        self.keys = np.zeros(cap, dtype=U64)
        self.ids = np.full(cap, -1, dtype=np.int64)
        self.count = len(keys)
        _refill(self.keys, self.ids, np.ascontiguousarray(keys, dtype=U64),
                np.arange(len(keys), dtype=np.int64))  # fmt: skip


@compiled()
def _account(
    table: npt.NDArray[np.uint64],
    ids: npt.NDArray[np.int64],
    count: int,
    keys: npt.NDArray[np.uint64],
    direction: npt.NDArray[np.int8],
    proto: npt.NDArray[np.int64],
    wire: npt.NDArray[np.int64],
    ts: npt.NDArray[np.float64],
    batch: int,
    key_col: npt.NDArray[np.uint64],
    proto_col: npt.NDArray[np.int16],
    quiet: npt.NDArray[np.uint8],
    first: npt.NDArray[np.float64],
    last: npt.NDArray[np.float64],
    seen: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    fids: npt.NDArray[np.int64],
    new_rows: npt.NDArray[np.int64],
) -> tuple[int, int]:
    """Each row's flow id (a new flow for a new key) and its counters; (count, new flows)."""
    fresh = 0
    for i in range(len(keys)):
        pos = _probe(table, keys[i])
        if table[pos] == _ZERO:
            fid = count
            count += 1
            table[pos] = keys[i]
            ids[pos] = fid
            key_col[fid] = keys[i]
            proto_col[fid] = proto[i]
            quiet[fid] = 0
            first[fid] = ts[i]
            last[fid] = ts[i]
            counts[fid, 0] = counts[fid, 1] = counts[fid, 2] = counts[fid, 3] = 0
            new_rows[fresh] = i
            fresh += 1
        else:
            fid = ids[pos]
            last[fid] = max(last[fid], ts[i])
        d = 1 if direction[i] else 0
        counts[fid, d] += 1
        counts[fid, 2 + d] += wire[i]
        seen[fid] = batch
        fids[i] = fid
    return count, fresh


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
        n = len(keys)
        if not n:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        index = self.index
        index._room(n)
        if index.count + n > len(self.key):
            grow = max(index.count + n, 2 * len(self.key), 1024)
            self.key = _resize(self.key, grow)
            self.proto = _resize(self.proto, grow)
            self.quiet = _resize(self.quiet, grow)
            self.first = _resize(self.first, grow)
            self.last = _resize(self.last, grow)
            self.seen = _resize(self.seen, grow)
            self.counts = _resize(self.counts, grow)
        self.batches += 1
        fids = np.empty(n, dtype=np.int64)
        new_rows = np.empty(n, dtype=np.int64)
        index.count, fresh = _account(
            index.keys, index.ids, index.count, np.ascontiguousarray(keys, dtype=U64),
            np.ascontiguousarray(direction, dtype=np.int8),
            np.ascontiguousarray(proto, dtype=np.int64),
            np.ascontiguousarray(wire, dtype=np.int64),
            np.ascontiguousarray(ts, dtype=np.float64), self.batches, self.key, self.proto,
            self.quiet, self.first, self.last, self.seen, self.counts, fids, new_rows,
        )  # fmt: skip
        self.total_flows += fresh
        self.peak_flows = max(self.peak_flows, index.count)
        return fids, new_rows[:fresh]

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
