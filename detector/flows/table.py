"""Bidirectional flow table kept in numpy columns, updated once per batch.

Rows are hashed to 64-bit flow keys (direction-normalised); an index maps keys to dense flow
ids.  Where the compiled module is built, a batch is accounted in one compiled pass over its
rows with an open-addressing hash index (``_table.c``); otherwise (or with
``MIRRORWATCH_PURE_PYTHON=1``) a sorted index and a handful of numpy calls per batch do it, with
the same ids and counters.  Idle flows are evicted by rebuilding the index from the live flows,
so memory follows the number of concurrent flows, not the length of the capture.

Every hash starts from a salt drawn when the process starts (worker processes are forked and
share it): the hashes are invertible, so without the salt a sender could choose addresses whose
keys collide and fold two flows (or hosts) into one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import numpy.typing as npt

from detector.compiled import PURE_PYTHON, built
from detector.decode import headers
from detector.flows.groups import count, distinct, locate, ranked, sorted_groups

U64 = np.uint64
_M1 = U64(0x9E3779B97F4A7C15)
_M2 = U64(0xBF58476D1CE4E5B9)
_M3 = U64(0x94D049BB133111EB)
# Keys are compared only within one run (one process and the workers it forks).
SALT = U64(int.from_bytes(os.urandom(8), "little"))
_LITTLE = sys.byteorder == "little"


_S27, _S30, _S31 = U64(27), U64(30), U64(31)


def mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of a 64-bit value."""
    out = np.array(x, dtype=U64)  # a copy
    mix64_into(out)
    return out


def mix64_into(x: npt.NDArray[np.uint64]) -> None:
    """:func:`mix64` in place: one array through every step (uint64 arrays wrap silently)."""
    with np.errstate(over="ignore"):
        x ^= x >> _S30
        x *= _M2
        x ^= x >> _S27
        x *= _M3
        x ^= x >> _S31


def word_pairs(
    addr: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Of four address words per row: (word 0 << 32) | word 1, and (word 2 << 32) | word 3."""
    # The words read two at a time as one 64-bit value: on a little-endian machine the pair is
    # swapped by a rotation.
    pairs = np.ascontiguousarray(addr, dtype=np.uint32).view(U64)
    hi, lo = pairs[:, 0].copy(), pairs[:, 1].copy()
    if _LITTLE:
        hi = (hi << U64(32)) | (hi >> U64(32))
        lo = (lo << U64(32)) | (lo >> U64(32))
    return hi, lo


def address_hash(addr: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    """Hash of the four address words per row (IPv4 in word 3), salted."""
    hi, lo = word_pairs(addr)
    with np.errstate(over="ignore"):
        return mix64(mix64(hi ^ SALT) ^ lo * _M1)


def endpoint_hash(
    addr_h: npt.NDArray[np.uint64], port: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """Hash of (address, port) per row, from the address hash."""
    return mix64(addr_h ^ port.astype(U64))


@dataclass(repr=False, eq=False, slots=True)
class RowKeys:
    """The hashes the engine needs for each row, computed once per batch."""

    src_host: npt.NDArray[np.uint64]
    dst_host: npt.NDArray[np.uint64]
    flow: npt.NDArray[np.uint64]  # same for both directions of a flow
    direction: npt.NDArray[np.int8]
    directed: npt.NDArray[np.uint64]  # differs between the two directions


def row_keys_compiled(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    sport: npt.NDArray[np.int64],
    dport: npt.NDArray[np.int64],
    proto: npt.NDArray[np.int64],
    rows: npt.NDArray[np.intp] | None = None,
) -> RowKeys:
    """:func:`row_keys_numpy`'s hashes in one compiled pass over the rows (of the rows ``rows``
    of the columns, read where they are, if given)."""
    assert headers.OUTER is not None, "the compiled row hashes are not built"
    m = len(sport) if rows is None else len(rows)
    keys = np.empty((4, m), dtype=U64)
    direction = np.empty(m, dtype=np.int8)
    headers.OUTER.row_keys(
        int(SALT),
        None if rows is None else np.ascontiguousarray(rows, dtype=np.int64),
        np.ascontiguousarray(src, dtype=np.uint32),
        np.ascontiguousarray(dst, dtype=np.uint32),
        np.ascontiguousarray(sport, dtype=np.int64),
        np.ascontiguousarray(dport, dtype=np.int64),
        np.ascontiguousarray(proto, dtype=np.int64),
        keys,
        direction,
    )
    return RowKeys(keys[0], keys[1], keys[2], direction, keys[3])


def row_keys_numpy(
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
    return RowKeys(hs, hd, flow, (a > b).astype(np.int8), directed)


# The hashes of each row: compiled where the header decode is (headers.use_compiled).
row_keys = row_keys_compiled if headers.use_compiled else row_keys_numpy


def row_keys_at(h: headers.Headers, rows: npt.NDArray[np.intp]) -> RowKeys:
    """The hashes of the rows ``rows`` of a batch's decoded headers."""
    if headers.use_compiled:  # read in place: no gathered copies of the rows' columns
        return row_keys_compiled(h.src, h.dst, h.sport, h.dport, h.proto, rows)
    return row_keys_numpy(h.src[rows], h.dst[rows], h.sport[rows], h.dport[rows], h.proto[rows])


