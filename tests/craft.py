"""Hostile captures built byte by byte: what an attacker on the watched network can send."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

T0 = 1_700_000_000
OUTER_SRC_MAC, OUTER_DST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def pcap(frames: Iterable[bytes | Packet], step: int = 1, snaplen: int = 262144) -> bytes:
    """A little-endian microsecond pcap, one record per frame, ``step`` seconds apart."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for i, f in enumerate(frames):
        out.append(record(bytes(f), T0 + i * step))
    return b"".join(out)


def record(frame: bytes, sec: int, usec: int = 0) -> bytes:
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def pcapng(frames: Iterable[bytes | Packet], ticks: Iterable[int]) -> bytes:
    """One section, one Ethernet interface (microsecond ticks), one enhanced block per frame."""

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 262144))
    for f, t in zip(frames, ticks, strict=True):
        raw = bytes(f)
        out += block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(raw), len(raw)) + raw)
    return out


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> Packet:
    return (
        Ether(src=OUTER_SRC_MAC, dst=OUTER_DST_MAC)
        / IP(src=src, dst=dst)
        / UDP(sport=sport, dport=dport)
        / Raw(payload)
    )


def tzsp(inner: bytes | Packet) -> bytes:
    """TZSP version 1, "received" frame, Ethernet encapsulation, end tag, then the frame."""
    return b"\x01\x00\x00\x01\x01" + bytes(inner)


def tzsp_mirror(inner: Iterable[bytes | Packet]) -> list[Packet]:
    """A TZSP stream from 10.0.0.5 to the collector 10.0.0.6:37008 carrying ``inner``."""
    return [udp("10.0.0.5", "10.0.0.6", 40001, 37008, tzsp(f)) for f in inner]


def ipfix_with_field(element: int, value: bytes, seq: int = 1) -> bytes:
    """An IPFIX message: a template of one field of ``len(value)`` bytes and a record of it."""
    tmpl = struct.pack(">HH", 256, 1) + struct.pack(">HH", element, len(value))
    sets = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl
    sets += struct.pack(">HH", 256, 4 + len(value)) + value
    return struct.pack(">HHIII", 10, 16 + len(sets), T0, seq, 1) + sets
