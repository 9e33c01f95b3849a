"""Checksums and MAC bits of carried frames are facts counted in the evidence, never a reason to
drop a copy: structure decides validity."""

from __future__ import annotations

import struct

import pytest
from mwtest import PCAPS, scan

from detector.decode.frames import (
    CHECKSUM_RIGHT,
    CHECKSUM_WRONG,
    CHECKSUM_ZERO,
    carried_frame,
    ethernet_valid,
    ip_fills,
    ip_version_at,
    ones_complement_sum,
    parse_ethernet,
)
from detector.protocols.base import PacketContext
from detector.protocols.tzsp import Tzsp

MIRRORS = ("tzsp", "erspan-1", "erspan-2", "erspan-3", "gre-teb", "vxlan", "geneve")


def ipv4(src: bytes, dst: bytes, payload: bytes, checksum: int | None = None) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, 17, 0,
                                src, dst))  # fmt: skip
    value = (~ones_complement_sum(bytes(hdr)) & 0xFFFF) if checksum is None else checksum
    struct.pack_into("!H", hdr, 10, value)
    return bytes(hdr) + payload


def frame(src_mac: bytes, packet: bytes) -> bytes:
    return b"\x00\x11\x22\x33\x44\x55" + src_mac + b"\x08\x00" + packet


UDP = struct.pack("!HHHH", 5353, 53, 12, 0) + b"abcd"


def test_one_checksum_states_and_one_ip_test() -> None:
    a, b = bytes([192, 168, 1, 2]), bytes([8, 8, 8, 8])
    right, zero, wrong = ipv4(a, b, UDP), ipv4(a, b, UDP, 0), ipv4(a, b, UDP, 0x1234)
    states = [parse_ethernet(frame(b"\x02" * 6, p)).checksum for p in (right, zero, wrong)]
    assert states == [CHECKSUM_RIGHT, CHECKSUM_ZERO, CHECKSUM_WRONG]
    # Structure alone says an IPv4 packet starts here; strict adds the checksum.
    assert [ip_version_at(p) for p in (right, zero, wrong)] == [4, 4, 4]
    assert [ip_version_at(p, strict=True) for p in (right, zero, wrong)] == [4, 0, 0]
    assert ip_fills(right, 0) and not ip_fills(right + b"\0", 0) and not ip_fills(zero, 0)
    # A header that is not IP at all is refused whatever the mode.
    assert ip_version_at(b"\x45" + bytes(30)) == 0  # total length shorter than the header


def test_group_bit_and_checksums_do_not_reject_a_carried_frame() -> None:
    odd = frame(b"\xbb\xbb\xbb\xbb\xbb\xbc", ipv4(b"\x0a\0\0\1", b"\x0a\0\0\2", UDP, 0x1111))
    assert ethernet_valid(odd) and not ethernet_valid(odd, strict=True)
    inner = carried_frame("ethernet", odd)
    assert inner is not None and inner.group_source_mac and inner.checksum == CHECKSUM_WRONG
    assert inner.src == "10.0.0.1" and inner.dport == 53
    # A frame cut by a small snap length inside the IP header is still a frame.
    assert ethernet_valid(odd[:20]) and not ethernet_valid(odd[:14] + b"\x65" + odd[15:20])
    # Not a frame: unknown EtherType, 802.3 length past the end.
    assert carried_frame("ethernet", odd[:12] + b"\x12\x34" + odd[14:]) is None


def test_tzsp_anonymised_copy_is_decoded_and_parsed_once() -> None:
    odd = frame(b"\xbb\xbb\xbb\xbb\xbb\xbc", ipv4(b"\x0a\0\0\1", b"\x0a\0\0\2", UDP, 0))
    got = Tzsp().decode(b"\x01\x00\x00\x01\x01" + odd, PacketContext(), None)
    assert got is not None and got.carried[0].parsed is not None
    assert got.carried[0].parsed.checksum == CHECKSUM_ZERO


@pytest.mark.parametrize(
    ("name", "checks"),
    [
        ("checksum-zero-one-way.pcap", {"ipv4_checksum_right", "ipv4_checksum_zero"}),
        ("checksum-zero-all.pcap", {"ipv4_checksum_zero"}),
        ("anonymised-carried.pcap", {"ipv4_checksum_wrong", "group_source_mac"}),
    ],
)
def test_untidy_copies_of_every_mirror_format_stay_high(name: str, checks: set[str]) -> None:
    found = {f.protocol: f for f in scan(PCAPS / name).findings}
    assert set(MIRRORS) <= set(found)
    for proto in MIRRORS:
        f = found[proto]
        assert f.kind == "mirror" and f.severity == "high", (proto, f.severity, f.reasons)
        counted = {k.removeprefix("carried_") for k in f.evidence} & {
            "ipv4_checksum_right", "ipv4_checksum_zero", "ipv4_checksum_wrong", "group_source_mac"
        }  # fmt: skip
        assert counted == checks, proto
        assert f.evidence["validated_share"] == 1.0
        assert (
            sum(int(f.evidence[f"carried_{k}"]) for k in checks if "checksum" in k)
            == int(f.evidence["carried_packets"]) - int(f.evidence.get("carried_unparsed", 0))
            or "group_source_mac" in checks
        )
        assert "carried-headers-odd" in f.reason_codes
