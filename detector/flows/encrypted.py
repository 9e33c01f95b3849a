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

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from detector.evidence import HostTally, StreamEvidence
from detector.flows.groups import distinct, group, spread
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
# Sampled packets per candidate after which the size test has seen enough.
MAX_CHECKS = 256
# Evidence is handed on from this correlation up (the policy sets the severities).
REPORT_CORRELATION = 0.5
MAX_TRACKED = 8
# Ports of TLS services, for naming a TCP carrier joined after its handshake.
TLS_PORTS = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 6514, 8443})


@dataclass
class Sums:
    """Running sums for Pearson correlation of one candidate's bytes (y) with each native
    series (x) at each lag: fixed size whatever the length of the capture."""

    n: int = 0
    active: int = 0
    sy: float = 0.0
    syy: float = 0.0
    sx: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SHAPE))
    sxx: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SHAPE))
    sxy: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SHAPE))

    def add(self, y: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> None:
        """``y`` (bins,), ``x`` (bins, series, lags)."""
        self.n += len(y)
        self.active += int((y > 0).sum())
        self.sy += float(y.sum())
        self.syy += float((y * y).sum())
        self.sx += x.sum(axis=0)
        self.sxx += (x * x).sum(axis=0)
        self.sxy += np.einsum("i,ijk->jk", y, x)

    def correlation(self) -> npt.NDArray[np.float64]:
        n = float(max(self.n, 1))
        vy = self.syy - self.sy * self.sy / n
        vx = self.sxx - self.sx * self.sx / n
        cov = self.sxy - self.sx * self.sy / n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((vx > 0) & (vy > 0), cov / np.sqrt(np.maximum(vx * vy, 1e-12)), 0.0)


@dataclass
class Candidate:
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
    # Per open bin: own bytes, bytes of its endpoints' other traffic.
    open_own: dict[int, float] = field(default_factory=dict)
    open_excl: dict[int, npt.NDArray[np.float64]] = field(default_factory=dict)
    # Closed bins of the endpoints' traffic per series, newest last (for the lagged series).
    excl_ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((RING, WIDTH)))
    # Running sums over closed bins: 100 ms bins, and sliding 1 s windows of them (a stream
    # tunnel's copies straddle bins as its congestion window lets them through).
    fine: Sums = field(default_factory=lambda: Sums())
    wide: Sums = field(default_factory=lambda: Sums())
    y_ring: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(WIDE - 1))
    # Per-packet size differences: copy window and control window.
    checked: int = 0
    deltas: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(MAX_DELTA, np.int64))
    control: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(MAX_DELTA, np.int64))
    samples: list[tuple[float, int, bytes]] = field(default_factory=list)
    sniffed: int = 0


@dataclass
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


