"""Checks shared by the tunnel decoders: what a tunnel carries.

A tunnel is only called one when the bytes after its header parse as what the header claims, so
every tunnel module ends in one of these checks.
"""

from __future__ import annotations

from detector.decode import frames
from detector.decode.layers import PPP_TO_ETHERTYPE

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
    """4 or 6 when a real IP packet starts at ``off`` (it may be cut short by the capture), else
    0; checked strictly (a tunnel header does not vouch for its payload)."""
    return frames.ip_version_at(data, off, strict=True)


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
    if proto in PPP_TO_ETHERTYPE and not ip_version_at(data, body):
        return -1
    return proto
