"""Fingerprints of IP packets on what a router does not change.

A copy of a packet (inside a mirror, or re-sent whole like iptables TEE) keeps the addresses,
the protocol, the IPv4 identification, the L4 header and the payload; routers change the TTL,
the IP checksum and the L2 header.  The fingerprint hashes the first group only, so a copy and
its original hash alike.  The vectorised version (native packets, a whole batch at once) and the
per-packet version (carried copies) must agree bit for bit; the tests hold them to it.

Sampling by fingerprint (``fp % SAMPLE == 0``) keeps the same packets on both sides, so memory
stays bounded without losing matches.
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from detector.decode.frames import InnerPacket

# Bytes from the start of the L4 header that enter the fingerprint (ports, sequence numbers or
# lengths, and the start of the payload).
L4_BYTES = 24
SAMPLE = 16
_MASK = (1 << 64) - 1
_M1 = 0x9E3779B97F4A7C15
_M2 = 0xBF58476D1CE4E5B9
_M3 = 0x94D049BB133111EB


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * _M2) & _MASK
    x = ((x ^ (x >> 27)) * _M3) & _MASK
    return x ^ (x >> 31)


def _mix_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_M2)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_M3)
        return x ^ (x >> np.uint64(31))


def fingerprint_np(
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    proto: npt.NDArray[np.int64],
    ipid: npt.NDArray[np.int64],
    l4: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint64]:
    """Fingerprints of many packets: address words (n, 4), protocol, IPv4 id, and (n, 24) bytes
    from the L4 header on (zero past the end of the packet)."""
    u = np.uint64
    s = src.astype(u)
    d = dst.astype(u)
    words = np.ascontiguousarray(l4).view(">u8").astype(u)
    with np.errstate(over="ignore"):
        h = _mix_np((s[:, 0] << u(32)) | s[:, 1])
        h = _mix_np(h ^ ((s[:, 2] << u(32)) | s[:, 3]))
        h = _mix_np(h ^ ((d[:, 0] << u(32)) | d[:, 1]))
        h = _mix_np(h ^ ((d[:, 2] << u(32)) | d[:, 3]))
        h = _mix_np(h ^ ((proto.astype(u) << u(16)) | ipid.astype(u)))
        for i in range(L4_BYTES // 8):
            h = _mix_np(h ^ words[:, i] * u(_M1))
    return h


def _words(addr: bytes) -> tuple[int, int, int, int]:
    if len(addr) == 4:
        return (0, 0, 0, struct.unpack("!I", addr)[0])
    w = struct.unpack("!4I", addr)
    return (w[0], w[1], w[2], w[3])


def fingerprint_packet(data: bytes, inner: InnerPacket) -> int | None:
    """Fingerprint of one parsed IP packet (``inner`` from detector.decode.frames), or None when
    too little of it is there to fingerprint."""
    if inner.ip_offset < 0 or inner.l4_offset < 0 or inner.fragment:
        return None
    off = inner.ip_offset
    if inner.ip_version == 4:
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
    else:
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
    end = min(len(data), off + inner.ip_len)
    l4 = bytes(data[inner.l4_offset : min(end, inner.l4_offset + L4_BYTES)])
    if len(l4) < 8:
        return None
    l4 = l4.ljust(L4_BYTES, b"\0")
    s, d = _words(bytes(src)), _words(bytes(dst))
    h = _mix((s[0] << 32) | s[1])
    h = _mix(h ^ ((s[2] << 32) | s[3]))
    h = _mix(h ^ ((d[0] << 32) | d[1]))
    h = _mix(h ^ ((d[2] << 32) | d[3]))
    h = _mix(h ^ ((inner.proto << 16) | (inner.ip_id if inner.ip_version == 4 else 0)))
    for (w,) in struct.iter_unpack("!Q", l4):
        h = _mix(h ^ ((w * _M1) & _MASK))
    return h


def sampled(fp: int) -> bool:
    return fp % SAMPLE == 0