class KeyIndex:
    """uint64 keys → dense ids 0..count-1, given to new keys in the order they are added.

    The keys are kept sorted, each beside its id: a batch is looked up with one binary search
    (``np.searchsorted``), and new keys are merged in with one pass that writes a new pair of
    arrays.  No probing rounds, no table twice the size of its keys, no layout to rebuild when
    it grows, and no key order a sender could choose to make lookups slow.
    """

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=U64)  # sorted
        self.ids = np.zeros(0, dtype=np.int64)  # id of keys[i]
        self.count = 0

    @property
    def cap(self) -> int:
        """Keys the arrays hold room for."""
        return len(self.keys)

    def _find(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
        """Ids of ``keys`` (-1 where absent) and where each is or would go in the sorted keys."""
        at, held = locate(self.keys, keys)
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64), at
        return np.where(held, self.ids.take(at, mode="clip"), -1), at

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Ids of ``keys``, -1 where absent."""
        return self._find(keys)[0]

    def lookup_or_add(
        self, keys: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Ids of distinct ``keys`` (adding the absent ones) and which were added."""
        ids, at = self._find(keys)
        added = ids < 0
        m = int(np.count_nonzero(added))
        if not m:
            return ids, added
        new = np.arange(self.count, self.count + m, dtype=np.int64)
        ids[added] = new
        self.count += m
        fresh, where = keys[added], at[added]
        if m > 1 and not (fresh[1:] > fresh[:-1]).all():
            order = np.argsort(fresh)
            fresh, where, new = fresh[order], where[order], new[order]
        dest, old = _merge_plan(where, len(self.keys))
        self.keys = _merged(self.keys, fresh, dest, old)
        self.ids = _merged(self.ids, new, dest, old)
        return ids, added

    def keep(self, ids: npt.NDArray[np.int64]) -> None:
        """Keep only the keys of ``ids`` (distinct), renumbered by their place in ``ids``."""
        renumber = np.full(self.count, -1, dtype=np.int64)
        renumber[ids] = np.arange(len(ids))
        new = renumber[self.ids]
        held = new >= 0
        self.keys = self.keys[held]
        self.ids = new[held]
        self.count = len(ids)

    def rebuild(self, keys: npt.NDArray[np.uint64]) -> None:
        """Keep only ``keys`` (distinct), numbered 0..len-1 in the given order."""
        order = np.argsort(keys)
        self.keys = keys[order]
        self.ids = order.astype(np.int64, copy=False)
        self.count = len(keys)


