"""Encrypted copies: streams whose content cannot be read, but whose sizes and timing track the
traffic seen in clear on the same span.

A copy sent through WireGuard, OpenVPN, IPsec, DTLS, TLS or SSH hides its bytes, not its volume:
each copied packet leaves shortly after the original, and a per-packet tunnel adds a constant
overhead to each one (plus padding to the cipher block).  Two tests, both streaming with fixed
memory per candidate:

- **Byte rate.**  Outbound bytes of each candidate per 100 ms bin against the bytes per bin of
  the native traffic: all of it, and each of ``HOST_BUCKETS`` groups of hosts (a host's traffic
  falls in the group its address hashes to, so a copy of one host shows in its group).  Pearson
  correlation at lags of 0-2 s is kept as running sums; at the end the best (series, lag) gives
  the correlation and the ratio of copy bytes to original bytes.  The candidate's own flow and
  all traffic of its two endpoints are left out of what it is compared with: a proxy or a host
  busy with several connections at once must not look like its own copy.
- **Per-packet sizes** (datagram carriers).  For a sample of the candidate's packets, the size
  differences to native packets seen in the 30 ms before it are counted, and so are those to
  native packets of an earlier 30 ms window (the control: same traffic density, no causal link).
  A copy shows a 16-byte-wide window of differences that the control does not: the overhead.

Candidates are outbound directed flows that carry at least ``MIN_BYTES`` and are not already
recognised as a mirror, intercept or flow export, at most ``MAX_CANDIDATES`` at once; the least
active one makes room.  Nothing here decides severity: the evidence goes to the policy.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from detector.decode.frames import ip_str
from detector.decode.lut import lut
from detector.evidence import HostTally, StreamEvidence
from detector.flows.fingerprint import COPIES, use_compiled
from detector.flows.groups import distinct, locate, runs, spread
from detector.protocols.base import PacketContext, transport_name
from detector.protocols.correlated import ENCRYPTED_COPY

if TYPE_CHECKING:
    from detector.capture.reader import PacketBatch
    from detector.decode.headers import Headers
    from detector.flows.stream import Stream
    from detector.flows.table import FlowTable, RowKeys

BIN = 0.1  # seconds per byte-rate bin
MAX_LAG = 20  # bins: copies leave within 2 s of the original
HOST_BUCKETS = 16
WIDE = 10  # bins summed for the 1 s resolution
WIDTH = 1 + HOST_BUCKETS  # series: all traffic, then each bucket
SHAPE = (WIDTH, MAX_LAG + 1)
RING = MAX_LAG + WIDE  # closed bins kept for lags and windows
MAX_CANDIDATES = 24
MIN_BYTES = 50_000
MIN_PACKETS = 40
# Bins kept open for packets a little out of order before they are closed.
REORDER_BINS = 3
# Bins folded at once (bounds the temporary arrays).
MAX_BLOCK = 512
# A candidate is judged only over enough bins with its own traffic.
MIN_ACTIVE_BINS = 20
MIN_BINS = 50
# The 1 s resolution has fewer independent samples: it is judged over a longer time.
MIN_WIDE_BINS = 150
# Per-packet test.
MATCH_WINDOW = 0.03
MAX_DELTA = 256
PAD = 16
NATIVE_RING = 8192
SAMPLE_PER_BATCH = 128
# (Sampled packet, native packet) pairs compared at once (bounds the temporary arrays).
MAX_PAIRS = 1 << 17
# Sampled packets per candidate after which the size test has seen enough.
MAX_CHECKS = 256
# Evidence is handed on from this correlation up (the policy sets the severities).
REPORT_CORRELATION = 0.5
MAX_TRACKED = 8
# Ports of TLS services, for naming a TCP carrier joined after its handshake.
TLS_PORTS = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 6514, 8443})

# A host as the buckets remember it: IP version and the four address words (IPv4 in the last);
# its address is written out only for a finding.
HostAddress = tuple[int, int, int, int, int]
# One of a batch's busiest hosts: its hash, its address, and its bytes in the batch as source or
# destination (a packet from a host to itself counted twice).
Busiest = tuple[int, HostAddress, float]


def host_name(host: HostAddress) -> str:
    """The address of a remembered host, as reports show it."""
    if host[0] == 4:
        return ip_str(struct.pack("!I", host[4]))
    return ip_str(struct.pack("!4I", *host[1:]))


class Sums:
    """Running sums for Pearson correlation of one candidate's bytes (y) with each native
    series (x) at each lag: fixed size whatever the length of the capture.  They are views of
    the candidate's slot row (see ``slot_views``), which ``fold`` adds bins to for every
    candidate at once."""

    __slots__ = ("counts", "sx", "sxx", "sxy")

    def __init__(
        self,
        counts: npt.NDArray[np.float64],
        sx: npt.NDArray[np.float64],
        sxx: npt.NDArray[np.float64],
        sxy: npt.NDArray[np.float64],
    ) -> None:
        self.counts, self.sx, self.sxx, self.sxy = counts, sx, sxx, sxy

    # The counts, read from the row: bins, bins in which the candidate sent bytes, the sum of
    # its bytes per bin and of their squares.
    n = property(lambda self: int(self.counts[0]))
    active = property(lambda self: int(self.counts[1]))
    sy = property(lambda self: float(self.counts[2]))
    syy = property(lambda self: float(self.counts[3]))

    def correlation(self) -> npt.NDArray[np.float64]:
        n = float(max(self.n, 1))
        sy, syy = self.sy, self.syy
        vy = syy - sy * sy / n
        vx = self.sxx - self.sx * self.sx / n
        cov = self.sxy - self.sx * sy / n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((vx > 0) & (vy > 0), cov / np.sqrt(np.maximum(vx * vy, 1e-12)), 0.0)


@dataclass(repr=False, eq=False)
class Candidate:
    """A flow watched for copies sent inside an encrypted tunnel, and its running sums."""

    key: int
    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    carrier: str
    src_h: int
    dst_h: int
    flow_key: int
    direction: int
    # The flow's bytes when it became a candidate: the biggest flows keep their place.
    flow_bytes: int
    first_seen: float
    last_seen: float
    first_bin: int
    packets: int = 0
    bytes: int = 0
    src_mac: str | None = None
    dst_mac: str | None = None
    # Its row in the arrays of EncryptedCopies (open bins, rings, running sums).
    slot: int = -1
    # Running sums over closed bins: 100 ms bins, and sliding 1 s windows of them (a stream
    # tunnel's copies straddle bins as its congestion window lets them through).  These and
    # the size differences are views of its slot's rows, given when it is admitted.
    fine: Sums = field(init=False, repr=False)
    wide: Sums = field(init=False, repr=False)
    # Per-packet size differences: copy window and control window.
    checked: int = 0
    deltas: npt.NDArray[np.int64] = field(init=False, repr=False)
    control: npt.NDArray[np.int64] = field(init=False, repr=False)
    samples: list[tuple[float, int, bytes]] = field(default_factory=list)
    sniffed: int = 0


@dataclass(repr=False, eq=False)
class Verdict:
    """What one candidate's numbers say (the policy decides what it means)."""

    correlation: float
    lag_s: float
    series: str  # "all" or the hosts of one bucket
    bytes_ratio: float
    bins: int
    active_bins: int
    window_s: float  # the resolution that correlated best: 0.1 s bins or 1 s windows
    matched_share: float | None
    overhead: int | None
    tracked: list[tuple[str, float]]


