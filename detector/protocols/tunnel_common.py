"""Checks shared by the tunnel decoders: what a tunnel carries, and prefilter column helpers.

A tunnel is only called one when the bytes after its header parse as what the header claims, so
every tunnel module ends in one of these checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detector.decode.frames import ipv4_valid, ipv6_valid

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# IPv6 next headers seen in practice; anything else in a would-be IPv6 header is taken as noise.
IPV6_NEXT_HEADERS = frozenset(
    {0, 1, 2, 4, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 88, 89, 103, 112, 132, 135, 136, 139}
)

# PPP protocol numbers a tunnel plausibly carries: IP, IPv6, LCP, IPCP, IPV6CP, PAP, CHAP, EAP,
# CCP, compressed datagram (MPPE), multilink, LQR.
PPP_PROTOCOLS = frozenset(
    {0x0021, 0x0057, 0xC021, 0x8021, 0x8057, 0xC023, 0xC223, 0xC227, 0x80FD, 0x00FD, 0x003D,
     0xC025, 0x0031, 0x8031, 0x80FB, 0x00FB, 0x0281, 0x8281}
)  # fmt: skip


def hex_head(data: bytes, n: int) -> str:
    """The first ``n`` bytes as spaced hex, for ``Decoded.header``."""
    return " ".join(f"{b:02x}" for b in data[:n])


def ip_version_at(data: bytes, off: int) -> int:
    """4 or 6 when a real IP packet starts at ``off`` (it may be cut short by the capture), else 0.

    IPv4 must pass its header checksum; IPv6, having none, must have a plausible next header and
    a payload length that is not shorter than what follows it.
    """
    if off >= len(data):
        return 0
    nib = data[off] >> 4
    if nib == 4:
        return 4 if ipv4_valid(data, off, checksum=True) else 0
    if nib == 6 and ipv6_valid(data, off):
        plen = (data[off + 4] << 8) | data[off + 5]
        if data[off + 6] in IPV6_NEXT_HEADERS and plen + 40 >= len(data) - off:
            return 6
    return 0


def ip_fills(data: bytes, off: int) -> bool:
    """A real IP packet at ``off`` whose stated length is exactly what follows (no cut-short
    capture): the strongest check for formats without a magic number."""
    version = ip_version_at(data, off)
    if version == 4:
        return (data[off + 2] << 8) | data[off + 3] == len(data) - off
    return version == 6 and ((data[off + 4] << 8) | data[off + 5]) + 40 == len(data) - off


def ppp_at(data: bytes, off: int) -> int:
    """The PPP protocol number of a PPP frame at ``off`` (optional ff 03, optional protocol-field
    compression), or -1 when it is not one.  Frames that claim IP must carry a real IP packet."""
    if len(data) - off >= 2 and data[off] == 0xFF and data[off + 1] == 0x03:
        off += 2
    if len(data) - off < 1:
        return -1
    if data[off] & 0x01:  # compressed one-byte protocol field
        proto, body = data[off], off + 1
    elif len(data) - off >= 2:
        proto, body = (data[off] << 8) | data[off + 1], off + 2
    else:
        return -1
    # A compressed field holds the same number (0x21 is 0x0021).
    if proto not in PPP_PROTOCOLS:
        return -1
    if proto in (0x0021, 0x0057) and not ip_version_at(data, body):
        return -1
    return proto


def be16(head: npt.NDArray[np.uint8], col: int) -> npt.NDArray[np.int64]:
    """Big-endian 16-bit column of a prefilter matrix, widened so arithmetic cannot wrap."""
    return (head[:, col].astype("int64") << 8) | head[:, col + 1]
