"""The engine: batches in, stream evidence out.

Per batch (a few thousand packets) everything is vectorised: outer headers, flow accounting,
per-stream packet and byte counts, and a cheap prefilter per format over the first payload bytes.
Python touches only candidate packets (those some prefilter accepts, GRE and tunnel protocols),
packets of already-classified streams (all of their first packets, then a sample) and the few
packets the vectorised decoder cannot place.  A flow that keeps failing validation is put on a
negative list so chance prefilter hits do not cost Python time for ever.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch
from detector.decode.carried import MIN_BATCH
from detector.decode.frames import ip_str, mac_str
from detector.decode.headers import (
    LINK_ETHERNET,
    Headers,
    decode_headers,
)
from detector.decode.lut import lut
from detector.decode.slowpath import Reassembled, Reassembler, finish_rows
from detector.detection import Detection, probe
from detector.evidence import HostTally, SampleBudget, StreamEvidence
from detector.flows import encrypted
from detector.flows.copies import CopyMatch, CopyMatcher, PlainCopies
from detector.flows.fingerprint import sample_natives, sampled_fingerprint
from detector.flows.groups import locate, spread
from detector.flows.stream import Aggregate, Group, Stream, release_state
from detector.flows.table import U64, FlowTable, KeyIndex, RowKeys, key_set, row_keys_at
from detector.flows.tcp import TcpBuffer, TcpReassembler
from detector.limits import Limits
from detector.prefilter_route import route_for
from detector.protocols import registry
from detector.protocols.base import (
    Decoded,
    Decoder,
    Kind,
    PacketContext,
    Reject,
    StreamDecoder,
    transport_name,
)
from detector.protocols.correlated import TEE_COPY
from detector.protocols.framed import CarriedFrameDecoder, check_together
from detector.protocols.gre import fill_context, parse_gre
from detector.protocols.templates import FieldBudget, TemplateCache

# Exports written as logs, whose record rate is set against the span's new flows.
LOG_EXPORTS = registry.logs()
IP_PROTO_GRE = 47
# Packets worked on at once (a 16 MiB block holds up to a million tiny ones): a block of
# average packets (about 20,000) in one batch, as every stage's per-batch cost (a few hundred
# numpy calls) is paid per batch; the per-batch columns stay a few MiB.
MAX_BATCH_ROWS = 32_768
# Exporters named per aggregate stream (the busiest).
TOP_EXPORTERS = 8
# Protocols every link carries that are never an encapsulation (ICMP, IGMP, TCP, UDP, ICMPv6,
# OSPF, PIM, VRRP, SCTP, no-next-header), and GRE, which has its own path: not candidates for
# the IP-protocol decoders.
COMMON_IP_LUT = lut([1, 2, 6, 17, 47, 58, 59, 89, 103, 112, 132])


@dataclass(repr=False, eq=False)
class EngineStats:
    """What an engine counted of the packets it was given."""

    packets: int = 0
    bytes: int = 0
    ip_packets: int = 0
    non_ip_packets: int = 0
    unknown_link_packets: int = 0
    fragments_reassembled: int = 0
    candidates: int = 0
    prefiltered: int = 0  # payload rows given to the format prefilters
    decoded: int = 0
    # Faults inside decoders, by ``decoder-error:<exception type>`` (should stay empty).
    decoder_errors: dict[str, int] = field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None
    timeline: dict[int, list[int]] = field(default_factory=dict)  # second → [packets, bytes]
    # What budgets made the engine give up (streams folded, flows evicted while active...).
    shed: dict[str, int] = field(default_factory=dict)

    def counts(
        self, *, flows: int, peak_flows: int, hosts: int, streams: int, shed: dict[str, int]
    ) -> dict[str, int]:
        """The totals a report shows, named alike by scan and watch; the table counts (flows,
        hosts, streams) and what was shed come from whoever holds the tables: one engine, or
        the fold of several."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "ip_packets": self.ip_packets,
            "non_ip_packets": self.non_ip_packets,
            "unknown_link_packets": self.unknown_link_packets,
            "flows": flows,
            "peak_flows": peak_flows,
            "hosts": hosts,
            "candidate_packets": self.candidates,
            "streams": streams,
            "fragments_reassembled": self.fragments_reassembled,
            "decoder_errors": sum(self.decoder_errors.values()),
            **{f"shed_{k}": v for k, v in shed.items()},
        }


@dataclass(repr=False, eq=False)
class _Group:
    """Streams kept apart in one budget group (one format toward one collector, or one
    tunnel format between two hosts), and how often each folded flow came back."""

    kept: set[int] = field(default_factory=set)
    returns: dict[int, int] = field(default_factory=dict)


@dataclass(repr=False, eq=False, slots=True)
class _Rows:
    """The IP rows of one batch being worked on: their batch rows, flow keys, times, wire
    lengths and, for reassembled datagrams, the packets each stands for."""

    batch: PacketBatch
    h: Headers
    rows: npt.NDArray[np.int64]
    keys: RowKeys
    weights: npt.NDArray[np.int64] | None  # by batch row
    ts: npt.NDArray[np.float64]
    wire: npt.NDArray[np.int64]

    def addr(self, r: int, dst: bool) -> str:
        """The source or destination address of batch row ``r``, as reports show it."""
        return _addr(self.h, r, dst)

    def context(self, r: int) -> PacketContext:
        """Outer facts of batch row ``r`` for its decoder (and for a new stream's record)."""
        h = self.h
        proto = int(h.proto[r])
        return PacketContext(
            src=_addr(h, r, False),
            dst=_addr(h, r, True),
            sport=int(h.sport[r]),
            dport=int(h.dport[r]) if proto != IP_PROTO_GRE else 0,
            ttl=int(h.ttl[r]),
            ts=float(self.batch.ts[r]),
            udp_checksum=int(h.udpsum[r]) if proto == 17 else None,
            ip_proto=proto,
        )

    def weight(self, r: int) -> int:
        return 1 if self.weights is None else int(self.weights[r])


@dataclass(repr=False, eq=False, slots=True)
class _Trial:
    """One decoder's try at a candidate packet: what it found, the state it learnt and, for a
    byte stream, the reassembly buffer and the PDUs after the first."""

    decoder: Decoder
    state: object | None
    found: Decoded | None = None
    rest: list[Decoded] = field(default_factory=list)
    tcp: TcpBuffer | None = None
    score: float = 0.0


@dataclass(repr=False, eq=False, slots=True)
class _Known:
    """A chosen row of a known stream: batch row, outer facts, the payload its decoder gets
    (None: a GRE header that does not parse) and the packets it stands for; what its check
    found, once checked."""

    st: Stream
    r: int
    ctx: PacketContext
    payload: bytes | None
    weight: float
    found: Decoded | Reject | None = None