class KeySet:
    """Distinct uint64 keys, kept sorted: how many there are, and which of a batch are new."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=U64)

    @property
    def count(self) -> int:
        return len(self.keys)

    @property
    def cap(self) -> int:
        """Keys the array holds room for."""
        return len(self.keys)

    def add(self, keys: npt.NDArray[np.uint64]) -> int:
        """Add distinct, sorted ``keys``; returns how many were not held yet."""
        n = len(self.keys)
        at, held = locate(self.keys, keys)
        if held.any():
            keys, at = keys[~held], at[~held]
        if len(keys):
            dest, old = _merge_plan(at, n)
            self.keys = _merged(self.keys, keys, dest, old)
        return len(keys)

    def add_rows(
        self, a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64]
    ) -> int:
        """Add the keys ``a[rows]`` and ``b[rows]``; returns how many were not held yet."""
        return self.add(distinct(np.concatenate([a[rows], b[rows]])))

    def clear(self) -> None:
        self.keys = self.keys[:0]


# The compiled flow accounting and hash index (None where not built), and whether the flow
# table and the host set use them: where built, unless MIRRORWATCH_PURE_PYTHON=1.
TABLE: ModuleType | None = built("detector.flows._table")
use_compiled = TABLE is not None and not PURE_PYTHON

# Slots an index has at least (16 bytes each).
_FEWEST_SLOTS = 16


def _slots_for(keys: int, slots: int) -> int:
    """Slots (a power of two, at least ``slots``) to hold ``keys`` at most half full."""
    while slots < 2 * keys:
        slots *= 2
    return slots


class SlotIndex:
    """uint64 keys → dense ids 0..count-1, in an open-addressing hash table of (key, id + 1)
    slots worked on by the compiled module; the keys themselves are held by id in a column of
    the owner (the flow table's keys), from which the table is rebuilt when it grows.

    The table is never more than half full, so a probe is short and always ends.  It is made
    for the ``keys`` its owner's budget lets it hold (flows: the table's limit and one batch of
    new flows past it), so that it need not grow (it grows if ever asked for more)."""

    def __init__(self, keys: int) -> None:
        # Zeros from the system: pages no key has touched take no memory.
        self.slots = np.zeros((_slots_for(keys, _FEWEST_SLOTS), 2), dtype=U64)
        self.count = 0

    @property
    def cap(self) -> int:
        """Keys the table holds room for."""
        return len(self.slots) // 2

    def _compiled(self) -> ModuleType:
        assert TABLE is not None, "the compiled flow table is not built"
        return TABLE

    def room(self, held: npt.NDArray[np.uint64], more: int) -> None:
        """Room for ``more`` keys past those held (``held[:count]``, by id)."""
        size = _slots_for(self.count + more, len(self.slots))
        if size > len(self.slots):
            self.slots = np.empty((size, 2), dtype=U64)
            self._compiled().build(self.slots, held[: self.count])

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Ids of ``keys``, -1 where absent."""
        ids = np.empty(len(keys), dtype=np.int64)
        self._compiled().lookup(self.slots, np.ascontiguousarray(keys, dtype=U64), ids, self.count)
        return ids

    def keep(
        self, rows: npt.NDArray[np.int64], key: npt.NDArray[np.uint64], *columns: np.ndarray
    ) -> None:
        """Keep only the flows ``rows`` (ascending) of a flow table whose key column is ``key``
        and whose other columns are ``columns``: each moves down to its place in ``rows``
        (its new id), in every column, and the table holds their keys under those ids."""
        self._compiled().keep(
            self.slots, np.ascontiguousarray(rows, dtype=np.int64), key, *columns, self.count
        )
        self.count = len(rows)


