"""The engine: batches in, stream evidence out.

Per batch (a few thousand packets) everything is vectorised: outer headers, flow accounting,
per-stream packet and byte counts, and a cheap prefilter per format over the first payload bytes.
Python touches only candidate packets (those some prefilter accepts, GRE and tunnel protocols),
packets of already-classified streams (all of their first packets, then a sample) and the few
packets the vectorised decoder cannot place.  A flow that keeps failing validation is put on a
negative list so chance prefilter hits do not cost Python time for ever.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch
from detector.decode.frames import InnerPacket, ip_str, mac_str
from detector.decode.headers import (
    LINK_ETHERNET,
    Headers,
    decode_headers,
    gather,
    payload_heads,
)
from detector.decode.lut import lut
from detector.decode.slowpath import Reassembled, Reassembler, finish_rows
from detector.detection import Detection, probe
from detector.evidence import HostTally, SampleBudget, StreamEvidence
from detector.flows import encrypted
from detector.flows.copies import CopyMatcher, PlainCopies
from detector.flows.fingerprint import L4_BYTES, fingerprint_np, rank_np, sampled_fingerprint
from detector.flows.table import U64, FlowTable, HashIndex, row_keys
from detector.flows.tcp import TcpReassembler
from detector.limits import Limits
from detector.prefilter_route import route_for
from detector.protocols import registry
from detector.protocols.base import Decoded, Decoder, PacketContext, Reject, StreamDecoder
from detector.protocols.gre import fill_context, parse_gre
from detector.protocols.templates import FieldBudget, TemplateCache

# Exports written as logs, whose record rate is set against the span's new flows.
LOG_EXPORTS = frozenset({"syslog-connlog", "dnstap"})
IP_PROTO_GRE = 47
# Packets worked on at once (a 16 MiB block holds up to a million tiny ones).
MAX_BATCH_ROWS = 8_192
# Exporters named per aggregate stream (the busiest), and counted before the table is pruned.
TOP_EXPORTERS = 8
MAX_EXPORTERS_COUNTED = 1024
# Protocols every link carries that are never an encapsulation (ICMP, IGMP, TCP, UDP, ICMPv6,
# OSPF, PIM, VRRP, SCTP, no-next-header), and GRE, which has its own path: not candidates for
# the IP-protocol decoders.
COMMON_IP_LUT = lut([1, 2, 6, 17, 47, 58, 59, 89, 103, 112, 132])


@dataclass
class EngineStats:
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


@dataclass
class _Group:
    """Streams kept apart in one budget group (one format toward one collector, or one
    tunnel format between two hosts), and how often each folded flow came back."""

    kept: set[int] = field(default_factory=set)
    returns: dict[int, int] = field(default_factory=dict)


def _synthetic_key(group: tuple[object, ...]) -> int:
    """A stable key for an aggregate stream (the same in every worker of a scan)."""
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
        self.index = HashIndex()

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
                self.index = HashIndex()

    def mask(
        self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Rows of set-aside flows, except the probes."""
        if not self.index.count:
            return np.zeros(len(keys), dtype=np.bool_)
        return (self.index.lookup(keys) >= 0) & ~probe(keys, ts, self.probe_stride)


