"""Link types a scan does not decode: their packets are counted and each type is named once."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from craft import T0, pcap, udp
from mwtest import scan

from detector.capture.reader import _link_types

USER0 = 147  # DLT_USER0: nothing decodes it


def _block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _two_interfaces(frames: list[tuple[int, bytes]]) -> bytes:
    """A pcapng section with an Ethernet interface (0) and a DLT_USER0 one (1)."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += _block(1, struct.pack("<HHI", 1, 0, 262144))
    out += _block(1, struct.pack("<HHI", USER0, 0, 262144))
    for i, (iface, raw) in enumerate(frames):
        t = (T0 + i) * 1_000_000
        out += _block(
            6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(raw), len(raw)) + raw
        )
    return out


def test_an_undecoded_link_type_among_decoded_ones_is_named_once(tmp_path: Path) -> None:
    eth = bytes(udp("192.0.2.1", "192.0.2.2", 40000, 53, b"q" * 20))
    frames = [(0, eth), (1, b"\x01" * 40), (0, eth), (1, b"\x02" * 60), (1, b"\x03" * 30)]
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(_two_interfaces(frames))
    [summary] = scan(path).inputs
    assert summary.packets == 5
    named = [e for e in summary.errors if "link type" in e]
    assert named == [f"link type {USER0} is not supported: its packets are counted but not decoded"]


def test_a_capture_of_one_undecoded_link_type_says_so_once(tmp_path: Path) -> None:
    raw = pcap([b"\x05" * 50] * 3)
    path = tmp_path / "user0.pcap"
    path.write_bytes(raw[:20] + struct.pack("<I", USER0) + raw[24:])
    [summary] = scan(path).inputs
    assert summary.packets == 3
    assert [e for e in summary.errors if "link type" in e] == [
        f"link type {USER0} is not supported: its packets are counted but not decoded"
    ]


def test_link_types_of_a_column() -> None:
    assert _link_types(np.zeros(0, dtype=np.int32)) == set()
    assert _link_types(np.full(5, 1, dtype=np.int32)) == {1}
    assert _link_types(np.array([1, 1, USER0, 1, 113], dtype=np.int32)) == {1, 113, USER0}