class SlotSet:
    """:class:`KeySet` over a compiled open-addressing table of the keys themselves (0 where
    empty, the key 0 held apart), made for the ``budget`` of keys its owner holds at most (it
    grows if ever asked for more)."""

    def __init__(self, budget: int) -> None:
        # Zeros from the system: pages no key has touched take no memory.
        self.table = np.zeros(_slots_for(budget, _FEWEST_SLOTS), dtype=U64)
        self.zero = np.zeros(1, dtype=np.uint8)  # 1: the key 0 is held
        self.count = 0

    @property
    def cap(self) -> int:
        """Keys the table holds room for."""
        return len(self.table) // 2

    @property
    def keys(self) -> npt.NDArray[np.uint64]:
        """The keys held (in no order)."""
        held = self.table[self.table != 0]
        return np.append(held, U64(0)) if self.zero[0] else held

    def clear(self) -> None:
        """Hold no key, in the memory already taken (new pages would be zeroed by the system
        as each is first touched, one at a time)."""
        self.table.fill(0)
        self.zero[0] = 0
        self.count = 0

    def add(self, keys: npt.NDArray[np.uint64]) -> int:
        """Add ``keys`` (in any order, repeated or not); returns how many were not held yet."""
        before = self.count
        self._room(len(keys))
        self._add(keys, None)
        return self.count - before

    def add_rows(
        self, a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64]
    ) -> int:
        """Add the keys ``a[rows]`` and ``b[rows]``; returns how many were not held yet."""
        before = self.count
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        self._room(2 * len(rows))
        self._add(a, rows)
        self._add(b, rows)
        return self.count - before

    def _room(self, more: int) -> None:
        size = _slots_for(self.count + more, len(self.table))
        if size > len(self.table):
            held = self.keys
            self.table = np.zeros(size, dtype=U64)
            self.zero[0] = 0
            self.count = 0
            self._add(held, None)

    def _add(self, keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64] | None) -> None:
        assert TABLE is not None, "the compiled flow table is not built"
        column = np.ascontiguousarray(keys, dtype=U64)
        self.count = TABLE.add(self.table, self.zero, column, rows, self.count)


def key_set(budget: int) -> KeySet | SlotSet:
    """An empty set of keys (made for ``budget`` of them): the compiled form where it is
    used."""
    return SlotSet(budget) if use_compiled else KeySet()