class Engine:
    def __init__(self, limits: Limits | None = None, detection: Detection | None = None) -> None:
        self.limits = lim = limits or Limits()
        self.detection = detection or Detection()
        self.flows = FlowTable(max_flows=lim.flows)
        self.hosts = HashIndex()
        self.stats = EngineStats()
        self.streams: dict[int, StreamEvidence] = {}
        self._stream_keys = np.zeros(0, dtype=U64)
        self._stream_state: dict[int, object | None] = {}
        self._stream_decoder: dict[int, Decoder] = {}
        self._rejects = _Rejects(self.detection)
        # PDUs after the first of a segment that classified a TCP stream, per decoder tried.
        self._early_pdus: dict[tuple[int, str], list[Decoded]] = {}
        self.reasm = Reassembler(max_bytes=lim.fragment_bytes, max_pieces=lim.fragment_packets)
        self.tcp = TcpReassembler(lim.tcp_stream_bytes, lim.tcp_total_bytes)
        self.template_fields = FieldBudget(lim.template_fields_total)
        self.samples = SampleBudget(lim.sample_bytes)
        # Stream budgets: groups of kept streams, the aggregates that took the others, the
        # groups each kept stream belongs to, and the busiest exporters of each aggregate.
        self._groups: dict[tuple[object, ...], _Group] = {}
        self._aggregates: dict[tuple[object, ...], StreamEvidence] = {}
        self._member: dict[int, list[tuple[object, ...]]] = {}
        self._agg_exporters: dict[tuple[object, ...], Counter[str]] = {}
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
        self._phase: dict[int, int] = {}  # position of each sampled stream in its stride
        self._last_expire = 0.0
        self._hosts_before = 0
        # Rows of this batch that were counted toward an aggregate stream.
        self._folded_rows: list[int] = []

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
        st.bytes += int(batch.wirelen.sum())
        ts_min, ts_max = float(batch.ts.min()), float(batch.ts.max())
        st.first_ts = ts_min if st.first_ts is None else min(st.first_ts, ts_min)
        st.last_ts = ts_max if st.last_ts is None else max(st.last_ts, ts_max)
        secs, inv = np.unique(batch.ts.astype(np.int64), return_inverse=True)
        pk = np.bincount(inv)
        by = np.bincount(inv, weights=batch.wirelen)
        for s, p, b in zip(secs.tolist(), pk.tolist(), by.tolist(), strict=True):
            cell = st.timeline.setdefault(s, [0, 0])
            cell[0] += p
            cell[1] += int(b)
        keep_secs = self.limits.timeline_seconds
        if len(st.timeline) > keep_secs:
            # Long watches keep the most recent seconds only.
            for old in sorted(st.timeline)[: len(st.timeline) - keep_secs // 2]:
                del st.timeline[old]
        if self.hosts.count + 2 * n > self.limits.hosts:
            # Distinct hosts are counted exactly up to here; past it (checked before a batch,
            # so that the table never grows past its budget), the count restarts.
            self._hosts_before += self.hosts.count
            self.hosts = HashIndex()
        self._process(batch, weights=None)
        self.encrypted.settle()

    def _process(self, batch: PacketBatch, weights: npt.NDArray[np.int64] | None) -> None:
        h = decode_headers(batch)
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
            self.flows.expire(last, keep={s.flow_key for s in self.streams.values()})

    def _ip_rows(
        self,
        batch: PacketBatch,
        h: Headers,
        rows: npt.NDArray[np.int64],
        weights: npt.NDArray[np.int64] | None,
    ) -> None:
        src, dst = h.src[rows], h.dst[rows]
        sport, dport, proto = h.sport[rows], h.dport[rows], h.proto[rows]
        wire = batch.wirelen[rows]
        ts = batch.ts[rows]
        keys = row_keys(src, dst, sport, dport, proto)
        fkey, direction, dkey = keys.flow, keys.direction, keys.directed
        fids, new_rows = self.flows.update(fkey, direction, proto, wire, ts)
        # A host is first seen in a flow that is new: only those rows can add one.
        hosts = np.unique(np.concatenate([keys.src_host[new_rows], keys.dst_host[new_rows]]))
        if len(hosts):
            hosts[hosts == 0] = U64(1)
            self.hosts.lookup_or_add(hosts)
        self._natives(batch, h, rows)
        encrypted.observe(
            self.encrypted, batch, h, rows, keys, fids, self.flows.counts, self.streams,
            lambda r, dst: _addr((h.dst if dst else h.src)[r], int(h.ipver[r])),
        )  # fmt: skip

        # Candidate rows of flows not yet classified (new streams may start in this batch).
        known_before = (
            np.isin(dkey, self._stream_keys)
            if len(self._stream_keys)
            else np.zeros(len(rows), dtype=np.bool_)
        )
        fresh = ~known_before & ~self._rejects.mask(dkey, ts)
        consumed: list[int] = []
        cands: list[tuple[int, list[Decoder] | None]] = []
        p = proto
        for x in np.nonzero(fresh & (p == IP_PROTO_GRE))[0].tolist():
            cands.append((x, None))
        # IP protocols that tunnels use, and any protocol not commonly seen on a link (a
        # private shim straight over IP is looked at by the unknown-encapsulation decoder).
        unusual = ~COMMON_IP_LUT[p]
        for x in np.nonzero(fresh & unusual)[0].tolist():
            cands.append((x, None))
        det = self.detection
        for l4proto, decoders in ((17, self.udp_decoders), (6, self.tcp_decoders)):
            if not decoders:
                continue
            # Flows whose first payload packets no format accepted are only probed: every format
            # recognised here shows itself in its first packets, unless junk was sent first.
            loud = self.flows.quiet[fids] < det.quiet_after(l4proto)
            loud |= probe(dkey, ts, det.quiet_probe_stride)
            sel = np.nonzero(fresh & (p == l4proto) & (h.paylen[rows] > 0) & loud)[0]
            if not len(sel):
                continue
            self.stats.prefiltered += len(sel)
            head, length = payload_heads(batch, h, rows[sel])
            masks = route_for(decoders).masks(head, length, sport[sel], dport[sel])
            anyhit = np.logical_or.reduce(masks)
            self.flows.add_quiet(fids[sel[~anyhit]])
            hits = np.nonzero(anyhit)[0]
            self.stats.candidates += len(hits)
            for j in hits.tolist():
                passing = [d for d, m in zip(decoders, masks, strict=True) if m[j]]
                cands.append((int(sel[j]), passing))
        cands.sort(key=lambda c: c[0])
        self._folded_rows = []
        for x, passing in cands:
            if int(dkey[x]) in self.streams:
                continue  # became a stream earlier in this batch: counted below
            if self._classify(batch, h, int(rows[x]), x, dkey, fkey, direction, weights, passing):
                consumed.append(x)

        # Rows of known streams: count them all, decode the first ones and then a sample.
        known = known_before
        if consumed:
            # Streams born in this batch: their other rows join the known ones.
            known = known_before | np.isin(dkey, dkey[consumed])
            known[consumed] = False
            # A flow promoted out of an aggregate in this batch: its rows before that were
            # counted there already.
            known[self._folded_rows] = False
        if not known.any():
            return
        decode_rows: list[tuple[int, int, float]] = []  # (batch row, index in `rows`, weight)
        kidx = np.nonzero(known)[0]
        ukeys, inv = np.unique(dkey[kidx], return_inverse=True)
        pk = np.bincount(inv, weights=None if weights is None else weights[rows[kidx]])
        by = np.bincount(inv, weights=wire[kidx])
        first = np.full(len(ukeys), np.inf)
        last = np.full(len(ukeys), -np.inf)
        np.minimum.at(first, inv, ts[kidx])
        np.maximum.at(last, inv, ts[kidx])
        sec = ts[kidx].astype(np.int64)
        # Timeline cells per stream: a share of the budget over every stream.
        lim = self.limits
        cells = min(lim.timeline_seconds, lim.timeline_cells // max(1, len(self.streams)))
        for j, k in enumerate(ukeys.tolist()):
            s = self.streams.get(k)
            if s is None:
                continue  # folded into an aggregate earlier in this batch
            s.count_seconds(sec[inv == j], max(16, cells))
            s.packets += int(pk[j])
            s.bytes += int(by[j])
            s.first_seen = min(s.first_seen, float(first[j]))
            s.last_seen = max(s.last_seen, float(last[j]))
            mine = kidx[inv == j]
            # TCP streams need every segment; flow exports every template at first, then a
            # sample (templates are re-sent, records are weighted).
            full = s.transport == "tcp" or (s.kind == "flow-export" and s.decoded < det.full_decode)
            budget = len(mine) if full else max(0, det.full_decode - s.decoded)
            decode_rows.extend((int(rows[x]), int(x), 1.0) for x in mine[:budget])
            rest = mine[budget:]
            if len(rest):
                # Every stride-th packet of the stream itself, each standing for `stride`.
                stride = (
                    det.flow_export_stride if s.kind == "flow-export" else det.stride(s.decoded)
                )
                phase = self._phase.get(k, 0)
                picked = rest[(phase + np.arange(len(rest))) % stride == 0]
                self._phase[k] = (phase + len(rest)) % stride
                decode_rows.extend((int(rows[x]), int(x), float(stride)) for x in picked)
        decode_rows.sort()
        self._decode_known(batch, h, decode_rows, dkey, fkey, direction, weights)

    def _natives(self, batch: PacketBatch, h: Headers, rows: npt.NDArray[np.int64]) -> None:
        """Fingerprint a sample of native packets for copy matching and plain copies."""
        ok = ~h.fragment[rows] & (h.l4[rows] >= 0)
        ip_end = np.minimum(batch.caplen[rows], h.l3[rows] + h.iplen[rows])
        l4len = ip_end - h.l4[rows]
        ok &= l4len >= 8
        r = rows[ok]
        if not len(r):
            return
        ranks = rank_np(h.src[r], h.dst[r], h.ipid[r], h.l4h[r])
        pick = ranks < U64(self.copies.keep_below)
        if not pick.any():
            return
        r, ranks, l4len = r[pick], ranks[pick], l4len[ok][pick]
        # Blank what lies past the packet's end (bytes of the next record) before hashing.
        l4 = h.l4h[r].copy()
        l4[np.arange(L4_BYTES)[None, :] >= l4len[:, None]] = 0
        fps = fingerprint_np(h.src[r], h.dst[r], h.proto[r], h.ipid[r], l4)
        eth = batch.linktype[r] == LINK_ETHERNET
        l2 = gather(batch.data, batch.offsets[r], 12).astype(np.int64)
        weights6 = 1 << (8 * np.arange(5, -1, -1, dtype=np.int64))
        l2dst = np.where(eth, l2[:, :6] @ weights6, 0)
        l2src = np.where(eth, l2[:, 6:12] @ weights6, 0)

        def addrs(i: int) -> tuple[str, str]:
            ver = int(h.ipver[r[i]])
            return _addr(h.src[r[i]], ver), _addr(h.dst[r[i]], ver)

        self.copies.add_natives(
            fps, ranks, batch.ts[r], l2dst, l2src, batch.wirelen[r], addrs,
            lambda i: batch.packet(int(r[i])),
        )  # fmt: skip

    def _carried_copy(self, stream_key: int, inner: InnerPacket, data: bytes, ts: float) -> None:
        fp = sampled_fingerprint(data, inner, self.copies.keep_below)
        if fp is not None:
            self.copies.check_copy(stream_key, fp, ts)

    # ---------------------------------------------------------------- python per packet

    def _context(self, batch: PacketBatch, h: Headers, r: int) -> PacketContext:
        ver = int(h.ipver[r])
        return PacketContext(
            src=_addr(h.src[r], ver),
            dst=_addr(h.dst[r], ver),
            sport=int(h.sport[r]),
            dport=int(h.dport[r]) if int(h.proto[r]) != IP_PROTO_GRE else 0,
            ttl=int(h.ttl[r]),
            ts=float(batch.ts[r]),
            udp_checksum=int(h.udpsum[r]) if int(h.proto[r]) == 17 else None,
            ip_proto=int(h.proto[r]),
        )

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

    def _drop_state(self, key: int) -> None:
        """Forget one stream's decoder state and reassembly buffers."""
        state = self._stream_state.pop(key, None)
        if isinstance(state, TemplateCache):
            state.release()
        self._stream_decoder.pop(key, None)
        self._phase.pop(key, None)
        self.tcp.forget(key)
        self.copies.streams.pop(key, None)

    def _gre(self, payload: bytes, ctx: PacketContext) -> tuple[bytes, tuple[Decoder, ...]] | None:
        g = parse_gre(payload)
        if g is None:
            return None
        fill_context(g, ctx)
        return payload[g.header_len :], self.gre_table.get(g.proto, ()) or self.fallback

    def _classify(
        self,
        batch: PacketBatch,
        h: Headers,
        r: int,
        x: int,
        dkey: npt.NDArray[np.uint64],
        fkey: npt.NDArray[np.uint64],
        direction: npt.NDArray[np.int8],
        weights: npt.NDArray[np.int64] | None,
        passing: list[Decoder] | None,
    ) -> bool:
        """Try the candidate decoders on one packet; True when it started a stream."""
        key = int(dkey[x])
        ctx = self._context(batch, h, r)
        payload = self._payload(batch, h, r)
        proto = int(h.proto[r])
        decoders: tuple[Decoder, ...] | list[Decoder]
        transport = {17: "udp", 6: "tcp", IP_PROTO_GRE: "gre"}.get(proto, f"ip/{proto}")
        if proto == IP_PROTO_GRE:
            got = self._gre(payload, ctx)
            if got is None:
                self._rejects.fail(key)
                return False
            payload, decoders = got
        elif passing is not None:
            decoders = passing
        else:
            decoders = self.ip_table.get(proto, ()) or self.fallback
        self.stats.decoded += 1
        best: tuple[float, int, Decoder, Decoded, object | None] | None = None
        states: list[object | None] = []
        for d in decoders:
            owner = (
                registry.port_owner(d, transport, ctx.sport, ctx.dport)
                if transport in ("udp", "tcp")
                else None
            )
            if owner and d.heuristic:
                continue  # a guess yields to the protocol registered on the port
            state = self._new_state(d)
            states.append(state)
            if isinstance(d, StreamDecoder):
                found = self._tcp_feed(d, h, r, key, payload, ctx, state, classify=True)
            else:
                checked = self._check(d, payload, ctx, state)
                found = checked if isinstance(checked, Decoded) else None
            if found is None:
                continue
            if owner and found.strength < 1.0:
                self._early_pdus.pop((key, d.name), None)
                continue
            # Several formats may accept one payload (those without a magic number): prefer the
            # strongest structural match, then the one whose usual port this is.
            on_port = ctx.dport in d.ports or ctx.sport in d.ports
            score = found.strength + (0.25 if on_port else 0.0)
            if best is None or (score, -d.priority) > (best[0], -best[1]):
                best = (score, d.priority, d, found, state)
        for other in states:
            # Templates learnt by the decoders that lost give their budget back.
            if isinstance(other, TemplateCache) and (best is None or other is not best[4]):
                other.release()
        if best is None:
            self._rejects.fail(key)
            return False
        _, _, d, found, state = best
        agg = self._admit(key, found, ctx, transport)
        if agg is not None:
            # Past a stream budget: the packet counts toward an aggregate stream and the flow
            # keeps no state of its own.
            self.tcp.forget(key)
            if isinstance(state, TemplateCache):
                state.release()
            for other in decoders:
                self._early_pdus.pop((key, other.name), None)
            self._folded_rows.append(x)
            agg.decoded += 1
            agg.add(found, 1.0, ctx.ts)
            self._keep_sample(agg, batch, r)
            agg.packets += 1 if weights is None else int(weights[r])
            agg.bytes += int(batch.wirelen[r])
            agg.first_seen = min(agg.first_seen, ctx.ts)
            agg.last_seen = max(agg.last_seen, ctx.ts)
            return False
        s = self._new_stream(batch, h, r, key, int(fkey[x]), int(direction[x]), found)
        s.transport = transport
        self._stream_state[key] = state
        self._stream_decoder[key] = d
        s.decoded += 1
        s.add(found, 1.0, ctx.ts)
        for pdu in self._early_pdus.pop((key, d.name), []):
            s.decoded += 1
            s.add(pdu, 1.0, ctx.ts)
        for other in decoders:
            self._early_pdus.pop((key, other.name), None)
        self._keep_sample(s, batch, r)
        # The vectorised counters missed this first packet (it was not yet a stream).
        s.packets += 1 if weights is None else int(weights[r])
        s.bytes += int(batch.wirelen[r])
        return True

    def _tcp_feed(
        self,
        d: StreamDecoder,
        h: Headers,
        r: int,
        key: int,
        payload: bytes,
        ctx: PacketContext,
        state: object | None,
        classify: bool,
    ) -> Decoded | None:
        seq = int(h.tcpseq[r])
        try:
            if classify:
                found = d.decode(payload, ctx, d.new_state())
                if found is None:
                    return None
                self.tcp.start(key, seq)
                data, _ = self.tcp.push(key, seq, payload)
                pdus = d.feed(data, ctx, state)
                # The stream is created by the caller with the first PDU; keep the rest for it.
                self._early_pdus[(key, d.name)] = pdus[1:]
                return pdus[0] if pdus else found
            data, gap = self.tcp.push(key, seq, payload)
            if gap:
                # Bytes were lost: start the decoder afresh so it resynchronises on a PDU.
                state = self._stream_state[key] = self._new_state(d)
            pdus = d.feed(data, ctx, state) if data else []
        except Exception as exc:
            reason = self._decoder_error(exc).reason
            if not classify:
                self.streams[key].rejects[reason] += 1
                # Resynchronise on a later PDU rather than feed a broken state again.
                self._stream_state[key] = self._new_state(d)
            return None
        s = self.streams[key]
        for pdu in pdus[1:]:
            s.decoded += 1
            s.protocol = d.stream_protocol(s.protocol, pdu)
            s.add(pdu, 1.0, ctx.ts)
        return pdus[0] if pdus else None

    def _decode_known(
        self,
        batch: PacketBatch,
        h: Headers,
        items: list[tuple[int, int, float]],
        dkey: npt.NDArray[np.uint64],
        fkey: npt.NDArray[np.uint64],
        direction: npt.NDArray[np.int8],
        weights: npt.NDArray[np.int64] | None,
    ) -> None:
        for r, x, weight in items:
            key = int(dkey[x])
            s = self.streams[key]
            d = self._stream_decoder[key]
            state = self._stream_state[key]
            ctx = self._context(batch, h, r)
            payload = self._payload(batch, h, r)
            if s.transport == "gre":
                got = self._gre(payload, ctx)
                if got is None:
                    s.decoded += 1
                    s.rejects["gre-header"] += 1
                    continue
                payload = got[0]
            if isinstance(d, StreamDecoder):
                # Counted per PDU, not per segment: a segment that ends no PDU is no failure.
                found = self._tcp_feed(d, h, r, key, payload, ctx, state, classify=False)
                if found is not None:
                    s.decoded += 1
                    s.protocol = d.stream_protocol(s.protocol, found)
                    s.add(found, 1.0, ctx.ts)
                    self._keep_sample(s, batch, r)
                elif len(s.outer_samples) < s.sample_limit and payload:
                    self._keep_sample(s, batch, r)
                continue
            s.decoded += 1
            if weights is not None:
                weight *= float(weights[r])
                s.fragments += int(weights[r])
            found = self._check(d, payload, ctx, state)
            if not isinstance(found, Decoded):
                s.rejects[found.reason if isinstance(found, Reject) else "invalid"] += 1
            else:
                # A stream may be renamed by what it turns out to carry (IPFIX → PSAMP).
                s.protocol = d.stream_protocol(s.protocol, found)
                s.add(found, weight, ctx.ts)
                self._keep_sample(s, batch, r)

    def _new_stream(
        self, batch: PacketBatch, h: Headers, r: int, key: int, fkey: int, dirn: int, d: Decoded
    ) -> StreamEvidence:
        ver = int(h.ipver[r])
        ts = float(batch.ts[r])
        s = StreamEvidence(
            key=key,
            flow_key=fkey,
            direction=dirn,
            protocol=d.protocol,
            kind=d.kind,
            transport="",
            src=_addr(h.src[r], ver),
            dst=_addr(h.dst[r], ver),
            sport=int(h.sport[r]),
            dport=int(h.dport[r]) if int(h.proto[r]) != IP_PROTO_GRE else 0,
            first_seen=ts,
            last_seen=ts,
        )
        if int(batch.linktype[r]) == LINK_ETHERNET and int(batch.caplen[r]) >= 14:
            o = int(batch.offsets[r])
            s.dst_mac = mac_str(batch.data[o : o + 6].tobytes())
            s.src_mac = mac_str(batch.data[o + 6 : o + 12].tobytes())
        if d.kind != "flow-export":
            s.copy_hook = lambda inner, data, ts: self._carried_copy(key, inner, data, ts)
        s.max_samples = self.limits.samples_per_stream
        s.sample_budget = self.samples
        self.streams[key] = s
        self._stream_keys = np.append(self._stream_keys, U64(key))
        return s

    @staticmethod
    def _keep_sample(s: StreamEvidence, batch: PacketBatch, r: int) -> None:
        if len(s.outer_samples) < s.sample_limit:
            s.keep_outer(float(batch.ts[r]), int(batch.linktype[r]), batch.packet(r))

    # ---------------------------------------------------------------- stream budgets

    def _admit(
        self, key: int, found: Decoded, ctx: PacketContext, transport: str
    ) -> StreamEvidence | None:
        """None when a new stream may be kept (it joins its budget groups), else the aggregate
        stream that takes its packets instead."""
        lim = self.limits
        proto, kind = found.protocol, found.kind
        # Aggregates of tunnels keep the first pair's addresses (a tunnel finding is a pair).
        anyone = ctx.src if kind == "tunnel" else ""
        if len(self.streams) + len(self._aggregates) >= lim.streams:
            self._shed_streams += 1
            return self._aggregate(("all", proto, transport), found, ctx, transport, anyone,
                                   ctx.dst, 0)  # fmt: skip
        groups: list[tuple[object, ...]] = []
        if kind == "tunnel" and transport == "udp":
            # Port-only tunnels (one stream per peer port) fold per host pair.
            pair: tuple[object, ...] = ("pair", proto, ctx.src, ctx.dst)
            g = self._groups.get(pair)
            if g is not None and len(g.kept) >= lim.tunnel_streams_per_pair:
                self._shed_tunnels += 1
                for k in g.kept:  # the pair's finding may be any of them
                    self.streams[k].extra["truncated"] = True
                # Named by the port they are sent to: the folded streams then join the kept
                # ones in one finding (overlays hash the source port per inner flow).
                dport = ctx.dport if transport == "udp" else 0
                return self._aggregate(pair, found, ctx, transport, ctx.src, ctx.dst, dport)
            groups.append(pair)
        family = "flow-export" if kind == "flow-export" else proto
        dport = ctx.dport if transport in ("udp", "tcp") else 0
        coll: tuple[object, ...] = ("to", family, ctx.dst, dport, transport)
        g = self._groups.get(coll)
        if g is not None and len(g.kept) >= lim.streams_per_collector and not self._promote(g, key):
            self._shed_streams += 1
            return self._aggregate(coll, found, ctx, transport, anyone, ctx.dst, dport)
        groups.append(coll)
        for gk in groups:
            self._groups.setdefault(gk, _Group()).kept.add(key)
        self._member[key] = groups
        return None

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
        weakest = min(g.kept, key=lambda k: self.streams[k].packets)
        if n < max(3, self.streams[weakest].packets + 1):
            return False
        g.returns.pop(key, None)
        self._fold_stream(weakest)
        return True

    def _fold_stream(self, key: int) -> None:
        """Fold a kept stream into the aggregate of its collector group."""
        s = self.streams.pop(key)
        self._drop_state(key)
        self._stream_keys = np.fromiter(self.streams, dtype=U64, count=len(self.streams))
        groups = self._member.pop(key, [])
        for gk in groups:
            g = self._groups.get(gk)
            if g is not None:
                g.kept.discard(key)
        coll = groups[-1]
        agg = self._aggregates.get(coll)
        if agg is None:
            src = s.src if s.kind == "tunnel" else ""
            agg = self._new_aggregate(coll, s.protocol, s.kind, s.transport, src, s.dst,
                                      int(coll[3]), s.first_seen)  # type: ignore[arg-type]  # fmt: skip
        s.copy_hook = None
        agg.absorb(s)
        self._count_exporter(coll, s.src, s.packets)
        self._shed_streams += 1

    def _aggregate(
        self,
        group: tuple[object, ...],
        found: Decoded,
        ctx: PacketContext,
        transport: str,
        src: str,
        dst: str,
        dport: int,
    ) -> StreamEvidence:
        agg = self._aggregates.get(group)
        if agg is None:
            agg = self._new_aggregate(group, found.protocol, found.kind, transport, src, dst,
                                      dport, ctx.ts)  # fmt: skip
        self._count_exporter(group, ctx.src, 1)
        return agg

    def _new_aggregate(
        self,
        group: tuple[object, ...],
        protocol: str,
        kind: str,
        transport: str,
        src: str,
        dst: str,
        dport: int,
        ts: float,
    ) -> StreamEvidence:
        agg = StreamEvidence(
            key=_synthetic_key(group), flow_key=0, direction=0, protocol=protocol,
            kind=kind, transport=transport, src=src, dst=dst, sport=0, dport=dport,  # type: ignore[arg-type]
            first_seen=ts, last_seen=ts,
        )  # fmt: skip
        agg.max_samples = self.limits.samples_per_stream
        agg.sample_budget = self.samples
        agg.extra["truncated"] = True
        self._aggregates[group] = agg
        return agg

    def _count_exporter(self, group: tuple[object, ...], src: str, packets: int) -> None:
        c = self._agg_exporters.setdefault(group, Counter())
        c[src] += packets
        if len(c) > MAX_EXPORTERS_COUNTED:
            # Keep the busiest half; the number folded is counted apart.
            self._agg_exporters[group] = Counter(dict(c.most_common(MAX_EXPORTERS_COUNTED // 2)))

    def _describe_aggregates(self) -> None:
        for group, agg in self._aggregates.items():
            c = self._agg_exporters.get(group, Counter())
            agg.extra["exporters_kept_apart"] = (
                len(self._groups[group].kept) if group in self._groups else 0
            )
            agg.extra["top_exporters"] = [f"{ip} ({n})" for ip, n in c.most_common(TOP_EXPORTERS)]
            agg.extra["exporters_counted"] = len(c)

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
        for s in self.streams.values():
            c = self.flows.counters(s.flow_key)
            if c is not None:
                s.return_packets = c[1 - s.direction]
                s.return_bytes = c[3 - s.direction]
            m = self.copies.streams.get(s.key)
            if m is not None:
                s.extra["copies_checked"] = m.checked
                s.extra["copies_matched"] = m.matched
                if m.delays:
                    s.extra["copy_delay_ms"] = round(1000 * float(np.median(m.delays)), 3)
        self._log_rates()
        plain = [plain_copy_stream(pc) for pc in self.copies.plain_streams()]
        hidden = encrypted.evidence(self.encrypted, self.flows)
        every = [*self.streams.values(), *self._aggregates.values(), *plain, *hidden]
        return sorted(every, key=lambda s: (s.first_seen, s.key))

    def _log_rates(self) -> None:
        """Connection records per second of a log export against new flows per second on the
        span: a log of every connection keeps pace with the span's own."""
        st = self.stats
        span = (st.last_ts or 0.0) - (st.first_ts or 0.0)
        if span <= 0:
            return
        for s in self.streams.values():
            if s.protocol in LOG_EXPORTS and s.decoded:
                lines = s.records * max(1.0, s.packets / s.decoded)
                s.extra["records_per_s"] = round(lines / span, 3)
                s.extra["span_new_flows_per_s"] = round(self.flows.total_flows / span, 3)

    def distinct_hosts(self) -> int:
        return self._hosts_before + self.hosts.count

    def expire_streams(self, now: float, idle: float) -> list[StreamEvidence]:
        """Drop streams idle for ``idle`` seconds of capture time, with their decoder state;
        returns their evidence so a long-running watch can keep their findings."""
        gone = [s for s in self.streams.values() if now - s.last_seen > idle]
        idle_aggs = [g for g, a in self._aggregates.items() if now - a.last_seen > idle]
        for group in idle_aggs:
            gone.append(self._aggregates.pop(group))
            self._agg_exporters.pop(group, None)
        if not gone:
            return []
        for s in gone:
            if self.streams.pop(s.key, None) is None:
                continue  # an aggregate
            self._drop_state(s.key)
            for gk in self._member.pop(s.key, []):
                g = self._groups.get(gk)
                if g is not None:
                    g.kept.discard(s.key)
                    if not g.kept:
                        del self._groups[gk]
            self.samples.used -= s.sample_bytes()
        self._stream_keys = np.fromiter(self.streams, dtype=U64, count=len(self.streams))
        return gone


def _addr(words: npt.NDArray[np.uint32], ver: int) -> str:
    if ver == 4:
        return ip_str(struct.pack("!I", int(words[3])))
    return ip_str(struct.pack("!4I", *(int(w) for w in words)))


def _mac(v: int) -> str:
    return mac_str(v.to_bytes(6, "big"))


def plain_copy_stream(pc: PlainCopies) -> StreamEvidence:
    """Evidence of a plain-copy stream (TEE / nft dup) from its duplicate sightings."""
    s = StreamEvidence(
        key=(pc.l2src << 16) ^ pc.l2dst,
        flow_key=0,
        direction=0,
        protocol="tee-copy",
        kind="mirror",
        transport="l2",
        src="",
        dst="",
        sport=0,
        dport=0,
        src_mac=_mac(pc.l2src),
        dst_mac=_mac(pc.l2dst),
        first_seen=pc.first_seen,
        last_seen=pc.last_seen,
        packets=pc.estimated_packets,
        bytes=pc.estimated_bytes,
        decoded=pc.matches,
        validated=pc.matches,
        strength_sum=float(pc.matches),
        header_example=(
            f"the same IP packets seen twice within {1000 * max(pc.delays):.1f} ms, the second "
            f"time sent to {_mac(pc.l2dst)} instead of their own next hop"
        ),
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
    s.extra["copy_delay_ms"] = round(1000 * float(np.median(pc.delays)), 3) if pc.delays else 0.0
    return s


def _rows(batch: PacketBatch, a: int, b: int) -> PacketBatch:
    """Packets a..b-1 of a batch (views, sharing its bytes)."""
    return PacketBatch(
        data=batch.data,
        offsets=batch.offsets[a:b],
        caplen=batch.caplen[a:b],
        wirelen=batch.wirelen[a:b],
        ts=batch.ts[a:b],
        linktype=batch.linktype[a:b],
    )


def _batch_of(datagrams: list[Reassembled]) -> PacketBatch:
    """Reassembled datagrams as a raw-IP batch for the normal pipeline."""
    return PacketBatch.of_frames(
        [d.datagram for d in datagrams],
        ts=[d.ts for d in datagrams],
        wirelen=[d.wire for d in datagrams],
        linktype=101,
    )