class EncryptedCopies:
    """Byte-rate and size correlation of opaque outbound streams with the span's own traffic."""

    def __init__(self) -> None:
        self.candidates: dict[int, Candidate] = {}
        # Native bytes per open bin: row 0 all, rows 1.. host buckets.
        self.open_native: dict[int, npt.NDArray[np.float64]] = {}
        self.native_ring = np.zeros((RING, WIDTH))
        self.closed_through: int | None = None
        self.folded_through: int | None = None  # last bin in the lag rings
        self.newest = -(1 << 62)  # newest bin seen
        # Who is in each bucket (bounded): bucket → host → bytes.
        self.bucket_hosts: list[dict[str, float]] = [{} for _ in range(HOST_BUCKETS)]
        # Recent native packets for the per-packet test.
        self.ring_ts = np.zeros(0)
        self.ring_len = np.zeros(0, np.int64)
        self.ring_src = np.zeros(0, np.uint64)
        self.ring_dst = np.zeros(0, np.uint64)

    # ------------------------------------------------------------------ per batch

    def add(
        self,
        ts: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        dkey: npt.NDArray[np.uint64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
        admit: list[Candidate],
        name_of: dict[int, str],
    ) -> None:
        """One batch of IP rows: ``size`` is each packet's IP length; ``admit`` the new
        candidates the engine found in it; ``name_of`` an address for a few host hashes."""
        for cand in admit:
            if len(self.candidates) >= MAX_CANDIDATES:
                self._make_room(float(ts.max()))
            self.candidates[cand.key] = cand
        if not len(ts):
            return
        bins = np.floor(ts / BIN).astype(np.int64)
        if self.closed_through is None:
            self.closed_through = int(bins.min()) - 1
        fresh = bins > self.closed_through
        ts, size, dkey, src_h, dst_h, bins = (
            a[fresh] for a in (ts, size, dkey, src_h, dst_h, bins)
        )
        # Every packet is native traffic, candidates' too (one may be the original of another):
        # each candidate subtracts its own endpoints' traffic below.
        self._add_native(bins, size, src_h, dst_h, name_of)
        for c in self.candidates.values():
            mine = dkey == np.uint64(c.key)
            if mine.any():
                self._add_own(c, ts[mine], bins[mine], size[mine])
            touch = (src_h == c.src_h) | (dst_h == c.src_h) | (src_h == c.dst_h)
            touch |= dst_h == c.dst_h
            if touch.any():
                _add_bucket_sums(c.open_excl, bins[touch], size[touch], src_h[touch], dst_h[touch])
        # This batch's packets join the ring first: they may be the originals of its copies.
        self._ring_add(ts, size, src_h, dst_h)
        for c in self.candidates.values():
            if c.proto == 6:
                continue  # a byte stream has no packet boundaries to compare
            mine = np.nonzero(dkey == np.uint64(c.key))[0]
            if len(mine) and c.checked < MAX_CHECKS:
                pick = mine[:: max(1, len(mine) // SAMPLE_PER_BATCH)][:SAMPLE_PER_BATCH]
                self._sizes(c, ts[pick], size[pick])
        if len(bins):
            self.newest = max(self.newest, int(bins.max()))

    def settle(self) -> None:
        """Close the bins no packet can still join (called once per batch, after its
        reassembled datagrams, which come last with earlier times)."""
        if self.closed_through is not None:
            self._close(self.newest - REORDER_BINS)

    def _add_native(
        self,
        bins: npt.NDArray[np.int64],
        size: npt.NDArray[np.int64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
        name_of: dict[int, str],
    ) -> None:
        if not len(bins):
            return
        _add_bucket_sums(self.open_native, bins, size, src_h, dst_h)
        # Who is in each bucket: the hosts named this batch, by bytes.
        for h, name in name_of.items():
            bucket = self.bucket_hosts[h % HOST_BUCKETS]
            sel = (src_h == np.uint64(h)) | (dst_h == np.uint64(h))
            bucket[name] = bucket.get(name, 0.0) + float(size[sel].sum())
            if len(bucket) > 4 * MAX_TRACKED:
                keep = sorted(bucket.items(), key=lambda kv: -kv[1])[: 2 * MAX_TRACKED]
                self.bucket_hosts[h % HOST_BUCKETS] = dict(keep)

    def _add_own(
        self,
        c: Candidate,
        ts: npt.NDArray[np.float64],
        bins: npt.NDArray[np.int64],
        size: npt.NDArray[np.int64],
    ) -> None:
        c.packets += len(ts)
        c.bytes += int(size.sum())
        c.last_seen = max(c.last_seen, float(ts.max()))
        for b, v in zip(*_sum_by(bins, size), strict=True):
            c.open_own[b] = c.open_own.get(b, 0.0) + v

    def _ring_add(
        self,
        ts: npt.NDArray[np.float64],
        size: npt.NDArray[np.int64],
        src_h: npt.NDArray[np.uint64],
        dst_h: npt.NDArray[np.uint64],
    ) -> None:
        """Keep the last NATIVE_RING packets in time order (for window look-ups)."""
        if not len(ts):
            return
        self.ring_ts = np.concatenate([self.ring_ts, ts])[-NATIVE_RING:]
        self.ring_len = np.concatenate([self.ring_len, size])[-NATIVE_RING:]
        self.ring_src = np.concatenate([self.ring_src, src_h])[-NATIVE_RING:]
        self.ring_dst = np.concatenate([self.ring_dst, dst_h])[-NATIVE_RING:]
        if len(ts) > 1 and np.any(np.diff(ts) < 0):
            order = np.argsort(self.ring_ts, kind="stable")
            self.ring_ts, self.ring_len = self.ring_ts[order], self.ring_len[order]
            self.ring_src, self.ring_dst = self.ring_src[order], self.ring_dst[order]

    def _sizes(
        self, c: Candidate, ts: npt.NDArray[np.float64], size: npt.NDArray[np.int64]
    ) -> None:
        """Size differences to the native packets just before each sampled packet (copy window)
        and to those of an earlier window (control)."""
        ring_ts = self.ring_ts
        cuts = np.searchsorted(
            ring_ts,
            np.concatenate([ts - 3 * MATCH_WINDOW, ts - 2 * MATCH_WINDOW, ts - MATCH_WINDOW, ts]),
            side="right",
        ).reshape(4, -1)
        for k, s in enumerate(size.tolist()):
            c.checked += 1
            for lo, hi, hist in (
                (cuts[2, k], cuts[3, k], c.deltas),
                (cuts[0, k], cuts[1, k], c.control),
            ):
                if hi <= lo:
                    continue
                src, dst = self.ring_src[lo:hi], self.ring_dst[lo:hi]
                other = (src != c.src_h) & (dst != c.src_h) & (src != c.dst_h) & (dst != c.dst_h)
                d = s - self.ring_len[lo:hi][other]
                d = distinct(d[(d >= 0) & (d < MAX_DELTA)])
                hist[d] += 1

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
                for c in self.candidates.values():
                    c.excl_ring[:] = 0.0
            end = min(hi + MAX_LAG, through)
            for a in range(lo, end + 1, MAX_BLOCK):
                self._close_block(a, min(a + MAX_BLOCK - 1, end))
            self.folded_through = end
        for c in self.candidates.values():
            _drop_through(c.open_own, through)
            _drop_through(c.open_excl, through)
        _drop_through(self.open_native, through)
        self.closed_through = through

    def _segments(self, through: int) -> list[list[int]]:
        """Runs [first, last] of bins up to ``through`` with traffic, native or a candidate's
        own, that lie within the lags of each other."""
        data = {b for b in self.open_native if b <= through}
        for c in self.candidates.values():
            data.update(b for b in c.open_own if b <= through)
        segments: list[list[int]] = []
        for b in sorted(data):
            if segments and b - segments[-1][1] <= MAX_LAG + 1:
                segments[-1][1] = b
            else:
                segments.append([b, b])
        return segments

    def _close_block(self, a: int, z: int) -> None:
        """Fold bins a..z (consecutive) into the running sums, with the lags reaching back into
        the rings of earlier bins."""
        rows = np.zeros((z - a + 1, WIDTH))
        for b in range(a, z + 1):
            row = self.open_native.pop(b, None)
            if row is not None:
                rows[b - a] = row
        n = len(rows)
        full = np.concatenate([self.native_ring[1:], rows])  # (RING - 1 + n, WIDTH)
        self.native_ring = full[-RING:].copy()
        bins = np.arange(a, z + 1)
        for c in self.candidates.values():
            excl = np.zeros_like(rows)
            y = np.zeros(n)
            for b in range(a, z + 1):
                e = c.open_excl.pop(b, None)
                if e is not None:
                    excl[b - a] = e
                y[b - a] = c.open_own.pop(b, 0.0)
            cfull = np.concatenate([c.excl_ring[1:], excl])
            c.excl_ring = cfull[-RING:].copy()
            yfull = np.concatenate([c.y_ring, y])
            c.y_ring = yfull[-(WIDE - 1) :].copy()
            valid = bins >= c.first_bin
            if not valid.any():
                continue
            d = np.maximum(full - cfull, 0.0)
            # x[i, series, lag]: the native bytes of the bin `lag` bins before bin i.
            x = sliding_window_view(d, MAX_LAG + 1, axis=0)[-n:, :, ::-1]
            c.fine.add(y[valid], x[valid])
            # The same over sliding 1 s windows.
            cs = np.concatenate([np.zeros((1, WIDTH)), np.cumsum(d, axis=0)])
            dw = cs[WIDE:] - cs[:-WIDE]
            xw = sliding_window_view(dw, MAX_LAG + 1, axis=0)[-n:, :, ::-1]
            ycs = np.concatenate([[0.0], np.cumsum(yfull)])
            yw = (ycs[WIDE:] - ycs[:-WIDE])[-n:]
            full_window = bins >= c.first_bin + WIDE - 1
            if full_window.any():
                c.wide.add(yw[full_window], xw[full_window])

    def _make_room(self, now: float) -> None:
        """Drop the candidate idle longest, or failing that the one with the fewest bytes."""
        victim = min(
            self.candidates.values(), key=lambda c: (c.last_seen > now - 60, c.flow_bytes + c.bytes)
        )
        del self.candidates[victim.key]

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
        if series == 0:
            merged: dict[str, float] = {}
            for b in self.bucket_hosts:
                merged.update(b)
        else:
            merged = self.bucket_hosts[series - 1]
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


def _add_bucket_sums(
    open_bins: dict[int, npt.NDArray[np.float64]],
    bins: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    src_h: npt.NDArray[np.uint64],
    dst_h: npt.NDArray[np.uint64],
) -> None:
    """Add the packets' bytes per bin and host bucket to the open bins they fall in."""
    ub, per = _bucket_sums(bins, size, src_h, dst_h)
    for i, b in enumerate(ub.tolist()):
        row = open_bins.get(b)
        if row is None:
            open_bins[b] = per[i]
        else:
            row += per[i]


def _bucket_sums(
    bins: npt.NDArray[np.int64],
    size: npt.NDArray[np.int64],
    src_h: npt.NDArray[np.uint64],
    dst_h: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Bytes per bin: column 0 all, then per host bucket (a packet counts once per bucket)."""
    bucket_s = (src_h % np.uint64(HOST_BUCKETS)).astype(np.int64)
    bucket_d = (dst_h % np.uint64(HOST_BUCKETS)).astype(np.int64)
    ub, inv = spread(bins)
    other = bucket_d != bucket_s
    cells = np.concatenate(
        [inv * WIDTH, inv * WIDTH + 1 + bucket_s, (inv * WIDTH + 1 + bucket_d)[other]]
    )
    weights = np.concatenate([size, size, size[other]]).astype(np.float64)
    per = np.bincount(cells, weights=weights, minlength=len(ub) * WIDTH)
    return ub, per.reshape(len(ub), WIDTH)


def _drop_through(bins: dict[int, Any], through: int) -> None:
    """Forget the open bins up to ``through`` (they are closed)."""
    for b in [b for b in bins if b <= through]:
        del bins[b]


def _sum_by(
    bins: npt.NDArray[np.int64], size: npt.NDArray[np.int64]
) -> tuple[list[int], list[float]]:
    ub, inv = spread(bins)
    return ub.tolist(), np.bincount(inv, weights=size).tolist()


# ---------------------------------------------------------------------- engine glue

OPAQUE_PROTOS = (6, 17, 50)
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
    addr: Callable[[int, bool], str],
) -> None:
    """Feed one batch of IP rows (the engine's columns) to ``ec``: admit new candidates, name the
    busiest hosts, and add every packet's size and time."""
    if not len(rows):
        return
    size = h.iplen[rows]
    dkey, direction = keys.directed, keys.direction.astype(np.int64)
    proto = h.proto[rows]
    out_bytes = counts[fids, 2 + direction]
    out_packets = counts[fids, direction]
    elig = np.isin(proto, OPAQUE_PROTOS) & (out_bytes >= MIN_BYTES) & (out_packets >= MIN_PACKETS)
    if len(ec.candidates) and elig.any():
        have = np.fromiter(ec.candidates, dtype=np.uint64, count=len(ec.candidates))
        elig &= ~np.isin(dkey, have)
    admit: list[Candidate] = []
    if elig.any():
        ukeys, first, _ = group(dkey[elig])
        where = np.nonzero(elig)[0][first]
        for key, x in zip(ukeys.tolist()[:MAX_ADMIT_PER_BATCH], where.tolist(), strict=False):
            st = streams.get(key)
            known = st.evidence if st is not None else None
            if known is not None and known.kind in READABLE_KINDS:
                continue
            c = _candidate(batch, h, int(rows[x]), key, keys, x, known, addr)
            c.flow_bytes = int(out_bytes[x])
            admit.append(c)
    # Name the busiest hosts of the batch (for the tracked hosts of a finding).
    hosts = np.concatenate([keys.src_host, keys.dst_host])
    which = np.concatenate([np.arange(len(rows)), np.arange(len(rows))])
    uh, first, inv = group(hosts)
    weight = np.bincount(inv, weights=np.concatenate([size, size]))
    top = np.argsort(-weight)[:NAMED_HOSTS_PER_BATCH]
    name_of = {
        int(uh[i]): addr(int(rows[which[first[i]]]), first[i] >= len(rows)) for i in top.tolist()
    }
    ec.add(batch.ts[rows], size, dkey, keys.src_host, keys.dst_host, admit, name_of)
    for c in ec.candidates.values():
        # A candidate joined mid-stream: a record or banner at the start of a later segment
        # names its carrier.
        if c.carrier in ("tcp", "udp") and c.sniffed < SNIFF_PACKETS:
            for x in np.nonzero(dkey == np.uint64(c.key))[0][:4].tolist():
                c.sniffed += 1
                r = int(rows[x])
                start = int(batch.offsets[r]) + int(h.pay[r])
                head = batch.data[start : start + 8].tobytes()
                c.carrier = carrier_of(c.proto, c.sport, c.dport, head, None)


def _candidate(
    batch: PacketBatch,
    h: Headers,
    r: int,
    key: int,
    keys: RowKeys,
    x: int,
    known: StreamEvidence | None,
    addr: Callable[[int, bool], str],
) -> Candidate:
    o = int(batch.offsets[r])
    start = o + int(h.pay[r]) if int(h.proto[r]) in (6, 17) else o + int(h.l4[r])
    head = batch.data[start : start + 8].tobytes() if start >= o else b""
    proto = int(h.proto[r])
    sport, dport = int(h.sport[r]), int(h.dport[r])
    ts = float(batch.ts[r])
    c = Candidate(
        key=key,
        src=addr(r, False),
        dst=addr(r, True),
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