def carrier_of(proto: int, sport: int, dport: int, head: bytes, known: str | None) -> str:
    """The name of what carries the stream, from the engine's own decoders where they recognised
    a tunnel, else from its first payload bytes and ports."""
    if known:
        return known
    if proto == 50:
        return "esp"
    if proto == 6:
        return _tcp_carrier(head, {sport, dport})
    if proto == 17:
        return _udp_carrier(head, {sport, dport})
    return f"ip/{proto}"


def _tls_record(head: bytes, major: int) -> bool:
    """A TLS (major 3) or DTLS (major 0xfe) record header: content type, then version."""
    return len(head) >= 3 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == major


def _tcp_carrier(head: bytes, ports: set[int]) -> str:
    if head.startswith(b"SSH-") or 22 in ports:
        return "ssh"
    if _tls_record(head, 3) or ports & TLS_PORTS:
        return "tls"
    return "tcp"


# UDP carriers known by their port alone, in the order they are told apart.
UDP_CARRIER_PORTS = ((1194, "openvpn"), (4500, "nat-t"), (443, "quic"))


def _udp_carrier(head: bytes, ports: set[int]) -> str:
    if _tls_record(head, 0xFE):
        return "dtls"
    if 51820 in ports or (len(head) >= 4 and head[0] in (1, 2, 3, 4) and head[1:4] == bytes(3)):
        return "wireguard"
    return next((name for port, name in UDP_CARRIER_PORTS if port in ports), "udp")


# The running sums of a Sums beside the counts.
SUMS = ("sx", "sxx", "sxy")
RESOLUTIONS = ("fine", "wide")
# A slot's row of floats, part by part: the closed bins of its endpoints' traffic per series
# (the lag ring) and of its own bytes (for the 1 s windows), newest last; its running sums per
# resolution; then its counts per resolution (bins, active bins, sum of y, sum of y*y).  The
# compiled fold reads the row in this order.
SLOT_PARTS: list[tuple[object, tuple[int, ...]]] = [
    ("excl_ring", (RING, WIDTH)),
    ("y_ring", (WIDE - 1,)),
    *(((res, part), SHAPE) for res in RESOLUTIONS for part in SUMS),
    *(((res, "counts"), (4,)) for res in RESOLUTIONS),
]
SLOT_ENDS = np.cumsum([0] + [math.prod(shape) for _, shape in SLOT_PARTS]).tolist()


def slot_views(floats: npt.NDArray[np.float64]) -> dict[object, npt.NDArray[np.float64]]:
    """The parts of every slot's row of ``floats`` (one row a slot), as views."""
    rows = len(floats)
    return {
        name: floats[:, a:z].reshape(rows, *shape)
        for (name, shape), a, z in zip(SLOT_PARTS, SLOT_ENDS[:-1], SLOT_ENDS[1:], strict=True)
    }


