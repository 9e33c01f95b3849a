"""Per-packet fallback for outer packets the vectorised decoder leaves aside, and IP reassembly.

Handles deep VLAN stacks, MPLS, PPPoE, PPP link types, IPv6 extension headers and fragments.  It
writes the same columns as :func:`detector.decode.headers.decode_headers`, so later stages do not
care which path decoded a row.  Fragments are reassembled here; complete datagrams come back as
raw-IP packets that the engine runs through the normal pipeline (a full-size frame plus GRE and
ERSPAN headers exceeds the MTU, so real mirrors do fragment).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from detector.capture.reader import PacketBatch
from detector.decode.frames import (
    ETH_MPLS,
    ETH_PPPOE_SESSION,
    ETH_VLAN_TAGS,
    ones_complement_sum,
    parse_ip,
)
from detector.decode.headers import L4_WINDOW, LINK_ETHERNET, LINK_SLL, LINK_SLL2, Headers

# The largest IPv4 total length / IPv6 payload length (jumbograms are not reassembled).
MAX_IP_LENGTH = 0xFFFF
PPP_TO_ETHERTYPE = {0x0021: 0x0800, 0x0057: 0x86DD}


def _l3_after_ethertype(pkt: bytes, pos: int, etype: int) -> int:
    """Skip VLAN tags, PPPoE and MPLS from an EtherType field at ``pos - 2``; IP offset or -1."""
    for _ in range(8):
        if etype in ETH_VLAN_TAGS and len(pkt) >= pos + 4:
            etype = (pkt[pos + 2] << 8) | pkt[pos + 3]
            pos += 4
        else:
            break
    if etype == ETH_PPPOE_SESSION and len(pkt) >= pos + 8:
        etype = PPP_TO_ETHERTYPE.get((pkt[pos + 6] << 8) | pkt[pos + 7], 0)
        pos += 8
    elif etype in ETH_MPLS:
        for _ in range(16):
            if len(pkt) < pos + 4:
                return -1
            bos = pkt[pos + 2] & 1
            pos += 4
            if bos:
                break
        if len(pkt) <= pos:
            return -1
        etype = {4: 0x0800, 6: 0x86DD}.get(pkt[pos] >> 4, 0)
    return pos if etype in (0x0800, 0x86DD) else -1


def l3_offset(pkt: bytes, linktype: int) -> int:
    """Offset of the IP header in a captured frame of ``linktype``, or -1."""
    if linktype == LINK_ETHERNET and len(pkt) >= 14:
        return _l3_after_ethertype(pkt, 14, (pkt[12] << 8) | pkt[13])
    if linktype == LINK_SLL and len(pkt) >= 16:
        return _l3_after_ethertype(pkt, 16, (pkt[14] << 8) | pkt[15])
    if linktype == LINK_SLL2 and len(pkt) >= 20:
        return _l3_after_ethertype(pkt, 20, (pkt[0] << 8) | pkt[1])
    if linktype in (9, 50) and len(pkt) >= 4:  # PPP, PPP in HDLC framing
        off = 2 if pkt[0] == 0xFF and pkt[1] == 0x03 else 0
        return off + 2 if ((pkt[off] << 8) | pkt[off + 1]) in PPP_TO_ETHERTYPE else -1
    if linktype == 51 and len(pkt) >= 8:  # PPPoE without Ethernet header
        return 8 if ((pkt[6] << 8) | pkt[7]) in PPP_TO_ETHERTYPE else -1
    if linktype == 104 and len(pkt) >= 4:  # Cisco HDLC: address, control, EtherType
        return 4 if ((pkt[2] << 8) | pkt[3]) in (0x0800, 0x86DD) else -1
    if linktype == 192 and len(pkt) >= 5:  # PPP with direction byte
        return 3 if ((pkt[1] << 8) | pkt[2]) in PPP_TO_ETHERTYPE else -1
    if len(pkt) >= 1 and pkt[0] >> 4 in (4, 6):
        return 0
    return -1


@dataclass
class _Pending:
    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int = -1  # payload length once the last fragment is seen
    header: bytes = b""  # header of the first fragment (offset 0)
    wire: int = 0
    frames: int = 0
    have: int = 0  # payload bytes of the pieces (overlaps counted twice: a bound, not a sum)
    charge: int = 0  # what the pieces cost against the reassembler's byte budget


# Bookkeeping charged per waiting piece on top of its bytes, so zero-length fragments count.
PIECE_OVERHEAD = 96


@dataclass(slots=True)
class Reassembled:
    ts: float
    wire: int
    frames: int
    datagram: bytes


class Reassembler:
    """IPv4 and IPv6 fragment reassembly with bounded memory: datagrams, pieces (zero-length
    ones included) and bytes waiting are each budgeted; past a budget the oldest datagrams are
    dropped and counted in ``shed``."""

    def __init__(
        self,
        timeout: float = 30.0,
        max_pending: int = 4096,
        max_bytes: int = 16 << 20,
        max_pieces: int = 16_384,
    ):
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.max_pieces = max_pieces
        self.pending: dict[tuple[object, ...], _Pending] = {}
        self.bytes = 0  # charged: piece bytes plus PIECE_OVERHEAD each
        self.pieces = 0
        self.shed = 0  # datagrams dropped because a budget was reached
        self.oversized = 0  # datagrams dropped for reassembling past MAX_IP_LENGTH

    def add(self, pkt: bytes, l3: int, ts: float, wire: int) -> Reassembled | None:
        ver = pkt[l3] >> 4
        if ver == 4:
            ihl = (pkt[l3] & 0x0F) * 4
            total = (pkt[l3 + 2] << 8) | pkt[l3 + 3]
            flags_off = (pkt[l3 + 6] << 8) | pkt[l3 + 7]
            key: tuple[object, ...] = (4, pkt[l3 + 12 : l3 + 20], pkt[l3 + 9], pkt[l3 + 4 : l3 + 6])
            offset = (flags_off & 0x1FFF) * 8
            more = bool(flags_off & 0x2000)
            header = pkt[l3 : l3 + ihl]
            body = pkt[l3 + ihl : l3 + total]
        else:
            found = _ipv6_fragment(pkt, l3)
            if found is None:
                return None
            header, fh, body = found
            offset = ((pkt[fh + 2] << 8) | pkt[fh + 3]) & 0xFFF8
            more = bool(pkt[fh + 3] & 1)
            key = (6, pkt[l3 + 8 : l3 + 40], pkt[fh + 4 : fh + 8])
        self._expire(ts)
        entry = self.pending.get(key)
        if entry is None:
            if len(self.pending) >= self.max_pending:
                self._drop_oldest()
                self.shed += 1
            entry = self.pending[key] = _Pending(first_ts=ts)
        if offset + len(body) + len(header) - (40 if ver == 6 else 0) > MAX_IP_LENGTH:
            # Past what an IP length field can say (the ping of death): never a real datagram.
            self._remove(key)
            self.oversized += 1
            return None
        if offset not in entry.pieces:
            entry.pieces[offset] = body
            entry.have += len(body)
            entry.charge += len(body) + PIECE_OVERHEAD
            self.bytes += len(body) + PIECE_OVERHEAD
            self.pieces += 1
        entry.wire += wire
        entry.frames += 1
        if offset == 0:
            entry.header = header
        if not more:
            entry.total = offset + len(body)
        while (self.bytes > self.max_bytes or self.pieces > self.max_pieces) and self.pending:
            self._drop_oldest()
            self.shed += 1
        if key not in self.pending or entry.total < 0 or not entry.header:
            return None
        if entry.have < entry.total:
            return None  # pieces missing: no need to sort them yet
        data = _join(entry.pieces, entry.total)
        if data is None:
            return None
        if len(data) + len(entry.header) - (40 if ver == 6 else 0) > MAX_IP_LENGTH:
            self._remove(key)
            self.oversized += 1
            return None
        del self.pending[key]
        self.bytes -= entry.charge
        self.pieces -= len(entry.pieces)
        return Reassembled(entry.first_ts, entry.wire, entry.frames, _rebuild(entry.header, data))

    def _expire(self, now: float) -> None:
        if not self.pending:
            return
        oldest = next(iter(self.pending.values()))
        if now - oldest.first_ts > self.timeout:
            for k in [k for k, e in self.pending.items() if now - e.first_ts > self.timeout]:
                self._remove(k)

    def _drop_oldest(self) -> None:
        self._remove(next(iter(self.pending)))

    def _remove(self, key: tuple[object, ...]) -> None:
        entry = self.pending.pop(key)
        self.bytes -= entry.charge
        self.pieces -= len(entry.pieces)


def _ipv6_fragment(pkt: bytes, l3: int) -> tuple[bytes, int, bytes] | None:
    """(unfragmentable header with next-header fixed, fragment header offset, fragment data)."""
    nh = pkt[l3 + 6]
    pos = l3 + 40
    prev_nh_at = l3 + 6
    end = l3 + 40 + ((pkt[l3 + 4] << 8) | pkt[l3 + 5])
    for _ in range(8):
        if nh == 44:
            if len(pkt) < pos + 8:
                return None
            header = bytearray(pkt[l3:pos])
            header[prev_nh_at - l3] = pkt[pos]
            return bytes(header), pos, pkt[pos + 8 : end]
        if nh not in (0, 43, 60) or len(pkt) < pos + 8:
            return None
        prev_nh_at = pos
        nh, pos = pkt[pos], pos + (pkt[pos + 1] + 1) * 8
    return None


def _join(pieces: dict[int, bytes], total: int) -> bytes | None:
    out = bytearray(total)
    covered = 0
    for off in sorted(pieces):
        if off > covered:
            return None
        chunk = pieces[off]
        out[off : off + len(chunk)] = chunk[: max(0, total - off)]
        covered = max(covered, off + len(chunk))
    return bytes(out) if covered >= total else None


def _rebuild(header: bytes, payload: bytes) -> bytes:
    h = bytearray(header)
    if h[0] >> 4 == 4:
        struct.pack_into("!H", h, 2, len(h) + len(payload))  # total length
        struct.pack_into("!H", h, 6, 0)  # no more fragments, offset 0
        struct.pack_into("!H", h, 10, 0)
        struct.pack_into("!H", h, 10, ~ones_complement_sum(bytes(h)) & 0xFFFF)
    else:
        struct.pack_into("!H", h, 4, len(h) - 40 + len(payload))
    return bytes(h) + payload


def finish_rows(
    batch: PacketBatch, h: Headers, rows: list[int], reasm: Reassembler
) -> list[Reassembled]:
    """Decode the ``slow`` rows in Python, writing results into ``h``; return whole datagrams."""
    done: list[Reassembled] = []
    for i in rows:
        pkt = batch.packet(i)
        h.slow[i] = False
        h.ipver[i] = 0
        l3 = l3_offset(pkt, int(batch.linktype[i]))
        if l3 < 0:
            continue
        ip = parse_ip(pkt, l3)
        if ip is None:
            continue
        if ip.fragment or (ip.ip_version == 4 and pkt[l3 + 6] & 0x20):
            whole = reasm.add(pkt, l3, float(batch.ts[i]), int(batch.wirelen[i]))
            if whole is not None:
                done.append(whole)
            continue
        h.l3[i] = l3
        h.ipver[i] = ip.ip_version
        h.proto[i] = ip.proto
        h.iplen[i] = ip.ip_len
        h.ipid[i] = ip.ip_id
        h.ttl[i] = pkt[l3 + 8] if ip.ip_version == 4 else pkt[l3 + 7]
        if ip.ip_version == 4:
            h.src[i] = (0, 0, 0, struct.unpack_from("!I", pkt, l3 + 12)[0])
            h.dst[i] = (0, 0, 0, struct.unpack_from("!I", pkt, l3 + 16)[0])
        else:
            h.src[i] = struct.unpack_from("!4I", pkt, l3 + 8)
            h.dst[i] = struct.unpack_from("!4I", pkt, l3 + 24)
        l4 = ip.l4_offset
        h.l4[i] = l4
        # Copy fingerprints read this window: it must start at this packet's own L4 header, not
        # where the block decode stopped (the Ethernet header of MPLS, PPPoE, QinQ rows).
        window = pkt[l4 : l4 + L4_WINDOW]
        h.l4h[i, : len(window)] = np.frombuffer(window, np.uint8)
        h.l4h[i, len(window) :] = 0
        h.sport[i], h.dport[i] = ip.sport, ip.dport
        hlen = 0
        if ip.proto == 6 and len(pkt) >= l4 + 20:
            h.tcpflags[i] = pkt[l4 + 13]
            h.tcpseq[i] = struct.unpack_from("!I", pkt, l4 + 4)[0]
            hlen = (pkt[l4 + 12] >> 4) * 4
        elif ip.proto == 47 and len(pkt) >= l4 + 4:
            h.dport[i] = (pkt[l4 + 2] << 8) | pkt[l4 + 3]
        elif ip.proto == 17 and len(pkt) >= l4 + 8:
            h.udpsum[i] = struct.unpack_from("!H", pkt, l4 + 6)[0]
            hlen = 8
        h.pay[i] = l4 + hlen
        h.paylen[i] = max(0, min(len(pkt), l3 + ip.ip_len) - (l4 + hlen))
    return done
