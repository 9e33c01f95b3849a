"""IP fragment reassembly for the rows the block walk flags ``slow`` (the fragments).

Complete datagrams come back as raw-IP packets that the engine runs through the normal pipeline
(a full-size frame plus GRE and ERSPAN headers exceeds the MTU, so real mirrors do fragment).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from detector.capture.reader import PacketBatch
from detector.decode.frames import ones_complement_sum
from detector.decode.headers import Headers
from detector.decode.layers import IPV6_FRAGMENT, be16_at, ipv6_chain

# The largest IPv4 total length / IPv6 payload length (jumbograms are not reassembled).
MAX_IP_LENGTH = 0xFFFF


@dataclass(repr=False, eq=False)
class _Pending:
    """The fragments of one datagram received so far."""

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


@dataclass(repr=False, eq=False, slots=True)
class Reassembled:
    """A datagram put back together from its fragments."""

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
        frag = _fragment_at(pkt, l3)
        if frag is None:
            return None
        self._expire(ts)
        key = frag.key
        entry = self.pending.get(key)
        if entry is None:
            if len(self.pending) >= self.max_pending:
                self._drop_oldest()
                self.shed += 1
            entry = self.pending[key] = _Pending(first_ts=ts)
        if frag.offset + len(frag.body) + _counted(frag.header) > MAX_IP_LENGTH:
            # Past what an IP length field can say (the ping of death): never a real datagram.
            self._remove(key)
            self.oversized += 1
            return None
        self._keep(entry, frag, wire)
        while (self.bytes > self.max_bytes or self.pieces > self.max_pieces) and self.pending:
            self._drop_oldest()
            self.shed += 1
        if key not in self.pending or entry.total < 0 or not entry.header:
            return None
        if entry.have < entry.total:
            return None  # pieces missing: no need to sort them yet
        return self._complete(key, entry)

    def _keep(self, entry: _Pending, frag: _Fragment, wire: int) -> None:
        if frag.offset not in entry.pieces:
            entry.pieces[frag.offset] = frag.body
            entry.have += len(frag.body)
            entry.charge += len(frag.body) + PIECE_OVERHEAD
            self.bytes += len(frag.body) + PIECE_OVERHEAD
            self.pieces += 1
        entry.wire += wire
        entry.frames += 1
        if frag.offset == 0:
            entry.header = frag.header
        if not frag.more:
            entry.total = frag.offset + len(frag.body)

    def _complete(self, key: tuple[object, ...], entry: _Pending) -> Reassembled | None:
        data = _join(entry.pieces, entry.total)
        if data is None:
            return None
        if len(data) + _counted(entry.header) > MAX_IP_LENGTH:
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


@dataclass(repr=False, eq=False, slots=True)
class _Fragment:
    """One fragment, as read from its IP header."""

    key: tuple[object, ...]  # which datagram: version, addresses, protocol, identification
    offset: int
    more: bool
    header: bytes  # the unfragmentable part, as the whole datagram's header will be
    body: bytes


def _counted(header: bytes) -> int:
    """What of a datagram's header its IP length field counts (IPv6: not the fixed 40 bytes)."""
    return len(header) - (40 if header[0] >> 4 == 6 else 0)


def _fragment_at(pkt: bytes, l3: int) -> _Fragment | None:
    if pkt[l3] >> 4 == 4:
        ihl = (pkt[l3] & 0x0F) * 4
        flags_off = be16_at(pkt, l3 + 6)
        return _Fragment(
            key=(4, pkt[l3 + 12 : l3 + 20], pkt[l3 + 9], pkt[l3 + 4 : l3 + 6]),
            offset=(flags_off & 0x1FFF) * 8,
            more=bool(flags_off & 0x2000),
            header=pkt[l3 : l3 + ihl],
            body=pkt[l3 + ihl : l3 + be16_at(pkt, l3 + 2)],
        )
    found = _ipv6_fragment(pkt, l3)
    if found is None:
        return None
    header, fh, body = found
    return _Fragment(
        key=(6, pkt[l3 + 8 : l3 + 40], pkt[fh + 4 : fh + 8]),
        offset=be16_at(pkt, fh + 2) & 0xFFF8,
        more=bool(pkt[fh + 3] & 1),
        header=header,
        body=body,
    )


def _ipv6_fragment(pkt: bytes, l3: int) -> tuple[bytes, int, bytes] | None:
    """(unfragmentable header with next-header fixed, fragment header offset, fragment data)."""
    end = l3 + 40 + be16_at(pkt, l3 + 4)
    names_it = l3 + 6  # the byte that names the header at hand
    for kind, at in ipv6_chain(pkt, l3)[0]:
        if kind == IPV6_FRAGMENT:
            header = bytearray(pkt[l3:at])
            header[names_it - l3] = pkt[at]
            return bytes(header), at, pkt[at + 8 : end]
        names_it = at
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
    """Hand the fragment rows (``slow``) to the reassembler at the IP offset the block walk
    found; they leave the batch's IP rows, and the datagrams they complete are returned."""
    done: list[Reassembled] = []
    for i in rows:
        h.slow[i] = False
        h.ipver[i] = 0
        whole = reasm.add(batch.packet(i), int(h.l3[i]), float(batch.ts[i]), int(batch.wirelen[i]))
        if whole is not None:
            done.append(whole)
    return done
