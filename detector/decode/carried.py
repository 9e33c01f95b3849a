"""The frames that many outer packets carry, checked and parsed at once.

:func:`detector.decode.frames.carried_frame` checks and parses one carried frame in Python
(about 20 microseconds); a mirror stream's sampled packets carry hundreds of them.  Here the
frames of many packets are laid end to end as one batch and read by the outer header decode
(:func:`detector.decode.headers.decode_headers`, compiled where built); the plain ones (an
Ethernet header, at most one VLAN tag, an IPv4 header without options or an IPv6 header without
extension headers, a TCP or UDP header, no fragment, all of it captured) are made into their
:class:`InnerPacket` from its columns, and every other frame is left to ``carried_frame``.
Either way a frame gets exactly what ``carried_frame`` gives it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detector.capture.reader import PacketBatch
from detector.decode.frames import (
    CHECKSUM_NONE,
    CHECKSUM_RIGHT,
    CHECKSUM_WRONG,
    CHECKSUM_ZERO,
    InnerPacket,
    carried_frame,
    ip_str,
    ipv4_str,
    mac_str,
    ones_complement_sum_np,
)
from detector.decode.headers import be16, decode_headers, gather
from detector.decode.layers import ETH_IPV4, ETH_IPV6, LINK_ETHERNET, LINK_RAW

# Below this many frames the batch's fixed cost (some forty numpy calls, about 0.15 ms) is more
# than what it saves on parsing them one by one (about 7 microseconds a frame, 3 here).
MIN_BATCH = 64
# Bytes read from the IP header on: an IPv6 header and the TCP header through its data offset
# byte; and from the start of a frame: an Ethernet header and a VLAN tag before them.
IP_SPAN = 40 + 13
HEAD = 14 + 4 + IP_SPAN
VLAN_TPID = 0x8100
LINKS = {"ethernet": LINK_ETHERNET, "ip": LINK_RAW}
CHECKSUM_STATES = (CHECKSUM_WRONG, CHECKSUM_ZERO, CHECKSUM_RIGHT)


def carried_frames(link: str, frames: Sequence[bytes]) -> list[InnerPacket | None]:
    """``[carried_frame(link, f) for f in frames]``, the plain frames read together."""
    if link not in LINKS or len(frames) < MIN_BATCH:
        return [carried_frame(link, f) for f in frames]
    sizes = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
    batch = PacketBatch.of_frames(list(frames), np.zeros(len(frames)), sizes, LINKS[link])
    plain = _Plain(batch, link)
    out: list[InnerPacket | None] = [None] * len(frames)
    for i in np.flatnonzero(~plain.rows).tolist():
        out[i] = carried_frame(link, frames[i])
    if plain.rows.any():
        for i, inner in zip(np.flatnonzero(plain.rows).tolist(), plain.packets(), strict=True):
            out[i] = inner
    return out


class _Plain:
    """The plain frames of a batch (``rows``) and their columns."""

    def __init__(self, batch: PacketBatch, link: str) -> None:
        h = decode_headers(batch)
        head = gather(batch.data, batch.offsets, HEAD)
        n, size = len(head), batch.caplen
        self.ethernet = ethernet = link == "ethernet"
        if ethernet:
            etype = be16(head, 12)
            tagged = (etype == VLAN_TPID) & (size >= 18)
            inner_type = np.where(tagged, be16(head, 16), etype)
            l3 = np.where(tagged, 18, 14)
        else:
            inner_type = np.zeros(n, dtype=np.int64)
            tagged = np.zeros(n, dtype=np.bool_)
            l3 = np.zeros(n, dtype=np.int64)
        # The IP header and what follows it, from the same column in every row.
        ip = np.take_along_axis(head, l3[:, None] + np.arange(IP_SPAN), axis=1)
        v4 = (ip[:, 0] == 0x45) & (h.ipver == 4)
        v6 = (ip[:, 0] >> 4 == 6) & (h.ipver == 6)
        if ethernet:
            v4 &= inner_type == ETH_IPV4
            v6 &= inner_type == ETH_IPV6
        proto = np.where(v6, ip[:, 6], ip[:, 9]).astype(np.int64)
        tcp = proto == 6
        # The transport header whole (TCP: through its data offset byte) in the capture and in
        # the IP packet's own length.
        need = np.where(tcp, 20, 8)
        l4 = l3 + np.where(v6, 40, 20)
        total = np.where(v6, be16(ip, 4) + 40, be16(ip, 2))
        self.rows = rows = (
            (v4 | v6)
            & (tcp | (proto == 17))
            & (size >= l4 + need)
            & (total >= l4 - l3 + need)
            & (h.l3 == l3)
            & (h.proto == proto)
            & (h.l4 == l4)
            # Not a fragment (IPv4 flags and offset; IPv6 has no extension header here).
            & (v6 | (be16(ip, 6) & 0x3FFF == 0))
            & ~h.fragment
        )
        r = np.flatnonzero(rows)
        self.head, self.ip = head[r], ip[r]
        self.l3, self.l4, self.v6, self.tcp = l3[r], l4[r], v6[r], tcp[r]
        self.tagged, self.inner_type, self.total = tagged[r], inner_type[r], total[r]
        self.proto, self.sport, self.dport = proto[r], h.sport[r], h.dport[r]

    def packets(self) -> list[InnerPacket]:
        """The plain frames' :class:`InnerPacket`, as ``carried_frame`` makes them."""
        head, ip, n = self.head, self.ip, len(self.head)
        v6 = self.v6
        # TCP: the header length its data offset says; UDP: 8 bytes.
        tcp_offset = (np.where(v6, ip[:, 52], ip[:, 32]) >> 4).astype(np.int64) * 4
        payload = self.l4 + np.where(self.tcp, tcp_offset, 8)
        ip_id = np.where(v6, 0, be16(ip, 4))
        checksum = np.where(v6, -1, _checksum_state(ip))
        if self.ethernet:
            dst_macs = [mac_str(m) for m in _rows_bytes(head[:, :6])]
            src_macs = [mac_str(m) for m in _rows_bytes(head[:, 6:12])]
            group = (head[:, 6] & 1).astype(np.bool_).tolist()
            ids = (be16(head, 14) & 0x0FFF).tolist()
            vlan = [v if t else None for v, t in zip(ids, self.tagged.tolist(), strict=True)]
            ethertype = self.inner_type.tolist()
        else:
            dst_macs = src_macs = vlan = [None] * n
            group = [False] * n
            ethertype = [0] * n
        return [
            InnerPacket(
                src_mac=sm, dst_mac=dm, ethertype=et, vlan=vl, ip_version=6 if six else 4,
                src=src, dst=dst, proto=pr, sport=sp, dport=dp, ip_id=ii, ip_len=il,
                ip_offset=o3, l4_offset=o4, payload_offset=po,
                checksum=CHECKSUM_NONE if cs < 0 else CHECKSUM_STATES[cs], group_source_mac=gr,
            )
            for sm, dm, et, vl, six, (src, dst), pr, sp, dp, ii, il, o3, o4, po, cs, gr in zip(
                src_macs, dst_macs, ethertype, vlan, v6.tolist(), self._addresses(),
                self.proto.tolist(), self.sport.tolist(), self.dport.tolist(), ip_id.tolist(),
                self.total.tolist(), self.l3.tolist(), self.l4.tolist(), payload.tolist(),
                checksum.tolist(), group, strict=True,
            )
        ]  # fmt: skip

    def _addresses(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        four = self.ip[:, 12:20].tolist()
        six = _rows_bytes(self.ip[:, 8:40])
        for a, raw, is6 in zip(four, six, self.v6.tolist(), strict=True):
            if is6:
                out.append((ip_str(raw[:16]), ip_str(raw[16:])))
            else:
                out.append((ipv4_str(*a[:4]), ipv4_str(*a[4:])))
        return out


def _checksum_state(ip: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Per row, the index in ``CHECKSUM_STATES`` of what the 20-byte IPv4 header at the start of
    the row says of its checksum (only rows that hold one are meant)."""
    words = ip[:, :20].astype(np.int64)
    total = ones_complement_sum_np((words[:, 0::2] << 8) | words[:, 1::2])
    zero = (ip[:, 10] == 0) & (ip[:, 11] == 0)
    return np.where(total == 0xFFFF, 2, np.where(zero, 1, 0))


def _rows_bytes(m: npt.NDArray[np.uint8]) -> list[bytes]:
    """Each row of a byte matrix as bytes."""
    raw = np.ascontiguousarray(m).tobytes()
    w = m.shape[1]
    return [raw[i : i + w] for i in range(0, len(raw), w)]