class EncryptedCopies:
    """Byte-rate and size correlation of opaque outbound streams with the span's own traffic.

    Each candidate owns one row (its slot) of the arrays below, so that a batch, and a run of
    bins being closed, is worked on for all candidates at once."""

    def __init__(self) -> None:
        self.candidates: dict[int, Candidate] = {}
        self.free = list(range(MAX_CANDIDATES - 1, -1, -1))  # slots not in use
        # Per slot: the candidate's directed flow key and its endpoints' host hashes.
        self.slot_key = np.zeros(MAX_CANDIDATES, np.uint64)
        self.slot_hosts = np.zeros((MAX_CANDIDATES, 2), np.uint64)
        # Per open bin: native bytes (row 0 all, rows 1.. host buckets); per slot, the
        # candidate's own bytes and the bytes of its endpoints' traffic per series.
        self.open_native: dict[int, npt.NDArray[np.float64]] = {}
        self.open_own: dict[int, npt.NDArray[np.float64]] = {}
        self.open_excl: dict[int, npt.NDArray[np.float64]] = {}
        self.native_ring = np.zeros((RING, WIDTH))
        # What a new candidate starts from zero, per slot in one row of floats (one write
        # empties a slot), as views (see SLOT_PARTS): a candidate's Sums hold views of its row.
        self.slot_floats = np.zeros((MAX_CANDIDATES, SLOT_ENDS[-1]))
        self.views = slot_views(self.slot_floats)
        # Size differences per slot (copy window, control window).
        self.deltas = np.zeros((2, MAX_CANDIDATES, MAX_DELTA), np.int64)
        # The candidates' directed flow keys, sorted, and the slot of each; their endpoints'
        # hosts, sorted, and the slot of each (None: the candidates changed since).
        self._by_key: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] | None = None
        self._by_host: tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]] | None = None
        # Addresses as reports show them, of hosts that became candidates' endpoints (bounded).
        self.names: dict[HostAddress, str] = {}
        self.closed_through: int | None = None
        self.folded_through: int | None = None  # last bin in the lag rings
        self.newest = -(1 << 62)  # newest bin seen
        # Who is in each bucket (bounded): bucket → host → bytes.
        self.bucket_hosts: list[dict[HostAddress, float]] = [{} for _ in range(HOST_BUCKETS)]
        # Recent native packets for the per-packet test, in time order: rows of time (the bits
        # of a float64), IP length, source and destination host; the packets are columns
        # ring_at[0]:ring_at[1] (room for a ring's worth more before they move to the front).
        self.ring = np.zeros((4, 2 * NATIVE_RING), np.uint64)
        self.ring_at = (0, 0)
        # Distinct hosts of the last batch (the next one likely has as many).
        self.batch_hosts = 0

    @property
    def ring_ts(self) -> npt.NDArray[np.float64]:
        return self.ring[0, slice(*self.ring_at)].view(np.float64)

    @property
    def ring_len(self) -> npt.NDArray[np.int64]:
        return self.ring[1, slice(*self.ring_at)].view(np.int64)

    @property
    def ring_src(self) -> npt.NDArray[np.uint64]:
        return self.ring[2, slice(*self.ring_at)]

    @property
    def ring_dst(self) -> npt.NDArray[np.uint64]:
        return self.ring[3, slice(*self.ring_at)]

    # ------------------------------------------------------------------ candidates

    def _admit(self, c: Candidate) -> int:
        """Give ``c`` a slot (a candidate of the same key is replaced); the slot, to be
        cleared by _clear."""
        old = self.candidates.get(c.key)
        if old is not None:
            self.free.append(old.slot)
        slot = self.free.pop()
        self.slot_key[slot] = c.key
        self.slot_hosts[slot] = (c.src_h, c.dst_h)
        c.slot = slot
        c.fine, c.wide = (
            Sums(*(self.views[res, part][slot] for part in ("counts", *SUMS)))
            for res in RESOLUTIONS
        )
        c.deltas, c.control = self.deltas[0, slot], self.deltas[1, slot]
        self.candidates[c.key] = c
        self._by_key = self._by_host = None
        return slot

    def _clear(self, slots: list[int]) -> None:
        """Empty the rows of ``slots`` (given to new candidates) in every array."""
        at = np.array(slots)
        self.slot_floats[at] = 0.0
        self.deltas[:, at] = 0
        for open_bins in (self.open_own, self.open_excl):
            for row in open_bins.values():
                row[at] = 0.0

    def slots_of(self, dkey: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Each row's candidate slot, or -1 where its directed flow is no candidate."""
        return _slots(*self._keys_sorted(), dkey)

    def _keys_sorted(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """The candidates' directed flow keys, sorted, and the slot of each."""
        if self._by_key is None:
            slots = np.array([c.slot for c in self.candidates.values()], np.int64)
            keys = self.slot_key[slots]
            order = np.argsort(keys)
            self._by_key = keys[order], slots[order]
        return self._by_key

    def _hosts_sorted(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """The candidates' endpoints' hosts (two a candidate), sorted, and the slot of each."""
        if self._by_host is None:
            slots = np.array([c.slot for c in self.candidates.values()], np.int64)
            hosts = self.slot_hosts[slots].reshape(-1)
            order = np.argsort(hosts)
            self._by_host = hosts[order], np.repeat(slots, 2)[order]
        return self._by_host

    # ------------------------------------------------------------------ per batch

    def add(
        self,
        ts: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        dkey: npt.NDArray[np.uint64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
        admit: list[Candidate],
        busiest: list[Busiest],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
        """One batch of IP rows: ``size`` is each packet's IP length; ``admit`` the new
        candidates the engine found in it; ``busiest`` its busiest hosts.  Each row's candidate
        slot (-1 for none) comes back, and the rows that have one."""
        if admit:
            given = []
            now = float(ts.max()) if len(self.candidates) + len(admit) > MAX_CANDIDATES else 0.0
            for cand in admit:
                if len(self.candidates) >= MAX_CANDIDATES:
                    self._make_room(now)
                given.append(self._admit(cand))
            self._clear(given)
        if not len(ts):
            return np.zeros(0, np.int64), np.zeros(0, np.intp)
        bins = np.floor(ts / BIN).astype(np.int64)
        ub, inv = bin_groups(bins)
        if self.closed_through is None:
            self.closed_through = int(ub[0]) - 1
        # Every packet in an open bin (the least bin is open), or some came too late.
        every = int(ub[0]) > self.closed_through
        every_dkey = dkey
        if not every:
            fresh = bins > self.closed_through
            ts, size, dkey, src_h, dst_h, bins = (
                a[fresh] for a in (ts, size, dkey, src_h, dst_h, bins)
            )
            if not len(bins):  # every packet came too late
                slot = self.slots_of(every_dkey)
                return slot, np.flatnonzero(slot >= 0)
            ub, inv = bin_groups(bins)
        size = size.astype(np.int64, copy=False)
        # Every packet is native traffic, candidates' too (one may be the original of another):
        # each candidate subtracts its own endpoints' traffic (excl).
        keys, hosts = self._keys_sorted(), self._hosts_sorted()
        got = batch_series(len(ub), inv, size, src_h, dst_h, dkey, *keys, *hosts)
        _add_bins(self.open_native, ub, got.native)
        # The busiest hosts' bytes as ranked are theirs, unless some packets came too late or
        # went from a host to itself (counted once here).
        self._add_busiest(busiest, size, src_h, dst_h, every and not (src_h == dst_h).any())
        slot = got.slot
        # The candidates' own rows (most rows are no candidate's).
        own = np.flatnonzero(slot >= 0) if self.candidates else slot[:0]
        if self.candidates:
            if len(own):
                self._add_own(ub, ts, size, slot, own, got.own)
            if got.touched:
                _add_bins(self.open_excl, ub, got.excl)
        # This batch's packets join the ring first: they may be the originals of its copies.
        self._ring_add(ts, size, src_h, dst_h)
        sizing = [
            c for c in self.candidates.values() if c.proto != 6 and c.checked < MAX_CHECKS
        ]  # a byte stream has no packet boundaries to compare
        if sizing and len(own):
            by_slot = own[np.argsort(slot[own], kind="stable")]
            first = np.searchsorted(slot[by_slot], [c.slot for c in sizing])
            last = np.searchsorted(slot[by_slot], [c.slot for c in sizing], side="right")
            for c, a, z in zip(sizing, first.tolist(), last.tolist(), strict=True):
                mine = by_slot[a:z]
                if len(mine):
                    pick = mine[:: max(1, len(mine) // SAMPLE_PER_BATCH)][:SAMPLE_PER_BATCH]
                    self._sizes(c, ts[pick], size[pick])
        self.newest = max(self.newest, int(ub[-1]))
        if not every:
            slot = self.slots_of(every_dkey)
            own = np.flatnonzero(slot >= 0)
        return slot, own

    def settle(self) -> None:
        """Close the bins no packet can still join (called once per batch, after its
        reassembled datagrams, which come last with earlier times)."""
        if self.closed_through is not None:
            self._close(self.newest - REORDER_BINS)

    def _add_busiest(
        self,
        busiest: list[Busiest],
        size: npt.NDArray[np.int64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
        as_ranked: bool,
    ) -> None:
        """Who is in each bucket: the busiest hosts of the batch, by bytes (a packet counts once
        for a host, even when it is both its source and its destination): their bytes as ranked
        when ``as_ranked``, else counted again over the rows."""
        if not busiest:
            return
        if as_ranked:
            host_bytes = [b for _, _, b in busiest]
        else:
            named = np.array([h for h, _, _ in busiest], np.uint64)
            order = np.argsort(named)
            ranked = named[order]
            # (float sums: bincount of no rows at all would give integers)
            sums = np.zeros(len(named))
            rows, at = _find(ranked, src_h)
            sums += np.bincount(at, weights=size[rows], minlength=len(named))
            rows, at = _find(ranked, dst_h)
            once = src_h[rows] != dst_h[rows]
            rows, at = rows[once], at[once]
            sums += np.bincount(at, weights=size[rows], minlength=len(named))
            by_rank = np.empty(len(named))
            by_rank[order] = sums
            host_bytes = by_rank.tolist()
        for (h, host, _), b in zip(busiest, host_bytes, strict=True):
            bucket = self.bucket_hosts[h % HOST_BUCKETS]
            bucket[host] = bucket.get(host, 0.0) + b
            if len(bucket) > 4 * MAX_TRACKED:
                keep = sorted(bucket.items(), key=lambda kv: -kv[1])[: 2 * MAX_TRACKED]
                self.bucket_hosts[h % HOST_BUCKETS] = dict(keep)

    def _add_own(
        self,
        ub: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        slot: npt.NDArray[np.int64],
        own: npt.NDArray[np.intp],
        per_bin: npt.NDArray[np.float64],
    ) -> None:
        """The candidates' own packets (rows ``own``): counts, and bytes per open bin
        (``per_bin``)."""
        s, sz = slot[own], size[own]
        _add_bins(self.open_own, ub, per_bin)
        packets = np.bincount(s, minlength=MAX_CANDIDATES).tolist()
        sent = np.bincount(s, weights=sz, minlength=MAX_CANDIDATES).tolist()
        newest = np.full(MAX_CANDIDATES, -np.inf)
        np.maximum.at(newest, s, ts[own])
        last = newest.tolist()
        for c in self.candidates.values():
            if packets[c.slot]:
                c.packets += packets[c.slot]
                c.bytes += int(sent[c.slot])
                c.last_seen = max(c.last_seen, last[c.slot])

    def _ring_add(
        self,
        ts: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
    ) -> None:
        """Keep the last NATIVE_RING packets in time order (for window look-ups)."""
        n = len(ts)
        if not n:
            return
        a, b = self.ring_at
        if n >= NATIVE_RING:
            # The batch alone fills the ring: nothing of the ring before it is kept.
            a, b = 0, 0
        elif b + n > self.ring.shape[1]:
            # Out of room: the packets still kept move to the front.
            keep = min(b - a, NATIVE_RING - n)
            self.ring[:, :keep] = self.ring[:, b - keep : b]
            a, b = 0, keep
        # Only the batch's last NATIVE_RING packets can be kept, each column in its ring row.
        m = min(n, NATIVE_RING)
        u = np.uint64
        for row, column in enumerate((ts.view(u), size.view(u), src_h, dst_h)):
            self.ring[row, b : b + m] = column[n - m :]
        b += m
        self.ring_at = a, b = max(a, b - NATIVE_RING), b
        if n > 1 and (ts[1:] < ts[:-1]).any():
            kept = self.ring[:, a:b]
            kept[:] = kept[:, np.argsort(kept[0].view(np.float64), kind="stable")]

    def _sizes(
        self, c: Candidate, ts: npt.NDArray[np.float64], size: npt.NDArray[np.int64]
    ) -> None:
        """Size differences to the native packets just before each sampled packet (copy window)
        and to those of an earlier window (control); each difference once per sampled packet."""
        cuts = np.searchsorted(
            self.ring_ts,
            np.concatenate([ts - 3 * MATCH_WINDOW, ts - 2 * MATCH_WINDOW, ts - MATCH_WINDOW, ts]),
            side="right",
        ).reshape(4, -1)
        c.checked += len(ts)
        src, dst = self.ring_src, self.ring_dst
        other = (src != c.src_h) & (dst != c.src_h) & (src != c.dst_h) & (dst != c.dst_h)
        # The endpoints' own packets are too long to differ by less than MAX_DELTA from any.
        lengths = np.where(other, self.ring_len, np.int64(1 << 40))
        size_deltas(lengths, size, cuts[2], cuts[3], c.deltas)
        size_deltas(lengths, size, cuts[0], cuts[1], c.control)

    def _close(self, through: int) -> None:
        """Close every bin up to ``through``: fold it into each candidate's running sums.
        Stretches with no traffic at all longer than the lags are skipped, not counted."""
        if self.closed_through is None or through <= self.closed_through:
            return
        start = self.closed_through + 1
        for lo, hi in self._segments(through):
            lo = max(lo, start)
            if self.folded_through is not None and lo - self.folded_through <= MAX_LAG + 1:
                lo = self.folded_through + 1  # the silent bins in between count as silence
            else:
                # A silence longer than the lags: nothing lagged reaches past it.
                self.native_ring[:] = 0.0
                self.views["excl_ring"][:] = 0.0
            end = min(hi + MAX_LAG, through)
            for a in range(lo, end + 1, MAX_BLOCK):
                self._close_block(a, min(a + MAX_BLOCK - 1, end))
            self.folded_through = end
        for open_bins in (self.open_native, self.open_own, self.open_excl):
            _drop_through(open_bins, through)
        self.closed_through = through

    def _segments(self, through: int) -> list[list[int]]:
        """Runs [first, last] of bins up to ``through`` with traffic that lie within the lags
        of each other (a candidate's own packets are native traffic too)."""
        segments: list[list[int]] = []
        for b in sorted(b for b in self.open_native if b <= through):
            if segments and b - segments[-1][1] <= MAX_LAG + 1:
                segments[-1][1] = b
            else:
                segments.append([b, b])
        return segments

    def _close_block(self, a: int, z: int) -> None:
        """Fold bins a..z (consecutive) into the running sums, with the lags reaching back into
        the rings of earlier bins."""
        n = z - a + 1
        rows = np.zeros((n, WIDTH))
        for b in range(a, z + 1):
            row = self.open_native.pop(b, None)
            if row is not None:
                rows[b - a] = row
        full = np.concatenate([self.native_ring[1:], rows])  # (RING - 1 + n, WIDTH)
        self.native_ring = full[-RING:].copy()
        cands = list(self.candidates.values())
        if not cands:
            return
        # The candidates' own bytes and endpoints' traffic in these bins, per slot.
        y = np.zeros((MAX_CANDIDATES, n))
        excl = np.zeros((MAX_CANDIDATES, n, WIDTH))
        for b in [b for b in self.open_own if a <= b <= z]:
            y[:, b - a] = self.open_own.pop(b)
        for b in [b for b in self.open_excl if a <= b <= z]:
            excl[:, b - a] = self.open_excl.pop(b)
        slots = np.array([c.slot for c in cands], np.int64)
        first = np.array([c.first_bin for c in cands], np.int64)
        fold(full, self.slot_floats, excl, y, slots, first, a)

    def _make_room(self, now: float) -> None:
        """Drop the candidate idle longest, or failing that the one with the fewest bytes."""
        victim = min(
            self.candidates.values(), key=lambda c: (c.last_seen > now - 60, c.flow_bytes + c.bytes)
        )
        del self.candidates[victim.key]
        self.free.append(victim.slot)
        self._by_key = self._by_host = None

    # ------------------------------------------------------------------ results

    def verdicts(self) -> list[tuple[Candidate, Verdict]]:
        """Candidates whose byte rate tracks native traffic well enough to report."""
        out = []
        for c in self.candidates.values():
            v = self._judge(c)
            if v is not None and v.correlation >= REPORT_CORRELATION:
                out.append((c, v))
        return out

    def _judge(self, c: Candidate) -> Verdict | None:
        if c.fine.n < MIN_BINS or c.fine.active < MIN_ACTIVE_BINS:
            return None
        best: tuple[float, int, int, Sums, float] | None = None
        for sums, width in ((c.fine, BIN), (c.wide, WIDE * BIN)):
            if sums is c.wide and sums.n < MIN_WIDE_BINS:
                continue
            r = sums.correlation()
            # A bucket that holds either endpoint says nothing about this candidate.
            r[1 + c.src_h % HOST_BUCKETS] = 0.0
            r[1 + c.dst_h % HOST_BUCKETS] = 0.0
            series, lag = np.unravel_index(int(np.argmax(r)), r.shape)
            if best is None or float(r[series, lag]) > best[0]:
                best = (float(r[series, lag]), int(series), int(lag), sums, width)
        assert best is not None
        corr, series, lag, sums, width = best
        native_bytes = float(sums.sx[series, lag])
        ratio = sums.sy / native_bytes if native_bytes > 0 else 0.0
        tracked = [(h, b) for h, b in self._tracked(series) if h not in (c.src, c.dst)]
        matched, overhead = self._overhead(c)
        return Verdict(
            correlation=round(corr, 4),
            lag_s=round(lag * BIN, 3),
            series="all" if series == 0 else f"bucket {series - 1}",
            bytes_ratio=round(ratio, 3),
            bins=c.fine.n,
            active_bins=c.fine.active,
            window_s=width,
            matched_share=matched,
            overhead=overhead,
            tracked=tracked,
        )

    def _tracked(self, series: int) -> list[tuple[str, float]]:
        buckets = self.bucket_hosts if series == 0 else [self.bucket_hosts[series - 1]]
        merged = {host_name(host): b for bucket in buckets for host, b in bucket.items()}
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[: MAX_TRACKED + 2]

    @staticmethod
    def _overhead(c: Candidate) -> tuple[float | None, int | None]:
        if c.checked < MIN_ACTIVE_BINS:
            return None, None
        window = np.ones(PAD, np.int64)
        hit = np.convolve(c.deltas, window)[PAD - 1 :]
        ctl = np.convolve(c.control, window)[PAD - 1 :]
        excess = hit - ctl
        start = int(np.argmax(excess))
        share = max(0.0, float(excess[start]) / c.checked)
        return round(min(1.0, share), 4), start


def _buckets(hosts: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
    """Each host's bucket: a power of two of them, so the low bits of its hash."""
    return (hosts & np.uint64(HOST_BUCKETS - 1)).astype(np.intp)


def _per_bin(
    cells: int,
    cell: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    bucket_s: npt.NDArray[np.intp],
    bucket_d: npt.NDArray[np.intp],
) -> npt.NDArray[np.float64]:
    """The packets' bytes per cell, (cells, WIDTH): packet i to row ``cell[i]``, in series 0
    (all) and in those of its hosts' buckets (once per bucket)."""
    weight = size.astype(np.float64)
    base = cell * HOST_BUCKETS
    # Sums of whole bytes: exact in any order.
    per = np.empty((cells, WIDTH))
    per[:, 0] = np.bincount(cell, weights=weight, minlength=cells)
    per[:, 1:] = (
        np.bincount(base + bucket_s, weights=weight, minlength=cells * HOST_BUCKETS)
        + np.bincount(
            base + bucket_d,
            weights=np.where(bucket_d != bucket_s, weight, 0.0),
            minlength=cells * HOST_BUCKETS,
        )
    ).reshape(cells, HOST_BUCKETS)
    return per


def _add_bins(
    open_bins: dict[int, npt.NDArray[np.float64]],
    ub: npt.NDArray[np.int64],
    per: npt.NDArray[np.float64],
) -> None:
    """Add ``per[i]`` to the open bin ``ub[i]`` of each i."""
    for b, row in zip(ub.tolist(), per, strict=True):
        have = open_bins.get(b)
        if have is None:
            open_bins[b] = row
        else:
            have += row


@dataclass(repr=False, eq=False, slots=True)
class BatchSeries:
    """One batch's bytes per open bin (``ub``, in order): of all its packets (``native``, per
    series), of each candidate's own packets (``own``, per slot), and of the packets from or to
    each candidate's endpoints (``excl``, per slot and series; ``touched`` (row, candidate)
    pairs went there); and each row's candidate slot, -1 for none."""

    native: npt.NDArray[np.float64]  # (bins, WIDTH)
    own: npt.NDArray[np.float64]  # (bins, MAX_CANDIDATES)
    excl: npt.NDArray[np.float64]  # (bins, MAX_CANDIDATES, WIDTH)
    slot: npt.NDArray[np.int64]
    touched: int


def batch_series(
    bins: int,
    inv: npt.NDArray[np.intp],
    size: npt.NDArray[np.int64],
    src_h: npt.NDArray[np.uint64],
    dst_h: npt.NDArray[np.uint64],
    dkey: npt.NDArray[np.uint64],
    keys: npt.NDArray[np.uint64],
    key_slots: npt.NDArray[np.int64],
    hosts: npt.NDArray[np.uint64],
    host_slots: npt.NDArray[np.int64],
    compiled: bool = use_compiled,
) -> BatchSeries:
    """The series of a batch's rows (row i in bin ``inv[i]``), given the candidates' directed
    keys and their endpoints' hosts, each sorted beside its slot: one compiled pass over the
    rows where built (``compiled``), else numpy; the same sums (of whole bytes: exact in any
    order)."""
    own = np.zeros((bins, MAX_CANDIDATES))
    excl = np.zeros((bins, MAX_CANDIDATES, WIDTH))
    if compiled:
        assert COPIES is not None, "the compiled copy loops are not built"
        native = np.zeros((bins, WIDTH))
        slot = np.empty(len(inv), np.int64)
        column = np.ascontiguousarray
        touched = COPIES.series(
            column(inv, dtype=np.int64), column(size, dtype=np.int64),
            *(column(c, dtype=np.uint64) for c in (src_h, dst_h, dkey, keys)),
            column(key_slots, dtype=np.int64), column(hosts, dtype=np.uint64),
            column(host_slots, dtype=np.int64), native, own, excl, slot,
            MAX_CANDIDATES, HOST_BUCKETS,
        )  # fmt: skip
        return BatchSeries(native, own, excl, slot, touched)
    bucket_s, bucket_d = _buckets(src_h), _buckets(dst_h)
    native = _per_bin(bins, inv, size, bucket_s, bucket_d)
    slot = _slots(keys, key_slots, dkey, compiled=False)
    mine = np.nonzero(slot >= 0)[0]
    if len(mine):
        cell = inv[mine] * MAX_CANDIDATES + slot[mine]
        own = np.bincount(cell, weights=size[mine], minlength=bins * MAX_CANDIDATES)
        own = own.reshape(bins, MAX_CANDIDATES)
    rows, slots = _touching(hosts, host_slots, src_h, dst_h)
    if len(rows):
        cell = inv[rows] * MAX_CANDIDATES + slots
        excl = _per_bin(bins * MAX_CANDIDATES, cell, size[rows], bucket_s[rows], bucket_d[rows])
        excl = excl.reshape(bins, MAX_CANDIDATES, WIDTH)
    return BatchSeries(native, own, excl, slot, len(rows))


def bin_groups(
    bins: npt.NDArray[np.int64], compiled: bool = use_compiled
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """The distinct ``bins`` (sorted) and each row's place among them, as ``groups.spread``
    gives them: by one compiled pass over a table of their range where built (``compiled``) and
    the range is short, else by ``spread``."""
    if compiled and len(bins):
        assert COPIES is not None, "the compiled copy loops are not built"
        distinct_bins, group = np.empty(len(bins), np.int64), np.empty(len(bins), np.intp)
        k = COPIES.spread(np.ascontiguousarray(bins, dtype=np.int64), distinct_bins, group)
        if k >= 0:
            return distinct_bins[:k], group
    return spread(bins)


def _slots(
    keys: npt.NDArray[np.uint64],
    key_slots: npt.NDArray[np.int64],
    dkey: npt.NDArray[np.uint64],
    compiled: bool = use_compiled,
) -> npt.NDArray[np.int64]:
    """Each row's slot: that of its directed key among the sorted candidates' ``keys``, or -1
    where it is none of them."""
    slot = np.full(len(dkey), -1, np.int64)
    if len(keys):
        rows, at = _find(keys, dkey, compiled)
        slot[rows] = key_slots[at]
    return slot


def _touching(
    hosts: npt.NDArray[np.uint64],
    owner: npt.NDArray[np.int64],
    src_h: npt.NDArray[np.uint64],
    dst_h: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Pairs (row, slot) of rows from or to either endpoint of a candidate (``hosts``, sorted,
    of the candidates ``owner``), each once, in order."""
    codes = []
    for side in (src_h, dst_h):
        rows, lo = _find(hosts, side, compiled=False)
        if not len(rows):
            continue
        # Candidates may share an endpoint: every one of them, from the first.
        n = np.searchsorted(hosts, side[rows], side="right") - lo
        codes.append(np.repeat(rows, n) * MAX_CANDIDATES + owner[_ranges(lo, n)])
    if not codes:
        empty = np.zeros(0, np.int64)
        return empty, empty
    code = distinct(np.concatenate(codes))
    return code // MAX_CANDIDATES, code % MAX_CANDIDATES


# Low bits of the hashes that index the membership table of _find.
FIND_BITS = np.uint64((1 << 12) - 1)


def _find(
    keys: npt.NDArray[np.uint64], values: npt.NDArray[np.uint64], compiled: bool = use_compiled
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The rows of ``values`` found among a few sorted ``keys``, and the first place of each
    among them: one compiled pass with a table of the keys where built (``compiled``), else a
    table of the keys' low bits passes the few rows worth a binary search (hashes: their low
    bits are as good as any)."""
    if compiled:
        assert COPIES is not None, "the compiled copy loops are not built"
        out = np.empty(len(values), np.intp), np.empty(len(values), np.intp)
        column = np.ascontiguousarray
        m = COPIES.find(column(keys, dtype=np.uint64), column(values, dtype=np.uint64), *out)
        return out[0][:m], out[1][:m]
    table = np.zeros(int(FIND_BITS) + 1, np.bool_)
    table[(keys & FIND_BITS).astype(np.intp)] = True
    rows = np.nonzero(table[(values & FIND_BITS).astype(np.intp)])[0]
    at, hit = locate(keys, values[rows])
    return rows[hit], at[hit]


def size_deltas(
    lengths: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    lo: npt.NDArray[np.int64],
    hi: npt.NDArray[np.int64],
    hist: npt.NDArray[np.int64],
    compiled: bool = use_compiled,
) -> None:
    """For each sampled packet i, the differences ``size[i] - lengths[j]`` over j in
    ``lo[i]:hi[i]`` that fall in ``0 .. len(hist) - 1``, each counted once: ``hist[d] += 1``.
    One compiled loop over the pairs where built (``compiled``), else numpy: the same counts."""
    if compiled:
        assert COPIES is not None, "the compiled copy loops are not built"
        column = np.ascontiguousarray
        COPIES.size_deltas(
            column(lengths, dtype=np.int64), column(size, dtype=np.int64),
            column(lo, dtype=np.int64), column(hi, dtype=np.int64), hist,
        )  # fmt: skip
        return
    deltas = len(hist)
    n = np.maximum(hi - lo, 0)
    # Samples a few at a time: each may look at up to NATIVE_RING packets.
    ends = np.cumsum(n)
    a = 0
    while a < len(n):
        z = max(a + 1, int(np.searchsorted(ends, ends[a] - n[a] + MAX_PAIRS)))
        d = np.repeat(size[a:z], n[a:z]) - lengths[_ranges(lo[a:z], n[a:z])]
        ok = d.view(np.uint64) < deltas  # 0 <= d < deltas
        cell = np.repeat(np.arange(z - a) * deltas, n[a:z])[ok] + d[ok]
        # Each difference once per sampled packet.
        seen = np.zeros((z - a) * deltas, np.bool_)
        seen[cell] = True
        hist += seen.reshape(z - a, deltas).sum(axis=0)
        a = z


def _ranges(start: npt.NDArray[np.intp], length: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The indexes start[i] .. start[i] + length[i] - 1 of every i, one after the other."""
    ends = np.cumsum(length)
    return np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - length - start, length)


def fold(
    full: npt.NDArray[np.float64],
    floats: npt.NDArray[np.float64],
    excl_new: npt.NDArray[np.float64],
    y_new: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    a: int,
    compiled: bool = use_compiled,
) -> None:
    """Fold n closed bins ``a`` .. ``a + n - 1`` into the rows of ``floats`` (see SLOT_PARTS) of
    the candidates in ``slots``, each counted from its bin ``first`` (its 1 s windows from the
    tenth): their rings move on, and the bins go into their running sums and counts.  ``full``
    holds the native bytes per series of the RING - 1 bins before and of these; ``excl_new``
    and ``y_new`` per slot the bins' bytes of its endpoints' traffic per series and its own.
    One compiled pass over the candidates where built (``compiled``), else numpy a few
    candidates at a time: the same sums, added in the same order."""
    if compiled:
        assert COPIES is not None, "the compiled copy loops are not built"
        column = np.ascontiguousarray
        COPIES.fold(
            column(full, dtype=np.float64), floats, column(excl_new, dtype=np.float64),
            column(y_new, dtype=np.float64), column(slots, dtype=np.int64),
            column(first, dtype=np.int64), a, RING, WIDE, MAX_LAG + 1, WIDTH,
        )  # fmt: skip
        return
    views = slot_views(floats)
    n = len(full) - (RING - 1)
    bins = np.arange(a, a + n)
    # The lagged series of one bin are WIDTH × (MAX_LAG + 1).
    step = max(1, MAX_BLOCK // n)
    for k in range(0, len(slots), step):
        _fold_numpy(views, full, bins, y_new, excl_new, slots[k : k + step], first[k : k + step])


def _fold_numpy(
    views: dict[object, npt.NDArray[np.float64]],
    full: npt.NDArray[np.float64],
    bins: npt.NDArray[np.int64],
    y_all: npt.NDArray[np.float64],
    excl_all: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
) -> None:
    """:func:`fold` of the candidates ``slots``, with numpy."""
    n = len(bins)
    excl_ring, y_ring = views["excl_ring"], views["y_ring"]
    cfull = np.concatenate([excl_ring[slots, 1:], excl_all[slots]], axis=1)
    excl_ring[slots] = cfull[:, -RING:]
    y = y_all[slots]
    yfull = np.concatenate([y_ring[slots], y], axis=1)
    y_ring[slots] = yfull[:, -(WIDE - 1) :]
    valid = bins >= first[:, None]
    if not valid.any():
        return
    d = np.maximum(full - cfull, 0.0)
    # x[c, i, series, lag]: the native bytes of the bin `lag` bins before bin i.
    x = sliding_window_view(d, MAX_LAG + 1, axis=1)[:, -n:, :, ::-1]
    _sum_numpy(views, "fine", slots, y, x, valid)
    # The same over sliding 1 s windows.
    cs = np.concatenate([np.zeros((len(slots), 1, WIDTH)), np.cumsum(d, axis=1)], axis=1)
    dw = cs[:, WIDE:] - cs[:, :-WIDE]
    xw = sliding_window_view(dw, MAX_LAG + 1, axis=1)[:, -n:, :, ::-1]
    ycs = np.concatenate([np.zeros((len(slots), 1)), np.cumsum(yfull, axis=1)], axis=1)
    yw = (ycs[:, WIDE:] - ycs[:, :-WIDE])[:, -n:]
    _sum_numpy(views, "wide", slots, yw, xw, bins >= first[:, None] + WIDE - 1)


def _sum_numpy(
    views: dict[object, npt.NDArray[np.float64]],
    res: str,
    slots: npt.NDArray[np.int64],
    y: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
    take: npt.NDArray[np.bool_],
) -> None:
    """Add the bins ``take`` of each candidate to its sums and counts of resolution ``res``:
    those that take every bin all at once, the others one by one; the sums over the bins
    first, then added to the running ones."""
    sums, counts = [views[res, part] for part in SUMS], views[res, "counts"]
    whole = np.nonzero(take.all(axis=1))[0]
    if len(whole):
        yk, xk = y[whole], x[whole]  # copies, each candidate's bins in order
        at = slots[whole]
        sums[0][at] += xk.sum(axis=1)
        sums[1][at] += (xk * xk).sum(axis=1)
        sums[2][at] += np.einsum("ci,cijk->cjk", yk, xk)
        counts[at, 0] += y.shape[1]
        counts[at, 1] += (yk > 0).sum(axis=1)
        counts[at, 2] += yk.sum(axis=1)
        counts[at, 3] += (yk * yk).sum(axis=1)
    for i in np.nonzero(take.any(axis=1) & ~take.all(axis=1))[0].tolist():
        yi, xi, at = y[i][take[i]], x[i][take[i]], slots[i]
        sums[0][at] += xi.sum(axis=0)
        sums[1][at] += (xi * xi).sum(axis=0)
        sums[2][at] += np.einsum("i,ijk->jk", yi, xi)
        counts[at] += (len(yi), int((yi > 0).sum()), float(yi.sum()), float((yi * yi).sum()))


def _drop_through(bins: dict[int, Any], through: int) -> None:
    """Forget the open bins up to ``through`` (they are closed)."""
    for b in [b for b in bins if b <= through]:
        del bins[b]


# ---------------------------------------------------------------------- engine glue

OPAQUE_LUT = lut((6, 17, 50))
READABLE_KINDS = frozenset({"mirror", "intercept", "flow-export"})
MAX_ADMIT_PER_BATCH = 4
NAMED_HOSTS_PER_BATCH = 32
# Packets of a candidate looked at for a record header or banner that names its carrier.
SNIFF_PACKETS = 64


def observe(
    ec: EncryptedCopies,
    batch: PacketBatch,
    h: Headers,
    rows: npt.NDArray[np.int64],
    keys: RowKeys,
    fids: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    streams: Mapping[int, Stream],
) -> None:
    """Feed one batch of IP rows (the engine's columns) to ``ec``: admit new candidates, name the
    busiest hosts, and add every packet's size and time."""
    if not len(rows):
        return
    size = h.iplen[rows]
    dkey = keys.directed
    # The flows' counters column by column (packets, packets back, bytes, bytes back).
    column = counts.ravel(order="F")
    eligible = eligible_rows(rows, h.proto, keys.direction, fids, column)
    if len(ec.candidates) and len(eligible):
        eligible = eligible[ec.slots_of(dkey[eligible]) < 0]
    admit: list[Candidate] = []
    for key, x in _least_keys(dkey, eligible, MAX_ADMIT_PER_BATCH):
        st = streams.get(key)
        known = st.evidence if st is not None else None
        if known is not None and known.kind in READABLE_KINDS:
            continue
        c = _candidate(batch, h, int(rows[x]), key, keys, x, known, ec.names)
        c.flow_bytes = int(column[(2 + int(keys.direction[x])) * len(counts) + int(fids[x])])
        admit.append(c)
    # The busiest hosts of the batch (for the tracked hosts of a finding), with their address
    # words as first seen.
    top, ec.batch_hosts = _busiest_hosts(keys, size, NAMED_HOSTS_PER_BATCH, expect=ec.batch_hosts)
    place = np.array([x for _, x, _ in top], np.int64)
    r = rows[place % len(rows)]
    words = np.where((place >= len(rows))[:, None], h.dst[r], h.src[r]).tolist()
    busiest = [
        (host, (v, *w), b)
        for (host, _, b), v, w in zip(top, h.ipver[r].tolist(), words, strict=True)
    ]
    slot, own = ec.add(batch.ts[rows], size, dkey, keys.src_host, keys.dst_host, admit, busiest)
    # A candidate joined mid-stream: a record or banner at the start of a later segment names
    # its carrier.
    generic = [c for c in ec.candidates.values() if c.carrier in ("tcp", "udp")]
    sniff = [c for c in generic if c.sniffed < SNIFF_PACKETS]
    for c in sniff:
        for x in own[slot[own] == c.slot][:4].tolist():
            c.sniffed += 1
            r = int(rows[x])
            start = int(batch.offsets[r]) + int(h.pay[r])
            head = batch.data[start : start + 8].tobytes()
            c.carrier = carrier_of(c.proto, c.sport, c.dport, head, None)


def eligible_rows(
    rows: npt.NDArray[np.int64],
    proto: npt.NDArray[np.int64],
    direction: npt.NDArray[np.int8],
    fids: npt.NDArray[np.int64],
    counters: npt.NDArray[np.int64],
    compiled: bool = use_compiled,
) -> npt.NDArray[np.intp]:
    """The places of the batch ``rows`` (IP protocol ``proto``, a column of the batch) that
    could be candidates: an opaque protocol, and a flow (``fids``, whose ``counters`` are given
    column by column: packets, packets back, bytes, bytes back) that has sent MIN_PACKETS and
    MIN_BYTES in the row's ``direction``.  One compiled pass where built (``compiled``), else
    numpy."""
    if compiled:
        assert COPIES is not None, "the compiled copy loops are not built"
        out = np.empty(len(rows), np.intp)
        column = np.ascontiguousarray
        m = COPIES.eligible(
            column(rows, dtype=np.int64), column(proto, dtype=np.int64),
            column(direction, dtype=np.int8), column(fids, dtype=np.int64),
            column(counters, dtype=np.int64), OPAQUE_LUT, out, MIN_PACKETS, MIN_BYTES,
        )  # fmt: skip
        return out[:m]
    flows = len(counters) // 4
    # This direction's packets of every row, and bytes only of the rows with packets enough.
    packets_at = direction.astype(np.int64) * flows + fids
    eligible = np.nonzero(OPAQUE_LUT[proto[rows]] & (counters[packets_at] >= MIN_PACKETS))[0]
    return eligible[counters[packets_at[eligible] + 2 * flows] >= MIN_BYTES]


def _least_keys(
    keys: npt.NDArray[np.uint64], rows: npt.NDArray[np.intp], n: int
) -> list[tuple[int, int]]:
    """The ``n`` least distinct ``keys[rows]``, each with its first row, least first (the first
    ``n`` groups of ``group``, without sorting every row)."""
    least = []
    values = keys[rows]
    while len(least) < n and len(values):
        key = values.min()
        same = values == key
        least.append((int(key), int(rows[int(np.argmax(same))])))
        values, rows = values[~same], rows[~same]
    return least


def _busiest_hosts(
    keys: RowKeys,
    size: npt.NDArray[np.int64],
    n: int,
    compiled: bool = use_compiled,
    expect: int = 0,
) -> tuple[list[tuple[int, int, float]], int]:
    """The ``n`` hosts with the most bytes in the batch (as sources or destinations), busiest
    first (equal bytes in the order first seen), each with the first place it is seen in
    ``[sources, destinations]`` and its bytes; and how many hosts the batch has (``expect``,
    the previous batch's, sizes the compiled pass's table)."""
    if compiled:
        hosts, first, weight = _host_bytes_compiled(keys, size, expect)
    else:
        hosts, first, weight = _host_bytes_numpy(keys, size)
    # A stable sort of every host's bytes, but only the hosts as heavy as the n-th are sorted.
    if len(weight) > n > 0:
        heavy = np.nonzero(weight >= np.partition(weight, len(weight) - n)[len(weight) - n])[0]
    else:
        heavy = np.arange(len(weight))
    top = heavy[np.argsort(-weight[heavy], kind="stable")][:n]
    busiest = zip(hosts[top].tolist(), first[top].tolist(), weight[top].tolist(), strict=True)
    return list(busiest), len(hosts)


HostBytes = tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _host_bytes_compiled(keys: RowKeys, size: npt.NDArray[np.int64], expect: int = 0) -> HostBytes:
    """The batch's distinct hosts in the order first seen in ``[sources, destinations]``, with
    that place and their bytes: one compiled pass with a table of the hosts, first sized for
    ``expect`` of them."""
    assert COPIES is not None, "the compiled copy loops are not built"
    places = 2 * len(size)
    out = np.empty(places, np.uint64), np.empty(places, np.int64), np.empty(places)
    column = np.ascontiguousarray
    k = COPIES.host_bytes(
        column(keys.src_host, dtype=np.uint64), column(keys.dst_host, dtype=np.uint64),
        column(size, dtype=np.int64), *out, expect,
    )  # fmt: skip
    return out[0][:k], out[1][:k], out[2][:k]


def _host_bytes_numpy(keys: RowKeys, size: npt.NDArray[np.int64]) -> HostBytes:
    """:func:`_host_bytes_compiled`'s hosts, by sorting."""
    hosts = np.concatenate([keys.src_host, keys.dst_host])
    # One plain sort of the hashes with each place in their low bits puts every host's places
    # together, in order, for less than an argsort; hashes that differ only in those bits
    # (which would leave the hashes out of order) take the argsort.
    low = np.uint64((1 << max(1, (len(hosts) - 1).bit_length())) - 1)
    order = (np.sort((hosts & ~low) | np.arange(len(hosts), dtype=np.uint64)) & low).astype(np.intp)
    ranked = hosts[order]
    if np.any(ranked[1:] < ranked[:-1]):
        order = np.argsort(hosts, kind="stable")
        ranked = hosts[order]
    at, _ = runs(ranked)
    weight = np.add.reduceat(np.concatenate([size, size])[order].astype(np.float64), at)
    # Hosts by the first place each is seen at (the least of its places).
    first = order[at]
    by_place = np.full(len(hosts), -1, np.intp)
    by_place[first] = np.arange(len(at))
    seen = by_place[by_place >= 0]
    return ranked[at][seen], first[seen].astype(np.int64), weight[seen]


# Addresses kept written out for new candidates, at most (the same flows come back often).
MAX_NAMES = 4096


def _name(names: dict[HostAddress, str], h: Headers, r: int, dst: bool) -> str:
    """The source or destination address of batch row ``r`` as reports show it, written out
    once per host while ``names`` keeps it."""
    host: HostAddress = (int(h.ipver[r]), *(h.dst if dst else h.src)[r].tolist())
    name = names.get(host)
    if name is None:
        if len(names) >= MAX_NAMES:
            names.clear()
        name = names[host] = host_name(host)
    return name


def _candidate(
    batch: PacketBatch,
    h: Headers,
    r: int,
    key: int,
    keys: RowKeys,
    x: int,
    known: StreamEvidence | None,
    names: dict[HostAddress, str],
) -> Candidate:
    o = int(batch.offsets[r])
    start = o + int(h.pay[r]) if int(h.proto[r]) in (6, 17) else o + int(h.l4[r])
    head = batch.data[start : start + 8].tobytes() if start >= o else b""
    proto = int(h.proto[r])
    sport, dport = int(h.sport[r]), int(h.dport[r])
    ts = float(batch.ts[r])
    c = Candidate(
        key=key,
        src=_name(names, h, r, False),
        dst=_name(names, h, r, True),
        sport=sport,
        dport=dport,
        proto=proto,
        carrier=carrier_of(proto, sport, dport, head, known.protocol if known else None),
        src_h=int(keys.src_host[x]),
        dst_h=int(keys.dst_host[x]),
        flow_key=int(keys.flow[x]),
        direction=int(keys.direction[x]),
        flow_bytes=0,
        first_seen=ts,
        last_seen=ts,
        first_bin=int(np.floor(ts / BIN)) + 1,
    )
    if known is not None:
        c.src_mac, c.dst_mac = known.src_mac, known.dst_mac
    c.samples.append((ts, int(batch.linktype[r]), batch.packet(r)))
    return c


def evidence(ec: EncryptedCopies, flows: FlowTable) -> list[StreamEvidence]:
    """One stream record per candidate worth reporting, for the policy."""
    found = ec.verdicts()
    volume = {(c.src, c.sport, c.dst, c.dport): c.bytes for c, _ in found}
    # Native packets' mean size turns tracked bytes into packets.
    mean = max(float(ec.ring_len.mean()) if len(ec.ring_len) else 500.0, 1.0)
    return [
        _record(c, v, flows, mean)
        for c, v in found
        # The acknowledgements of a stream that is reported itself are left out.
        if volume.get((c.dst, c.dport, c.src, c.sport), -1) <= c.bytes
    ]


def _volume(c: Candidate, flows: FlowTable) -> tuple[int, int, float | None]:
    """Packets and bytes of the candidate: the flow's own from its start (both directions of a
    TCP connection, as its finding names the connection), or, once the flow table has let it
    go, those seen since it became a candidate; and the share of bytes that came back."""
    counts = flows.counters(c.flow_key)
    if counts is None:
        return c.packets, c.bytes, None
    sent, back = counts[2 + c.direction], counts[3 - c.direction]
    back_share = round(back / sent, 4) if sent else None
    if c.proto == 6:
        return counts[0] + counts[1], counts[2] + counts[3], back_share
    return counts[c.direction], counts[2 + c.direction], back_share


def _record(c: Candidate, v: Verdict, flows: FlowTable, mean: float) -> StreamEvidence:
    packets, size, back_share = _volume(c, flows)
    at = PacketContext(c.src, c.dst, c.sport, c.dport, ts=c.first_seen)
    s = StreamEvidence.begun(
        at, c.key ^ 0x5EC12E7, ENCRYPTED_COPY.name, "mirror", transport_name(c.proto)
    )
    s.src_mac, s.dst_mac, s.last_seen = c.src_mac, c.dst_mac, c.last_seen
    s.packets, s.bytes = packets, size
    # Each bin of correlated byte rates is one check of the candidate.
    s.decoded = s.validated = v.bins
    s.header_example = (
        f"{c.carrier} stream {c.src}:{c.sport} -> {c.dst}:{c.dport} whose content cannot be read"
    )
    s.sessions["carrier"] = Counter({c.carrier: 1})
    total = sum(b for _, b in v.tracked) or 1.0
    for host, b in v.tracked:
        s.hosts[host] = HostTally(packets=b / mean, bytes=b)
    s.carried_packets = total / mean
    s.outer_samples = list(c.samples)
    s.extra.update(
        carrier=c.carrier,
        correlation=v.correlation,
        lag_ms=round(1000 * v.lag_s),
        bytes_ratio=v.bytes_ratio,
        tracked_series=v.series,
        bins=v.bins,
        active_bins=v.active_bins,
        window_ms=round(1000 * v.window_s),
    )
    if back_share is not None:
        s.extra["bytes_back_share"] = back_share
    if v.matched_share is not None:
        s.extra["matched_share"] = v.matched_share
        s.extra["overhead_bytes"] = v.overhead
        s.extra["packets_checked"] = c.checked
    return s
