"""IPv6 datagrams cut into fragments are put back together before the formats look at them."""

from __future__ import annotations

from pathlib import Path

from mwtest import scan


def _tzsp_over_fragmented_ipv6(path: Path) -> None:
    from scapy.all import IP, UDP, Ether, IPv6, IPv6ExtHdrFragment, Raw, fragment6, raw, wrpcap

    frames = []
    t = 1_768_471_200.0
    for i in range(30):
        inner = (
            Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
            / IP(src="192.168.1.10", dst="93.184.216.34", id=i)
            / UDP(sport=40000 + i, dport=443)
            / Raw(bytes([i]) * 1400)
        )
        outer = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IPv6(src="2001:db8::5", dst="2001:db8::6")
            / IPv6ExtHdrFragment(id=1000 + i)
            / UDP(sport=50000, dport=37008)
            / Raw(b"\x01\x00\x00\x01\x01" + raw(inner))  # TZSP: received, Ethernet, end tag
        )
        for part in fragment6(outer, 1280):
            part.time = t
            frames.append(part)
        t += 0.01
    wrpcap(str(path), frames)


def test_fragmented_ipv6_tzsp_is_reassembled(tmp_path: Path) -> None:
    path = tmp_path / "tzsp-ipv6-fragments.pcap"
    _tzsp_over_fragmented_ipv6(path)
    (f,) = [f for f in scan(path).findings if f.protocol == "tzsp"]
    assert f.evidence.get("fragmented_datagrams_frames", 0) >= 50