def _synthetic_key(group: Group) -> int:
    """A stable key for an aggregate stream (the same in every worker of a scan)."""
    # Imported here: hashlib loads OpenSSL (3 ms before any packet is read), and only streams
    # folded into an aggregate need it.
    import hashlib

    return int.from_bytes(hashlib.blake2b(repr(group).encode(), digest_size=8).digest(), "big")


class _Rejects:
    """Directed flows that looked like candidates but never validated (bounded memory).

    Set aside, never given up: one packet in ``reject_probe_stride`` of a set-aside flow is
    still tried, so junk sent first cannot hide a stream that follows it."""

    MAX = 200_000

    def __init__(self, detection: Detection) -> None:
        self.after = detection.reject_after
        self.probe_stride = detection.reject_probe_stride
        self.fails: dict[int, int] = {}
        self.index = KeyIndex()

    def fail(self, key: int) -> None:
        n = self.fails.get(key, 0) + 1
        self.fails[key] = n
        if n == self.after:
            self.index.lookup_or_add(np.array([key], dtype=U64))
        if len(self.fails) > self.MAX:
            # Forget the flows that never reached the limit, and start the list afresh when it
            # is full (a rejected flow that comes back costs a few decodes, nothing more).
            self.fails = {k: v for k, v in self.fails.items() if v >= self.after}
            if len(self.fails) > self.MAX // 2:
                self.fails = {}
                self.index = KeyIndex()

    def mask(
        self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Rows of set-aside flows, except the probes."""
        if not self.index.count:
            return np.zeros(len(keys), dtype=np.bool_)
        aside = self.index.lookup(keys) >= 0
        if aside.any():
            aside[aside] = ~probe(keys[aside], ts[aside], self.probe_stride)
        return aside


class Engine:
    def __init__(self, limits: Limits | None = None, detection: Detection | None = None) -> None:
        self.limits = lim = limits or Limits()
        self.detection = detection or Detection()
        self.flows = FlowTable(max_flows=lim.flows, batch_rows=MAX_BATCH_ROWS)
        self.hosts = key_set(lim.hosts)
        self.stats = EngineStats()
        self.streams: dict[int, Stream] = {}
        self._stream_keys = np.zeros(0, dtype=U64)
        # Which low 16 bits of a directed key some stream's key has: most rows of a batch are
        # told apart from the streams by this one lookup, and only the others are searched.
        self._stream_low = np.zeros(1 << 16, dtype=np.bool_)
        self._rejects = _Rejects(self.detection)
        self.reasm = Reassembler(max_bytes=lim.fragment_bytes, max_pieces=lim.fragment_packets)
        self.tcp = TcpReassembler(lim.tcp_stream_bytes, lim.tcp_total_bytes)
        self.template_fields = FieldBudget(lim.template_fields_total)
        self.samples = SampleBudget(lim.sample_bytes)
        # Stream budgets: groups of kept streams, and the aggregates that took the others.
        self._groups: dict[Group, _Group] = {}
        self._aggregates: dict[Group, Aggregate] = {}
        self._shed_streams = 0
        self._shed_tunnels = 0
        self.udp_decoders = registry.decoders_for("udp")
        self.tcp_decoders = registry.decoders_for("tcp")
        self.gre_table = registry.gre_decoders()
        self.ip_table = registry.ip_decoders()
        # Tried on GRE types and IP protocols no known decoder claims.
        self.fallback = tuple(d for d in self.udp_decoders if d.fallback)
        self.copies = CopyMatcher(lim.copy_natives, lim.copy_pending, lim.plain_copies)
        self.encrypted = encrypted.EncryptedCopies()
        self._last_expire = 0.0
        self._hosts_before = 0
        # Rows of this batch that were counted toward an aggregate stream.
        self._folded_rows: list[int] = []
        # Packets of each stream (by key) that the other engines of a scan cut in parts had
        # decoded when they last told (``decoded_elsewhere``).
        self._decoded_before: dict[int, int] = {}

    def decoded_elsewhere(self, counts: dict[int, int]) -> None:
        """Other engines reading other parts of the capture have decoded these packets of these
        streams (by key): a stream is sampled as one engine would sample it that had decoded
        them all, not decoded in full from its first packets in every part."""
        self._decoded_before = counts
        for key, n in counts.items():
            st = self.streams.get(key)
            if st is not None:
                st.decoded_before = max(st.decoded_before, n)

    def decoded_counts(self, most: int) -> list[tuple[int, int]]:
        """(key, packets decoded here) of at most ``most`` streams, the most decoded first:
        what the other engines of a scan are told (``decoded_elsewhere``)."""
        counts = [(k, st.evidence.decoded) for k, st in self.streams.items()]
        if len(counts) > most:
            counts = sorted(counts, key=lambda kd: -kd[1])[:most]
        return counts

    # ---------------------------------------------------------------- batches

    def process(self, batch: PacketBatch) -> None:
        n = len(batch)
        if not n:
            return
        if n > MAX_BATCH_ROWS:
            # A block of tiny packets is worked on in slices: per-batch columns (a row of
            # header bytes, a dozen numbers per packet) must not grow with the packet count.
            for a in range(0, n, MAX_BATCH_ROWS):
                self.process(_rows(batch, a, min(n, a + MAX_BATCH_ROWS)))
            return
        st = self.stats
        st.packets += n
        total = int(batch.wirelen.sum())
        st.bytes += total
        ts_min, ts_max = float(batch.ts.min()), float(batch.ts.max())
        st.first_ts = ts_min if st.first_ts is None else min(st.first_ts, ts_min)
        st.last_ts = ts_max if st.last_ts is None else max(st.last_ts, ts_max)
        lo, hi = np.array([ts_min, ts_max]).astype(np.int64).tolist()
        if lo == hi and ts_min <= ts_max:  # (not NaN)
            # A batch is a fraction of a second of traffic: most fall in one timeline cell.
            cells = [(lo, n, total)]
        else:
            secs, inv = spread(batch.ts.astype(np.int64))
            pk = np.bincount(inv)
            by = np.bincount(inv, weights=batch.wirelen).astype(np.int64)
            cells = list(zip(secs.tolist(), pk.tolist(), by.tolist(), strict=True))
        for s, p, b in cells:
            cell = st.timeline.setdefault(s, [0, 0])
            cell[0] += p
            cell[1] += b
        keep_secs = self.limits.timeline_seconds
        if len(st.timeline) > keep_secs:
            # Long watches keep the most recent seconds only.
            for old in sorted(st.timeline)[: len(st.timeline) - keep_secs // 2]:
                del st.timeline[old]
        if self.hosts.count + 2 * n > self.limits.hosts:
            # Distinct hosts are counted exactly up to here; past it (checked before a batch,
            # so that the table never grows past its budget), the count restarts.
            self._hosts_before += self.hosts.count
            self.hosts.clear()
        self._process(batch, weights=None)
        self.encrypted.settle()

    def _process(self, batch: PacketBatch, weights: npt.NDArray[np.int64] | None) -> None:
        # Decoded as the reader walked the rows, where it could; let go of with this batch (the
        # reader decodes the next one while the caller still holds this one).
        h = batch.decoded if isinstance(batch.decoded, Headers) else decode_headers(batch)
        batch.decoded = None
        slow_rows = np.nonzero(h.slow)[0]
        whole: list[Reassembled] = []
        if len(slow_rows):
            whole = finish_rows(batch, h, slow_rows.tolist(), self.reasm)
        self.stats.unknown_link_packets += int(h.unknown_link.sum())
        ip = np.nonzero(h.ipver > 0)[0]
        self.stats.ip_packets += len(ip)
        self.stats.non_ip_packets += len(batch) - len(ip)
        if len(ip):
            self._ip_rows(batch, h, ip, weights)
        if whole:
            self.stats.fragments_reassembled += sum(w.frames for w in whole)
            self._process(_batch_of(whole), weights=np.array([w.frames for w in whole]))
        last = self.stats.last_ts
        # A full table is expired whatever the clock says: a capture whose time never advances
        # must not grow it.
        if last is not None and (last - self._last_expire > 10 or self.flows.full()):
            self._last_expire = last
            self.flows.expire(last, keep={s.evidence.flow_key for s in self.streams.values()})

    def _ip_rows(
        self,
        batch: PacketBatch,
        h: Headers,
        rows: npt.NDArray[np.int64],
        weights: npt.NDArray[np.int64] | None,
    ) -> None:
        """Account, fingerprint and follow the IP rows of one batch: new streams are looked for
        among the candidate rows, rows of known streams are counted and some decoded."""
        keys = row_keys_at(h, rows)
        if len(rows) == len(batch):  # every row is IP (the usual batch): no gathered copies
            v = _Rows(batch, h, rows, keys, weights, batch.ts, batch.wirelen)
        else:
            v = _Rows(batch, h, rows, keys, weights, batch.ts[rows], batch.wirelen[rows])
        fids = self._account(v)
        self._natives(batch, h, rows)
        encrypted.observe(
            self.encrypted, batch, h, rows, keys, fids, self.flows.counts, self.streams
        )
        dkey = keys.directed
        known = self._known(dkey)
        self._folded_rows = []
        consumed = [
            x
            # Candidate rows of flows not yet classified (new streams may start in this batch).
            for x, passing in self._candidates(v, fids, ~known)
            # A flow that became a stream earlier in this batch is counted below.
            if int(dkey[x]) not in self.streams and self._classify(v, x, passing)
        ]
        if consumed:
            # Streams born in this batch: their other rows join the known ones.
            known = known | np.isin(dkey, dkey[consumed])
            known[consumed] = False
            # A flow promoted out of an aggregate in this batch: its rows before that were
            # counted there already.
            known[self._folded_rows] = False
        if known.any():
            self._decode_known(v, self._schedule(v, np.nonzero(known)[0]))

    def _known(self, dkey: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Rows of the streams kept."""
        known = np.zeros(len(dkey), dtype=np.bool_)
        if len(self._stream_keys):
            maybe = np.flatnonzero(self._stream_low.take(_low16(dkey)))
            if len(maybe):
                known[maybe] = locate(self._stream_keys, dkey[maybe])[1]
        return known

    def _account(self, v: _Rows) -> npt.NDArray[np.int64]:
        """Count the rows in the flow table and the hosts table; the rows' flow ids."""
        k = v.keys
        proto = v.h.proto if len(v.rows) == len(v.batch) else v.h.proto[v.rows]
        fids, new_rows = self.flows.update(k.flow, k.direction, proto, v.wire, v.ts)
        # A host is first seen in a flow that is new: only those rows can add one.
        self.hosts.add_rows(k.src_host, k.dst_host, new_rows)
        return fids

    def _candidates(
        self, v: _Rows, fids: npt.NDArray[np.int64], unknown: npt.NDArray[np.bool_]
    ) -> list[tuple[int, Sequence[Decoder] | None]]:
        """Rows of flows not kept as streams (``unknown``) worth a decode, in row order, each
        with the decoders whose prefilter passed it (None: the decoders of its GRE type or IP
        protocol).  Rows of flows set aside are left out, but for the probes."""
        p = v.h.proto[v.rows]
        # GRE, IP protocols that tunnels use, and any protocol not commonly seen on a link (a
        # private shim straight over IP is looked at by the unknown-encapsulation decoder).
        other = self._not_aside(
            v, np.flatnonzero(unknown & ((p == IP_PROTO_GRE) | ~COMMON_IP_LUT[p]))
        )
        cands: list[tuple[int, Sequence[Decoder] | None]] = [(x, None) for x in other.tolist()]
        # Rows with a payload; the prefilters look at the UDP and the TCP ones.
        routed = lut(n for n, ds in ((17, self.udp_decoders), (6, self.tcp_decoders)) if ds)
        payload = self._not_aside(v, np.flatnonzero(unknown & (v.h.paylen[v.rows] > 0) & routed[p]))
        if len(payload):
            cands.extend(self._prefiltered(v, fids, payload, p))
            if len(other):
                cands.sort(key=lambda c: c[0])
        return cands

    def _not_aside(self, v: _Rows, idx: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Of the rows ``idx``, those not of a flow set aside (or a probe of one)."""
        if not len(idx) or not self._rejects.index.count:
            return idx
        return idx[~self._rejects.mask(v.keys.directed[idx], v.ts[idx])]

    def _prefiltered(
        self,
        v: _Rows,
        fids: npt.NDArray[np.int64],
        fresh: npt.NDArray[np.intp],
        p: npt.NDArray[np.int64],
    ) -> list[tuple[int, Sequence[Decoder]]]:
        """Of the fresh UDP and TCP rows with a payload (indices ``fresh``, ascending; ``p``
        the rows' IP protocols), those that some decoder's prefilter accepts, ascending."""
        det = self.detection
        # A flow's payload packets that no format accepted are counted; past `quiet_after` of
        # them its packets are only probed: every format recognised here shows itself in its
        # first packets, unless junk was sent first.  Each young flow's first rows are looked
        # at, as many as it has left before it is quiet, wherever the batch ends.
        after_udp, after_tcp = det.quiet_after(17), det.quiet_after(6)
        fresh_fids = fids[fresh]
        if after_udp == after_tcp:
            after = np.full(len(fresh), after_udp, dtype=np.int64)
        else:
            after = np.where(p[fresh] == 6, after_tcp, after_udp).astype(np.int64)
        probes = probe(v.keys.directed[fresh], v.ts[fresh], det.quiet_probe_stride)
        looked, young = self.flows.quiet_looks(fresh_fids, after, probes)
        hits, passing = self._route(v, fresh[looked], p)
        if len(hits):
            hit = np.zeros(len(fresh), dtype=np.bool_)
            hit[np.searchsorted(fresh, hits)] = True
            # A payload some prefilter accepted is not a quiet one: the flow's rows that were
            # counted on to make it quiet are looked at as well (all of them, in one more pass).
            more = self.flows.quiet_more(fresh_fids, young, looked, hit)
            if more.any():
                extra, extra_passing = self._route(v, fresh[more], p)
                looked |= more
                hit[np.searchsorted(fresh, extra)] = True
                every = [*passing, *extra_passing]
                order = np.argsort(np.concatenate([hits, extra]))
                hits = np.concatenate([hits, extra])[order]
                passing = [every[j] for j in order.tolist()]
        else:
            hit = np.zeros(len(fresh), dtype=np.bool_)
        # Each flow's young rows looked at in vain.
        self.flows.quiet_missed(fresh_fids, young, looked, hit)
        return list(zip(hits.tolist(), passing, strict=True))

    def _route(
        self, v: _Rows, sel: npt.NDArray[np.intp], p: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.intp], list[Sequence[Decoder]]]:
        """The rows ``sel`` (UDP and TCP rows with a payload; ``p`` the rows' IP protocols)
        that some decoder's prefilter accepts, ascending, each with the decoders that accepted
        it."""
        if not len(sel):
            return sel, []
        h = v.h
        self.stats.prefiltered += len(sel)
        # In batch order, the payloads are read in the order they lie in the batch's buffer.
        sel = np.sort(sel)
        batch = v.batch
        found: list[npt.NDArray[np.intp]] = []
        passing: list[Sequence[Decoder]] = []
        is_tcp = p[sel] == 6
        for mine, decoders in ((sel[~is_tcp], self.udp_decoders), (sel[is_tcp], self.tcp_decoders)):
            if not len(mine):
                continue
            picked = v.rows[mine]
            hits, by_row = route_for(decoders).hits_in(
                batch.data, batch.offsets[picked] + h.pay[picked], h.paylen[picked],
                h.sport[picked], h.dport[picked],
            )  # fmt: skip
            if len(hits):
                found.append(mine[hits])
                passing.extend(by_row)
        if not found:
            return sel[:0], []
        self.stats.candidates += len(passing)
        if len(found) == 1:
            return found[0], passing
        # UDP and TCP rows, in row order.
        rows = np.concatenate(found)
        order = np.argsort(rows)
        return rows[order], [passing[j] for j in order.tolist()]

    def _schedule(self, v: _Rows, kidx: npt.NDArray[np.int64]) -> list[tuple[int, int, float]]:
        """Count the rows ``kidx`` of known streams into their streams, and pick the ones to
        decode: (batch row, index in the rows, packets it stands for), in batch order."""
        # Each stream's rows as one run of ``order`` (a stable sort: in batch order).
        keys = v.keys.directed[kidx]
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        at = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        cuts = np.append(at, len(order)).tolist()
        mine = kidx[order]
        pk = np.diff(cuts) if v.weights is None else np.add.reduceat(v.weights[v.rows[mine]], at)
        by = np.add.reduceat(v.wire[mine], at)
        ts = v.ts[mine]
        first = np.minimum.reduceat(ts, at)
        last = np.maximum.reduceat(ts, at)
        sec = ts.astype(np.int64)
        # A stream whose rows of this batch all fall in one second (most) has that second
        # counted without a look at each row's.
        first_sec = first.astype(np.int64)
        one_second = (first_sec == last.astype(np.int64)) & (np.abs(first) < 2**53)
        one_second &= np.abs(last) < 2**53  # (finite, and NaN is not)
        # Timeline cells per stream: a share of the budget over every stream.
        lim = self.limits
        cells = max(16, min(lim.timeline_seconds, lim.timeline_cells // max(1, len(self.streams))))
        decode_rows: list[tuple[int, int, float]] = []
        for j, (k, n, size, t0, t1, one, second) in enumerate(
            zip(
                ordered[at].tolist(),
                pk.tolist(),
                by.tolist(),
                first.tolist(),
                last.tolist(),
                one_second.tolist(),
                first_sec.tolist(),
                strict=True,
            )
        ):
            st = self.streams.get(k)
            if st is None:
                continue  # folded into an aggregate earlier in this batch
            s = st.evidence
            a, b = cuts[j], cuts[j + 1]
            if one:
                s.count_second(second, b - a, cells)
            else:
                s.count_seconds(sec[a:b], cells)
            s.packets += int(n)
            s.bytes += int(size)
            s.first_seen = min(s.first_seen, t0)
            s.last_seen = max(s.last_seen, t1)
            decode_rows.extend(self._sample(st, v.rows, mine[a:b]))
        decode_rows.sort()
        return decode_rows

    def _sample(
        self, st: Stream, rows: npt.NDArray[np.int64], mine: npt.NDArray[np.int64]
    ) -> list[tuple[int, int, float]]:
        """Which of a stream's rows ``mine`` (indices into ``rows``) to decode, each with the
        packets it stands for: all of the first ones, then every stride-th."""
        s, det = st.evidence, self.detection
        decoded = s.decoded + st.decoded_before
        # TCP streams need every segment; flow exports every template at first, then a
        # sample (templates are re-sent, records are weighted).
        full = s.transport == "tcp" or (s.kind == "flow-export" and decoded < det.full_decode)
        budget = len(mine) if full else max(0, det.full_decode - decoded)
        out = [(int(rows[x]), int(x), 1.0) for x in mine[:budget]]
        rest = mine[budget:]
        if len(rest):
            # Every stride-th packet of the stream itself, each standing for `stride`: the
            # stride of a stream with the first ones decoded (a stream born in a batch of
            # thousands of its packets has most of them sampled, not all decoded).
            stride = (
                det.flow_export_stride
                if s.kind == "flow-export"
                else det.stride(decoded + len(out))
            )
            picked = rest[(st.phase + np.arange(len(rest))) % stride == 0]
            st.phase = (st.phase + len(rest)) % stride
            out.extend((int(rows[x]), int(x), float(stride)) for x in picked)
        return out

    def _natives(self, batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64]) -> None:
        """Fingerprint a sample of native packets for copy matching and plain copies."""
        r, ranks, fps, l2dst, l2src = sample_natives(batch, h, rows, self.copies.keep_below)
        if not len(r):
            return

        def addrs(i: int) -> tuple[str, str]:
            return _addr(h, int(r[i]), False), _addr(h, int(r[i]), True)

        self.copies.add_natives(
            fps, ranks, batch.ts[r], l2dst, l2src, batch.wirelen[r], addrs,
            lambda i: batch.packet(int(r[i])),
        )  # fmt: skip

    # ---------------------------------------------------------------- python per packet

    def _payload(self, batch: PacketBatch, h: Headers, r: int) -> bytes:
        o = int(batch.offsets[r])
        # UDP and TCP decoders get the L4 payload; GRE and IP-protocol decoders the IP payload.
        start = o + int(h.pay[r] if int(h.proto[r]) in (6, 17) else h.l4[r])
        end = o + min(int(batch.caplen[r]), int(h.l3[r]) + int(h.iplen[r]))
        return batch.data[start:end].tobytes()

    def _check(
        self, decoder: Decoder, payload: bytes, ctx: PacketContext, state: object | None
    ) -> Decoded | Reject:
        try:
            return decoder.check(payload, ctx, state)
        except Exception as exc:
            return self._decoder_error(exc)

    def _decoder_error(self, exc: Exception) -> Reject:
        """The one guard around decoders: a fault (a bug, not a verdict on the bytes) is counted
        as ``decoder-error:<Type>`` in the stats and the stream's evidence, and one packet
        still cannot stop the engine."""
        reason = f"decoder-error:{type(exc).__name__}"
        errors = self.stats.decoder_errors
        errors[reason] = errors.get(reason, 0) + 1
        return Reject(reason)

    def _new_state(self, d: Decoder) -> object | None:
        """A decoder's per-stream state, under this engine's budgets."""
        state = d.new_state()
        if isinstance(state, TemplateCache):
            lim = self.limits
            state.max_templates = lim.templates_per_stream
            state.max_fields = lim.template_fields
            state.budget = self.template_fields
        return state

    def _forget(self, st: Stream) -> None:
        """Drop one stream from the engine: its budgets get back what it held."""
        del self.streams[st.key]
        st.release(self.tcp)
        for gk in st.groups:
            g = self._groups.get(gk)
            if g is not None:
                g.kept.discard(st.key)

    def _rekey(self) -> None:
        """The keys of the streams kept, after some were dropped."""
        self._stream_keys = np.sort(np.fromiter(self.streams, dtype=U64, count=len(self.streams)))
        self._stream_low[:] = False
        self._stream_low[_low16(self._stream_keys)] = True

    def _gre(self, payload: bytes, ctx: PacketContext) -> tuple[bytes, tuple[Decoder, ...]] | None:
        g = parse_gre(payload)
        if g is None:
            return None
        fill_context(g, ctx)
        return payload[g.header_len :], self.gre_table.get(g.proto, ()) or self.fallback

    def _classify(self, v: _Rows, x: int, passing: list[Decoder] | None) -> bool:
        """Try the candidate decoders on row ``x``; True when it started a stream."""
        key, r = int(v.keys.directed[x]), int(v.rows[x])
        ctx = v.context(r)
        proto = int(v.h.proto[r])
        transport = transport_name(proto)
        got = self._decoders_for(proto, self._payload(v.batch, v.h, r), ctx, passing)
        best = None
        if got is not None:
            self.stats.decoded += 1
            best = self._best(*got, ctx, int(v.h.tcpseq[r]), transport)
        if best is None or best.found is None:
            self._rejects.fail(key)
            return False
        admitted = self._admit(key, best.found, ctx, transport)
        if isinstance(admitted, Aggregate):
            # Past a stream budget: the packet counts toward an aggregate stream and the flow
            # keeps no state of its own.
            self.tcp.forget(best.tcp)
            release_state(best.state)
            self._folded_rows.append(x)
            self._into(admitted.evidence, v, r, best.found, ctx.ts)
            return False
        st = self._new_stream(v, x, best, ctx, transport)
        st.groups = admitted
        s = st.evidence
        self._add(st, best.found, 1.0, ctx.ts)
        for pdu in best.rest:
            self._add(st, pdu, 1.0, ctx.ts)
        self._keep_sample(s, v.batch, r)
        # The vectorised counters missed this first packet (it was not yet a stream).
        s.packets += v.weight(r)
        s.bytes += int(v.batch.wirelen[r])
        return True

    def _decoders_for(
        self, proto: int, payload: bytes, ctx: PacketContext, passing: list[Decoder] | None
    ) -> tuple[bytes, Sequence[Decoder]] | None:
        """The payload to decode and the decoders to try on it; None for a broken GRE header."""
        if proto == IP_PROTO_GRE:
            return self._gre(payload, ctx)
        if passing is not None:
            return payload, passing
        return payload, self.ip_table.get(proto, ()) or self.fallback

    def _best(
        self,
        payload: bytes,
        decoders: Sequence[Decoder],
        ctx: PacketContext,
        seq: int,
        transport: str,
    ) -> _Trial | None:
        """The decoder that reads the payload best, if any (the others' states are let go)."""
        best: _Trial | None = None
        tried: list[_Trial] = []
        for d in decoders:
            owner = (
                registry.port_owner(d, transport, ctx.sport, ctx.dport)
                if transport in ("udp", "tcp")
                else None
            )
            if owner and d.heuristic:
                continue  # a guess yields to the protocol registered on the port
            t = self._try(d, payload, ctx, seq)
            tried.append(t)
            if t.found is None or (owner and t.found.strength < 1.0):
                continue
            # Several formats may accept one payload (those without a magic number): prefer the
            # strongest structural match, then the one whose usual port this is.
            on_port = ctx.dport in d.ports or ctx.sport in d.ports
            t.score = t.found.strength + (0.25 if on_port else 0.0)
            if best is None or (t.score, -d.priority) > (best.score, -best.decoder.priority):
                best = t
        for t in tried:
            if t is not best:
                # Templates learnt by the decoders that lost give their budget back.
                release_state(t.state)
                self.tcp.forget(t.tcp)
        return best

    def _try(self, d: Decoder, payload: bytes, ctx: PacketContext, seq: int) -> _Trial:
        """One decoder's try at a candidate payload (a TCP one starts a reassembly buffer)."""
        t = _Trial(d, self._new_state(d))
        if not isinstance(d, StreamDecoder):
            checked = self._check(d, payload, ctx, t.state)
            t.found = checked if isinstance(checked, Decoded) else None
            return t
        try:
            found = d.decode(payload, ctx, d.new_state())
            if found is None:
                return t
            t.tcp = self.tcp.start(seq)
            data, _ = self.tcp.push(t.tcp, seq, payload)
            pdus = d.feed(data, ctx, t.state)
        except Exception as exc:
            self._decoder_error(exc)
            return t
        # The stream is created with the first PDU; the others follow it.
        t.found = pdus[0] if pdus else found
        t.rest = pdus[1:]
        return t

    def _into(self, s: StreamEvidence, v: _Rows, r: int, found: Decoded, ts: float) -> None:
        """A packet that an aggregate stream takes."""
        s.decoded += 1
        s.add(found, 1.0, ts, self.samples)
        self._keep_sample(s, v.batch, r)
        s.packets += v.weight(r)
        s.bytes += int(v.batch.wirelen[r])
        s.first_seen = min(s.first_seen, ts)
        s.last_seen = max(s.last_seen, ts)

    def _add(self, st: Stream, found: Decoded, weight: float, ts: float) -> None:
        """One decoded PDU into a stream's evidence; the IP packets it carried are matched to
        the originals seen natively when the stream keeps a copy tally."""
        s = st.evidence
        s.decoded += 1
        carried = s.add(found, weight, ts, self.samples)
        if st.copies is None:
            return
        for inner, data in carried:
            fp = sampled_fingerprint(data, inner, self.copies.keep_below)
            if fp is not None:
                self.copies.check_copy(st.copies, fp, ts)

    def _tcp_feed(self, st: Stream, seq: int, payload: bytes, ctx: PacketContext) -> bool:
        """One segment of a TCP stream: each PDU it completes is counted (a segment that ends
        no PDU is no failure)."""
        d, s = st.decoder, st.evidence
        assert isinstance(d, StreamDecoder)
        try:
            data, gap = self.tcp.push(st.tcp, seq, payload)
            if gap:
                # Bytes were lost: start the decoder afresh so it resynchronises on a PDU.
                st.restart(self._new_state(d))
            pdus = d.feed(data, ctx, st.state) if data else []
        except Exception as exc:
            s.rejects[self._decoder_error(exc).reason] += 1
            # Resynchronise on a later PDU rather than feed a broken state again.
            st.restart(self._new_state(d))
            pdus = []
        # The PDUs that end later in the segment first, then the one it began with (the order
        # in which fact values are listed).
        for pdu in [*pdus[1:], *pdus[:1]]:
            s.protocol = d.stream_protocol(s.protocol, pdu)
            self._add(st, pdu, 1.0, ctx.ts)
        return bool(pdus)

    def _decode_known(self, v: _Rows, items: list[tuple[int, int, float]]) -> None:
        """Decode the chosen rows of known streams, each standing for ``weight`` packets."""
        if not items:
            return
        rows, xs, weights = zip(*items, strict=True)
        known: list[_Known] = []
        # The rows' outer facts and payload bounds read per batch, not one number at a time.
        for r, key, ctx, (start, end), weight in zip(
            rows,
            v.keys.directed[list(xs)].tolist(),
            _contexts(v, rows),
            _payload_bounds(v.batch, v.h, rows),
            weights,
            strict=True,
        ):
            st = self.streams[key]
            payload = v.batch.data[start:end].tobytes()
            body: bytes | None = payload
            if st.evidence.transport == "gre":
                got = self._gre(payload, ctx)
                body = None if got is None else got[0]
            known.append(_Known(st, r, ctx, body, weight))
        self._check_together(known)
        for k in known:
            self._decoded_known(v, k)

    def _check_together(self, known: list[_Known]) -> None:
        """Check the packets of the streams whose decoder's checks end in a carried frame
        together (their frames parsed as one batch); the others are checked one by one."""
        mine: list[_Known] = []
        checks: list[tuple[CarriedFrameDecoder, bytes, PacketContext, object | None]] = []
        for k in known:
            d = k.st.decoder
            if k.payload is not None and isinstance(d, CarriedFrameDecoder):
                mine.append(k)
                checks.append((d, k.payload, k.ctx, k.st.state))
        if len(mine) < MIN_BATCH:
            return
        try:
            found = check_together(checks)
        except Exception:
            return  # checked one by one, where a fault is counted against its packet
        for k, f in zip(mine, found, strict=True):
            k.found = f

    def _decoded_known(self, v: _Rows, k: _Known) -> None:
        """One chosen row of a known stream, its check done or still to do."""
        st, r, ctx, payload, weight = k.st, k.r, k.ctx, k.payload, k.weight
        s = st.evidence
        if payload is None:
            s.decoded += 1
            s.rejects["gre-header"] += 1
            return
        if isinstance(st.decoder, StreamDecoder):
            if self._tcp_feed(st, int(v.h.tcpseq[r]), payload, ctx) or payload:
                self._keep_sample(s, v.batch, r)
            return
        if v.weights is not None:
            weight *= float(v.weights[r])
            s.fragments += int(v.weights[r])
        found = k.found if k.found is not None else self._check(st.decoder, payload, ctx, st.state)
        if not isinstance(found, Decoded):
            s.decoded += 1
            s.rejects[found.reason if isinstance(found, Reject) else "invalid"] += 1
            return
        # A stream may be renamed by what it turns out to carry (IPFIX → PSAMP).
        s.protocol = st.decoder.stream_protocol(s.protocol, found)
        self._add(st, found, weight, ctx.ts)
        self._keep_sample(s, v.batch, r)

    def _new_stream(
        self, v: _Rows, x: int, t: _Trial, ctx: PacketContext, transport: str
    ) -> Stream:
        r = int(v.rows[x])
        batch, d = v.batch, t.found
        assert d is not None
        k = v.keys
        key, flow, direction = int(k.directed[x]), int(k.flow[x]), int(k.direction[x])
        s = StreamEvidence.begun(ctx, key, d.protocol, d.kind, transport, flow, direction)
        if int(batch.linktype[r]) == LINK_ETHERNET and int(batch.caplen[r]) >= 14:
            o = int(batch.offsets[r])
            s.dst_mac = mac_str(batch.data[o : o + 6].tobytes())
            s.src_mac = mac_str(batch.data[o + 6 : o + 12].tobytes())
        s.max_samples = self.limits.samples_per_stream
        # Flow exports carry records, not copies: nothing of theirs to match to originals.
        copies = CopyMatch() if d.kind != "flow-export" else None
        st = Stream(s, t.decoder, t.state, tcp=t.tcp, copies=copies)
        st.decoded_before = self._decoded_before.get(s.key, 0)
        self.streams[s.key] = st
        key = U64(s.key)
        at = np.searchsorted(self._stream_keys, key)
        self._stream_keys = np.insert(self._stream_keys, at, key)  # kept sorted
        self._stream_low[_low16(self._stream_keys[at : at + 1])] = True
        return st

    def _keep_sample(self, s: StreamEvidence, batch: PacketBatch, r: int) -> None:
        if len(s.outer_samples) < s.sample_limit:
            s.keep_outer(float(batch.ts[r]), int(batch.linktype[r]), batch.packet(r), self.samples)

    # ---------------------------------------------------------------- stream budgets

    def _admit(
        self, key: int, found: Decoded, ctx: PacketContext, transport: str
    ) -> Aggregate | list[Group]:
        """The budget groups a new stream is kept in (it joins them), or the aggregate stream
        that takes its packets instead."""
        lim = self.limits
        proto, kind = found.protocol, found.kind
        # Aggregates of tunnels keep the first pair's addresses (a tunnel finding is a pair).
        anyone = ctx.src if kind == "tunnel" else ""
        if len(self.streams) + len(self._aggregates) >= lim.streams:
            self._shed_streams += 1
            return self._aggregate(("all", proto, transport), found, ctx, transport, anyone,
                                   ctx.dst, 0)  # fmt: skip
        groups: list[Group] = []
        if kind == "tunnel" and transport == "udp":
            # Port-only tunnels (one stream per peer port) fold per host pair.
            pair: Group = ("pair", proto, ctx.src, ctx.dst)
            g = self._groups.get(pair)
            if g is not None and len(g.kept) >= lim.tunnel_streams_per_pair:
                self._shed_tunnels += 1
                for k in g.kept:  # the pair's finding may be any of them
                    self.streams[k].evidence.extra["truncated"] = True
                # Named by the port they are sent to: the folded streams then join the kept
                # ones in one finding (overlays hash the source port per inner flow).
                return self._aggregate(pair, found, ctx, transport, ctx.src, ctx.dst, ctx.dport)
            groups.append(pair)
        family = "flow-export" if kind == "flow-export" else proto
        dport = ctx.dport if transport in ("udp", "tcp") else 0
        coll: Group = ("to", family, ctx.dst, dport, transport)
        g = self._groups.get(coll)
        if g is not None and len(g.kept) >= lim.streams_per_collector and not self._promote(g, key):
            self._shed_streams += 1
            return self._aggregate(coll, found, ctx, transport, anyone, ctx.dst, dport)
        groups.append(coll)
        for gk in groups:
            self._groups.setdefault(gk, _Group()).kept.add(key)
        return groups

    def _promote(self, g: _Group, key: int) -> bool:
        """Whether a folded flow that keeps coming back is now busier than the quietest kept
        stream of its group; if so that stream is folded in its place (top N are kept)."""
        n = g.returns.get(key, 0) + 1
        g.returns[key] = n
        if len(g.returns) > 4 * len(g.kept) + 64:
            # Bounded: flows seen once are forgotten first.
            g.returns = {k: v for k, v in g.returns.items() if v > 1}
            if len(g.returns) > 4 * len(g.kept) + 64:
                g.returns = {}
        weakest = min((self.streams[k] for k in g.kept), key=lambda st: st.evidence.packets)
        if n < max(3, weakest.evidence.packets + 1):
            return False
        g.returns.pop(key, None)
        self._fold_stream(weakest)
        return True

    def _fold_stream(self, st: Stream) -> None:
        """Fold a kept stream into the aggregate of its collector group."""
        self._forget(st)
        self._rekey()
        s = st.evidence
        coll = st.groups[-1]
        agg = self._aggregates.get(coll)
        if agg is None:
            src = s.src if s.kind == "tunnel" else ""
            at = PacketContext(src, s.dst, dport=int(coll[3]), ts=s.first_seen)  # type: ignore[call-overload]
            agg = self._new_aggregate(coll, s.protocol, s.kind, s.transport, at)
        agg.evidence.absorb(s)
        agg.count_exporter(s.src, s.packets)
        self._shed_streams += 1

    def _aggregate(
        self,
        group: Group,
        found: Decoded,
        ctx: PacketContext,
        transport: str,
        src: str,
        dst: str,
        dport: int,
    ) -> Aggregate:
        agg = self._aggregates.get(group)
        if agg is None:
            at = PacketContext(src, dst, dport=dport, ts=ctx.ts)
            agg = self._new_aggregate(group, found.protocol, found.kind, transport, at)
        agg.count_exporter(ctx.src, 1)
        return agg

    def _new_aggregate(
        self, group: Group, protocol: str, kind: Kind, transport: str, at: PacketContext
    ) -> Aggregate:
        """An aggregate stream whose ends are ``at``'s (no source port: it stands for many)."""
        s = StreamEvidence.begun(at, _synthetic_key(group), protocol, kind, transport)
        s.max_samples = self.limits.samples_per_stream
        s.extra["truncated"] = True
        agg = self._aggregates[group] = Aggregate(s)
        return agg

    def _describe_aggregates(self) -> None:
        for group, agg in self._aggregates.items():
            c, s = agg.exporters, agg.evidence
            s.extra["exporters_kept_apart"] = (
                len(self._groups[group].kept) if group in self._groups else 0
            )
            s.extra["top_exporters"] = [f"{ip} ({n})" for ip, n in c.most_common(TOP_EXPORTERS)]
            s.extra["exporters_counted"] = len(c)

    def sync_shed(self) -> dict[str, int]:
        """What every budget has shed so far (also kept in ``stats.shed``)."""
        shed = {
            "streams": self._shed_streams,
            "tunnel_streams": self._shed_tunnels,
            "flows": self.flows.shed,
            "fragments": self.reasm.shed,
            "tcp_bytes": self.tcp.shed_bytes,
            "templates": self.template_fields.shed,
            "samples": self.samples.shed,
        }
        self.stats.shed = shed
        return shed

    # ---------------------------------------------------------------- end

    def finish(self) -> list[StreamEvidence]:
        """The streams so far, with what flowed back through each stream's outer flow filled
        in.  Safe to call repeatedly (a live watch calls it for every summary)."""
        self.copies.settle()
        self.sync_shed()
        self._describe_aggregates()
        for st in self.streams.values():
            s = st.evidence
            c = self.flows.counters(s.flow_key)
            if c is not None:
                s.return_packets = c[1 - s.direction]
                s.return_bytes = c[3 - s.direction]
            m = st.copies
            if m is not None and m.checked:
                s.extra["copies_checked"] = m.checked
                s.extra["copies_matched"] = m.matched
                if m.delays:
                    s.extra["copy_delay_ms"] = round(1000 * median(m.delays), 3)
        self._log_rates()
        plain = [plain_copy_stream(pc) for pc in self.copies.plain_streams()]
        hidden = encrypted.evidence(self.encrypted, self.flows)
        every = [
            *(st.evidence for st in self.streams.values()),
            *(agg.evidence for agg in self._aggregates.values()),
            *plain,
            *hidden,
        ]
        return sorted(every, key=lambda s: (s.first_seen, s.key))

    def _log_rates(self) -> None:
        """Connection records per second of a log export against new flows per second on the
        span: a log of every connection keeps pace with the span's own."""
        st = self.stats
        span = (st.last_ts or 0.0) - (st.first_ts or 0.0)
        if span <= 0:
            return
        for s in (x.evidence for x in self.streams.values()):
            if s.protocol in LOG_EXPORTS and s.decoded:
                lines = s.records * max(1.0, s.packets / s.decoded)
                s.extra["records_per_s"] = round(lines / span, 3)
                s.extra["span_new_flows_per_s"] = round(self.flows.total_flows / span, 3)

    def distinct_hosts(self) -> int:
        return self._hosts_before + self.hosts.count

    def expire_streams(self, now: float, idle: float) -> list[StreamEvidence]:
        """Drop streams idle for ``idle`` seconds of capture time, with their decoder state;
        returns their evidence so a long-running watch can keep their findings."""
        gone: list[StreamEvidence] = []
        for st in [st for st in self.streams.values() if now - st.evidence.last_seen > idle]:
            self._forget(st)
            st.drop_samples(self.samples)
            for gk in st.groups:
                if gk in self._groups and not self._groups[gk].kept:
                    del self._groups[gk]
            gone.append(st.evidence)
        if gone:
            self._rekey()
        for group in [g for g, a in self._aggregates.items() if now - a.evidence.last_seen > idle]:
            gone.append(self._aggregates.pop(group).evidence)
        return gone


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (not empty) as ``numpy.median`` gives it, the mean of the middle
    two of an even count and NaN if any is NaN, without its check for masked arrays: that loads
    numpy.ma (14 ms of CPU) on first use, in every worker process."""
    if any(v != v for v in values):
        return float("nan")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2)


def _low16(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint16]:
    """The low 16 bits of each key (a view of every fourth 16-bit word: no arithmetic)."""
    words = np.ascontiguousarray(keys, dtype=U64).view(np.uint16)
    return words[0::4] if sys.byteorder == "little" else words[3::4]


def _addr(h: Headers, r: int, dst: bool) -> str:
    """Row ``r``'s source or destination address as text (the one form the engine hands on)."""
    return _address_text(int(h.ipver[r]) == 4, (h.dst if dst else h.src)[r].tolist())


def _address_text(v4: bool, words: list[int]) -> str:
    """An address column's four 32-bit words as text (an IPv4 address is the last word)."""
    if v4:
        return ip_str(struct.pack("!I", words[3]))
    return ip_str(struct.pack("!4I", *words))


def _contexts(v: _Rows, rows: Sequence[int]) -> list[PacketContext]:
    """``v.context(r)`` of each batch row ``r``, its columns read once for all the rows (a
    stream's rows share their addresses: each is written once)."""
    h, at = v.h, np.array(rows, dtype=np.intp)
    proto = h.proto[at].tolist()
    texts: dict[tuple[int, ...], str] = {}

    def addresses(words: npt.NDArray[np.uint32]) -> list[str]:
        out = []
        for four, w in zip(h.ipver[at].tolist(), words[at].tolist(), strict=True):
            k = (w[3],) if four == 4 else tuple(w)
            text = texts.get(k)
            if text is None:
                text = texts[k] = _address_text(four == 4, w)
            out.append(text)
        return out

    return [
        PacketContext(
            src=src,
            dst=dst,
            sport=sport,
            dport=dport if p != IP_PROTO_GRE else 0,
            ttl=ttl,
            ts=ts,
            udp_checksum=udpsum if p == 17 else None,
            ip_proto=p,
        )
        for src, dst, sport, dport, ttl, ts, udpsum, p in zip(
            addresses(h.src),
            addresses(h.dst),
            h.sport[at].tolist(),
            h.dport[at].tolist(),
            h.ttl[at].tolist(),
            v.batch.ts[at].tolist(),
            h.udpsum[at].tolist(),
            proto,
            strict=True,
        )
    ]


def _payload_bounds(batch: PacketBatch, h: Headers, rows: Sequence[int]) -> list[list[int]]:
    """Where ``Engine._payload`` of each batch row ``r`` starts and ends in ``batch.data``."""
    at = np.array(rows, dtype=np.intp)
    o = batch.offsets[at]
    # UDP and TCP decoders get the L4 payload; GRE and IP-protocol decoders the IP payload.
    proto = h.proto[at]
    l4 = (proto == 6) | (proto == 17)
    start = o + np.where(l4, h.pay[at], h.l4[at])
    end = o + np.minimum(batch.caplen[at], h.l3[at] + h.iplen[at])
    return np.stack([start, end], axis=1).tolist()


def _mac(v: int) -> str:
    return mac_str(v.to_bytes(6, "big"))


def plain_copy_stream(pc: PlainCopies) -> StreamEvidence:
    """Evidence of a plain-copy stream (TEE / nft dup) from its duplicate sightings."""
    # No addresses of its own: the copies are frames re-addressed from one MAC to another.
    at = PacketContext(ts=pc.first_seen)
    s = StreamEvidence.begun(at, (pc.l2src << 16) ^ pc.l2dst, TEE_COPY.name, "mirror", "l2")
    s.src_mac, s.dst_mac, s.last_seen = _mac(pc.l2src), _mac(pc.l2dst), pc.last_seen
    s.packets, s.bytes = pc.estimated_packets, pc.estimated_bytes
    # Each sighting is a packet matched to its copy.
    s.decoded = s.validated = pc.matches
    s.strength_sum = float(pc.matches)
    s.header_example = (
        f"the same IP packets seen twice within {1000 * max(pc.delays):.1f} ms, the second "
        f"time sent to {_mac(pc.l2dst)} instead of their own next hop"
    )
    for (a, b), n in pc.pairs.items():
        for host in (a, b):
            t = s.hosts.setdefault(host, HostTally())
            t.packets += n
        lo, hi = sorted((a, b))
        conv = (f"{lo}:0", f"{hi}:0", 0)
        s.conversations[conv] = s.conversations.get(conv, 0) | (1 if a == lo else 2)
    s.carried_packets = float(pc.estimated_packets)
    s.outer_samples = [(t, LINK_ETHERNET, data) for t, data in pc.samples]
    s.extra["copies_matched"] = pc.matches
    s.extra["copy_delay_ms"] = round(1000 * median(pc.delays), 3) if pc.delays else 0.0
    return s


def _rows(batch: PacketBatch, a: int, b: int) -> PacketBatch:
    """Packets a..b-1 of a batch (views, sharing its bytes and its decoded headers)."""
    h = batch.decoded
    return PacketBatch(
        data=batch.data,
        offsets=batch.offsets[a:b],
        caplen=batch.caplen[a:b],
        wirelen=batch.wirelen[a:b],
        ts=batch.ts[a:b],
        linktype=batch.linktype[a:b],
        decoded=h.rows(a, b) if isinstance(h, Headers) else None,
    )


def _batch_of(datagrams: list[Reassembled]) -> PacketBatch:
    """Reassembled datagrams as a raw-IP batch for the normal pipeline."""
    return PacketBatch.of_frames(
        [d.datagram for d in datagrams],
        ts=[d.ts for d in datagrams],
        wirelen=[d.wire for d in datagrams],
        linktype=101,
    )
