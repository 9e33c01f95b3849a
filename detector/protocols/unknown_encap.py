"""Unknown encapsulation: a payload that carries a whole IP packet or Ethernet frame at a fixed
offset, behind a header mirrorwatch does not know.

Many intercept exports use private shims on arbitrary ports.  What they cannot hide is the copy
itself: a valid IPv4 header (checksum right) or IPv6 header whose length ends exactly where the
datagram ends.  This decoder finds the offset of such a packet; the policy then requires one
offset to hold across the stream and decides mirror or tunnel from the same evidence as for
VXLAN or GRE.  It is the last resort: every known format is preferred to it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from detector.decode import headers
from detector.decode.frames import (
    ETH_IPV4,
    ETH_IPV6,
    IPV6_NEXT_HEADERS,
    ethernet_valid,
    ip_version_at,
    ones_complement_sum_np,
)
from detector.decode.lut import lut
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    PacketContext,
    ProtocolSpec,
)

# Offsets searched for the carried packet: room for a shim of up to 44 bytes (the prefilter
# window is 64 bytes and an IPv4 header needs 20 of them).
MAX_OFFSET = 44
# A carried IPv6 packet must leave room for an L4 header (a random 0x6_ run rarely does).
MIN_IPV6_PACKET = 48


def find_carried(payload: bytes) -> tuple[int, InnerLink, int] | None:
    """(offset of the carried frame, its link type, offset of its IP header), or None."""
    for k in range(min(MAX_OFFSET, len(payload) - 20) + 1):
        nib = ip_version_at(payload, k, exact_len=True, strict=True)
        if not nib or (nib == 6 and len(payload) - k < MIN_IPV6_PACKET):
            continue
        if k >= 14:
            etype = (payload[k - 2] << 8) | payload[k - 1]
            wanted = ETH_IPV4 if nib == 4 else ETH_IPV6
            if etype == wanted and ethernet_valid(payload, k - 14, strict=True):
                return k - 14, "ethernet", k
        return k, "ip", k
    return None


_NEXT_LUT = lut(sorted(IPV6_NEXT_HEADERS))
# First bytes of an IPv4 header with options or none (version 4, header length 5-15).
_IPV4_FIRST = lut(range(0x45, 0x50))


def _high(rest: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """High byte of each 16-bit length ``rest`` could be, as a column (clipped: a rest past
    0xffff fits no 16-bit field, nor does a negative one, so clipping only lets more rows by)."""
    return (np.clip(rest, 0, 0xFFFF) >> 8).astype(np.uint8)[:, None]


def _length_high_bytes_fit(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """Places (row * (MAX_OFFSET + 1) + offset) where an IPv4 (0x45-0x4f) or IPv6 (0x6_)
    header could start whose length field's high byte fits what is left of the payload.  A
    necessary condition of the exact test in ``carried_within_numpy``, worked out on bytes:
    about one random byte in ten starts an IP header, but only about one in a hundred has such a
    high byte, so the exact test is left with a few candidates instead of a tenth of the
    window."""
    span = MAX_OFFSET + 1
    # What is left of the payload from offset k is length - k, k in [0, MAX_OFFSET]: its high
    # byte is one of two neighbours.
    v4_low, v4_high = _high(length - MAX_OFFSET), _high(length)
    # An IPv6 payload length counts what follows its 40-byte header.
    v6_low, v6_high = _high(length - MAX_OFFSET - 40), _high(length - 40)
    start = head[:, :span]
    v4 = (start - np.uint8(0x45)) < 11
    v4 &= (head[:, 2 : 2 + span] - v4_low) <= (v4_high - v4_low)
    v6 = (start >> 4) == 6
    v6 &= (head[:, 4 : 4 + span] - v6_low) <= (v6_high - v6_low)
    v4 |= v6
    return np.flatnonzero(v4)


def carried_within_numpy(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Rows where an offset up to MAX_OFFSET starts an IPv4 header (checksum right) or an
    IPv6 header (plausible next header and hop limit) whose length ends where the payload
    does: the prefilter of :class:`UnknownEncapsulation`."""
    # Sparse: look only where a byte could start an IPv4 (0x45-0x4f) or IPv6 (0x6_) header,
    # then check the length field there against what is left of the payload.  The bytes
    # are read from the flat window (np.take): far cheaper than 2-D fancy indexing.
    width, span = head.shape[1], MAX_OFFSET + 1
    flat = np.ascontiguousarray(head).reshape(-1)
    at = _length_high_bytes_fit(head, length)
    rows = at // span
    ks = at - rows * span
    pos = rows * width + ks
    is4 = np.take(flat, pos) < 0x60
    at = pos + np.where(is4, 2, 4)
    field = (np.take(flat, at).astype(np.int64) << 8) | np.take(flat, at + 1)
    remaining = length[rows] - ks
    ok = (field + np.where(is4, 0, 40) == remaining) & (remaining >= 20)
    hit = np.nonzero(ok)[0]
    rows, ks, pos, is4, field = rows[hit], ks[hit], pos[hit], is4[hit], field[hit]
    # IPv6 hits: a plausible next header and hop limit, and room for an L4 header.
    last = rows * width + width - 1
    nh = np.take(flat, np.minimum(pos + 6, last))
    hop = np.take(flat, np.minimum(pos + 7, last))
    ok = is4 | (_NEXT_LUT[nh] & (hop > 0) & (field >= 8))
    # IPv4 hits must also have a right header checksum (one's-complement sum of the ten
    # header words is 0xffff); the 20 bytes are inside the window for every offset searched.
    v4 = np.nonzero(ok & is4)[0]
    if len(v4):
        hdr = np.take(flat, pos[v4, None] + np.arange(20)[None, :]).astype(np.int64)
        ok[v4] = ones_complement_sum_np(hdr[:, 0::2] << 8 | hdr[:, 1::2]) == 0xFFFF
    mask = np.zeros(len(head), dtype=np.bool_)
    mask[rows[ok]] = True
    return mask