def _merge_plan(
    at: npt.NDArray[np.intp], n: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Merging new sorted keys into ``n`` sorted ones, ``at`` the place of each among them:
    where each new key goes, and which places take the old keys in order."""
    # The i-th new key lands i places after its spot among the old keys.
    dest = at + np.arange(len(at))
    old = np.ones(n + len(at), dtype=np.bool_)
    old[dest] = False
    return dest, old


def _merged(
    held: npt.NDArray, new: npt.NDArray, dest: npt.NDArray[np.intp], old: npt.NDArray[np.bool_]
) -> npt.NDArray:
    out = np.empty(len(old), dtype=held.dtype)
    out[dest] = new
    out[old] = held
    return out


class FlowTable:
    """Per-flow, per-direction packet and byte counters with first/last times."""

    def __init__(
        self,
        idle_timeout: float = 120.0,
        max_flows: int = 65_536,
        batch_rows: int = 32_768,
        compiled: bool | None = None,
    ) -> None:
        # The compiled accounting where it is used (``compiled`` chooses, for the tests).  The
        # table holds up to max_flows flows before a batch, and that batch's new flows: at
        # most ``batch_rows``.
        self.compiled = use_compiled if compiled is None else compiled
        self.index: KeyIndex | SlotIndex = (
            SlotIndex(max_flows + batch_rows) if self.compiled else KeyIndex()
        )
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        # Flows the columns ever need room for (doubling past it would hold memory no flow uses).
        self.most = max_flows + batch_rows
        self.key = np.zeros(0, dtype=U64)
        self.proto = np.zeros(0, dtype=np.int16)
        # Payload packets of the flow that no format's prefilter accepted (saturates at 255).
        self.quiet = np.zeros(0, dtype=np.uint8)
        self._counts = np.zeros(0, dtype=np.int32)  # scratch of the quiet passes
        self.first = np.zeros(0, dtype=np.float64)
        self.last = np.zeros(0, dtype=np.float64)
        # Batch in which each flow was last seen: the clock that orders evictions when
        # capture time does not advance.
        self.seen = np.zeros(0, dtype=np.int64)
        self.batches = 0
        # Packets and bytes per direction: (pkts dir0, pkts dir1, bytes dir0, bytes dir1).
        self.counts = np.zeros((0, 4), dtype=np.int64, order="F")
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
        if isinstance(self.index, SlotIndex):  # one compiled pass over the rows
            index = self.index
            m, n = len(keys), index.count
            # Room for every row to start a flow: the pass adds them without stopping.
            self._room(n + m)
            index.room(self.key, m)
            ids = np.empty(m, dtype=np.int64)
            new_rows = np.empty(m, dtype=np.int64)
            self.batches += 1
            column = np.ascontiguousarray
            added = index._compiled().update(
                index.slots, column(keys, dtype=U64), column(direction, dtype=np.int8),
                column(proto, dtype=np.int64), column(wire, dtype=np.int64),
                column(ts, dtype=np.float64), self.key, self.proto, self.quiet, self.first,
                self.last, self.seen, self.counts.T, ids, new_rows, n, self.batches,
            )  # fmt: skip
            index.count = n + added
            self.total_flows += added
            self.peak_flows = max(self.peak_flows, index.count)
            return ids, new_rows[:added]
        g = sorted_groups(keys)
        ukeys, first_row, inv = g.keys, g.first, g.inverse
        # New flows are numbered in the order their first rows come (as the compiled form,
        # which reads the rows in order, numbers them).
        appear = np.argsort(first_row)
        uids = np.empty(len(ukeys), dtype=np.int64)
        uids[appear], added_in_order = self.index.lookup_or_add(ukeys[appear])
        added = np.empty(len(ukeys), dtype=np.bool_)
        added[appear] = added_in_order
        n = self.index.count
        self._room(n)
        new, rows = uids[added], first_row[added]
        if len(new):
            self.key[new] = ukeys[added]
            self.proto[new] = proto[rows]
            self.quiet[new] = 0
            self.first[new] = ts[rows]
            self.total_flows += len(new)
        m = len(ukeys)
        # Per distinct flow of this batch: packets and bytes per direction, first and last time.
        slot = inv * 2 + direction
        pk = np.bincount(slot, minlength=2 * m)
        by = np.bincount(slot, weights=wire, minlength=2 * m)
        # The counters are stored column by column: each column is one gather and one scatter.
        c = self.counts
        c[:, 0][uids] += pk[0::2]
        c[:, 1][uids] += pk[1::2]
        c[:, 2][uids] += by[0::2].astype(np.int64)
        c[:, 3][uids] += by[1::2].astype(np.int64)
        # The latest time of each flow's rows, over the runs of the grouping sort.
        last = np.maximum.reduceat(ts[g.order], g.at)
        self.last[uids] = np.maximum(self.last[uids], last)
        self.batches += 1
        self.seen[uids] = self.batches
        self.peak_flows = max(self.peak_flows, n)
        # The ids of the new flows follow their first rows: in row order, these are in id order.
        return uids[inv], np.sort(rows)

    def _room(self, n: int) -> None:
        """Room in the columns for ``n`` flows (zeros past the flows held)."""
        if n > len(self.key):
            grow = max(n, min(2 * len(self.key), self.most), 1024)
            self.key = _resize(self.key, grow)
            self.proto = _resize(self.proto, grow)
            self.quiet = _resize(self.quiet, grow)
            self.first = _resize(self.first, grow)
            self.last = _resize(self.last, grow)
            self.seen = _resize(self.seen, grow)
            self.counts = _resize(self.counts, grow)

    # Which payload rows of a batch the prefilters look at.  A flow's payload packets that no
    # format accepted are counted (``quiet``); past ``after`` of them its rows are only
    # probed.  The three steps below are one compiled pass each over a batch's payload rows
    # (an int32 scratch count per flow, zero between calls), or numpy calls.

    def quiet_looks(
        self,
        fids: npt.NDArray[np.int64],
        after: npt.NDArray[np.int64],
        probes: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Of a batch's payload rows (their flow ids ``fids``, in row order): the rows looked
        at, and the young ones (of flows whose quiet count is below the row's ``after``).  A
        young flow's first ``after - quiet`` rows of the batch are looked at; the other rows
        where ``probes`` is set."""
        if self.compiled:
            look, young = np.empty(len(fids), np.bool_), np.empty(len(fids), np.bool_)
            TABLE.quiet_looks(  # type: ignore[union-attr]
                *_fids_after(fids, after), _bools(probes), self.quiet, self._scratch(), look, young
            )
            return look, young
        return quiet_looks_numpy(fids, after, probes, self.quiet)

    def quiet_more(
        self,
        fids: npt.NDArray[np.int64],
        young: npt.NDArray[np.bool_],
        look: npt.NDArray[np.bool_],
        hit: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.bool_]:
        """The young rows not looked at of the flows with a young row ``hit`` (a payload some
        prefilter accepted): a flow that is not quiet has its rows counted on to make it quiet
        looked at as well."""
        if self.compiled:
            more = np.empty(len(fids), np.bool_)
            TABLE.quiet_more(  # type: ignore[union-attr]
                np.ascontiguousarray(fids, dtype=np.int64), _bools(young), _bools(look),
                _bools(hit), self._scratch(), more,
            )  # fmt: skip
            return more
        return quiet_more_numpy(fids, young, look, hit)

    def quiet_missed(
        self,
        fids: npt.NDArray[np.int64],
        young: npt.NDArray[np.bool_],
        looked: npt.NDArray[np.bool_],
        hit: npt.NDArray[np.bool_],
    ) -> None:
        """Count each flow's young rows ``looked`` at in vain (not ``hit``) into its quiet
        count (saturating at 255)."""
        if self.compiled:
            TABLE.quiet_missed(  # type: ignore[union-attr]
                np.ascontiguousarray(fids, dtype=np.int64), _bools(young), _bools(looked),
                _bools(hit), self.quiet, self._scratch(),
            )  # fmt: skip
            return
        quiet_missed_numpy(fids, young, looked, hit, self.quiet)

    def _scratch(self) -> npt.NDArray[np.int32]:
        """The compiled passes' count per flow (zero between calls), as long as the columns."""
        if len(self._counts) != len(self.quiet):
            self._counts = np.zeros(len(self.quiet), np.int32)
        return self._counts

    def add_quiet(self, ids: npt.NDArray[np.int64], counts: npt.NDArray[np.intp]) -> None:
        """Count payload packets that no prefilter accepted, ``counts`` of each of the flows
        ``ids`` (distinct), saturating."""
        self.quiet[ids] = np.minimum(self.quiet[ids].astype(np.intp) + counts, 255)

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
            # The kept keys' rows, by the index (not a pass over every flow per kept key).
            ids = self.index.lookup(np.fromiter(keep, dtype=U64, count=len(keep)))
            kept[ids[ids >= 0]] = True
            live |= kept
        if live.all() and n < self.max_flows:
            return 0
        room = self.max_flows * 3 // 4
        if live.sum() > room:
            # Still too many: keep the streams' flows, then the most recently seen.
            order = _most_recent(kept, self.seen[:n], self.last[:n], room)
            self.shed += int(live.sum()) - len(order)
            live = np.zeros(n, dtype=np.bool_)
            live[order] = True
        idx = np.nonzero(live)[0]
        k = len(idx)
        if isinstance(self.index, SlotIndex):  # the same moves, and the hash rebuilt from them
            self.index.keep(idx, self.key, self.proto, self.quiet, self.first, self.last,
                            self.seen, self.counts.T)  # fmt: skip
            return n - k
        # The live flows move down in place (idx[i] >= i); the arrays keep their size, so the
        # next batches' new flows need no new arrays.
        for column in (self.key, self.proto, self.quiet, self.first, self.last, self.seen):
            column[:k] = column[idx]
        for j in range(4):
            counter = self.counts[:, j]
            counter[:k] = counter[idx]
        # Rows past them are taken by new flows, which add to their counters and last time.
        self.counts[k:n] = 0
        self.last[k:n] = 0.0
        self.index.keep(idx)
        return n - k

    def counters(self, key: int) -> tuple[int, int, int, int] | None:
        """(pkts dir0, pkts dir1, bytes dir0, bytes dir1) of one flow key, None if not present."""
        fid = int(self.index.lookup(np.array([key], dtype=U64))[0])
        if fid < 0:
            return None
        c = self.counts[fid]
        return int(c[0]), int(c[1]), int(c[2]), int(c[3])


def _bools(a: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return np.ascontiguousarray(a, dtype=np.bool_)


def _fids_after(
    fids: npt.NDArray[np.int64], after: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    return np.ascontiguousarray(fids, dtype=np.int64), np.ascontiguousarray(after, dtype=np.int64)


def quiet_looks_numpy(
    fids: npt.NDArray[np.int64],
    after: npt.NDArray[np.int64],
    probes: npt.NDArray[np.bool_],
    quiet: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """:meth:`FlowTable.quiet_looks` by grouping the young rows flow by flow."""
    q = quiet[fids].astype(np.int64)
    young = q < after
    # The young rows flow by flow (each flow's in row order), with their rank in their flow.
    runs = ranked(fids[young])
    at = np.flatnonzero(young)[runs.order]
    look = np.array(probes, dtype=np.bool_)
    look[at[runs.rank < after[at] - q[at]]] = True
    return look, young


def quiet_more_numpy(
    fids: npt.NDArray[np.int64],
    young: npt.NDArray[np.bool_],
    look: npt.NDArray[np.bool_],
    hit: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """:meth:`FlowTable.quiet_more` by a look-up of each row's flow among those hit."""
    hit_flows = distinct(fids[young & hit])
    return young & ~look & locate(hit_flows, fids)[1]


def quiet_missed_numpy(
    fids: npt.NDArray[np.int64],
    young: npt.NDArray[np.bool_],
    looked: npt.NDArray[np.bool_],
    hit: npt.NDArray[np.bool_],
    quiet: npt.NDArray[np.uint8],
) -> None:
    """:meth:`FlowTable.quiet_missed` by counting each flow's rows."""
    flows, missed = count(fids[young & looked & ~hit])
    quiet[flows] = np.minimum(quiet[flows].astype(np.int64) + missed, 255)


def _resize(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with room for ``n`` rows, zeros past its own, in the same memory order."""
    out = np.zeros((n, *a.shape[1:]), dtype=a.dtype, order="F" if a.ndim > 1 else "C")
    out[: len(a)] = a
    return out


def _most_recent(
    kept: npt.NDArray[np.bool_],
    seen: npt.NDArray[np.int64],
    last: npt.NDArray[np.float64],
    room: int,
) -> npt.NDArray[np.int64]:
    """The ``room`` rows first in the order: kept rows, then latest ``seen``, then latest
    ``last``, then lowest row (in no order); the rows of ``np.lexsort((-last, -seen,
    ~kept))[:room]`` but partitioning at the cut instead of sorting."""
    rows = np.nonzero(~kept)[0]
    need = room - (len(kept) - len(rows))
    if need <= 0 or need >= len(rows):
        return np.lexsort((-last, -seen, ~kept))[:room]
    s = seen[rows]
    cut = np.partition(s, len(s) - need)[len(s) - need]  # the need-th latest batch
    above, tied = rows[s > cut], rows[s == cut]
    take = need - len(above)
    if take < len(tied):
        # Of the flows of the cut batch, the latest by time (the least rows among equals).
        late = -last[tied]
        edge = np.partition(late, take - 1)[take - 1]
        if np.isnan(edge):
            tied = tied[np.argsort(late, kind="stable")][:take]
        else:
            before = tied[late < edge]
            tied = np.concatenate([before, tied[late == edge][: take - len(before)]])
    return np.concatenate([np.nonzero(kept)[0], above, tied])