def carried_within_compiled(
    head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """:func:`carried_within_numpy`, each row read once in a compiled pass."""
    assert headers.OUTER is not None, "the compiled header decode is not built"
    out = np.empty(len(head), dtype=np.bool_)
    headers.OUTER.ip_within(
        np.ascontiguousarray(head, dtype=np.uint8),
        head.shape[1],
        np.ascontiguousarray(length, dtype=np.int64),
        MAX_OFFSET,
        _IPV4_FIRST,
        _NEXT_LUT,
        out,
    )
    return out


# The form the prefilter uses: compiled where built, unless MIRRORWATCH_PURE_PYTHON=1.
carried_within = carried_within_compiled if headers.use_compiled else carried_within_numpy


UNKNOWN_ENCAPSULATION = ProtocolSpec(
    "unknown-encapsulation",
    "ambiguous",
    sid=29,
    doc="unknown-encapsulation.md",
    samples=("unknown-shim.pcap",),
    no_dissector="The encapsulation is unknown: mirrorwatch found a shim before IP by structure.",
)


class UnknownEncapsulation(Decoder):
    name = "unknown-encapsulation"
    emits = (UNKNOWN_ENCAPSULATION,)
    # A shim found by structure may sit on any GRE type or IP protocol no decoder claims.
    fallback = True
    kind = "mirror"
    transport = "udp"
    # Last resort: any known format that accepts the payload wins.
    priority: ClassVar[int] = 99
    heuristic: ClassVar[bool] = True

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return carried_within(head, length)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        found = find_carried(payload)
        if found is None:
            return None
        off, link, ip_at = found
        prefix = payload[:off].hex(" ") if off else "(none)"
        what = "an Ethernet frame" if link == "ethernet" else f"an IPv{payload[ip_at] >> 4} packet"
        return Decoded(
            protocol=self.name,
            kind="mirror",
            header=f"{off} unknown bytes ({prefix[:47]}) before {what} that fills the rest "
            f"of the datagram exactly",
            session={"offset": off, "inner": link},
            carried=[Carried(link=link, data=payload[off:])],
            facts={"prefix": payload[:off][:8].hex()},
            strength=0.4,
            header_len=off,
        )


DECODERS: list[Decoder] = [UnknownEncapsulation()]
