"""Copies matched to their originals, and plain copies (iptables TEE / nft dup)."""

from __future__ import annotations

import numpy as np
from mwtest import PCAPS, scan
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, raw

from detector.capture.reader import PAD, PacketBatch
from detector.decode.frames import parse_ip
from detector.decode.headers import decode_headers, gather
from detector.flows.fingerprint import L4_BYTES, fingerprint_np, fingerprint_packet


def _batch(frames: list[bytes]) -> PacketBatch:
    sizes = [len(f) for f in frames]
    data = np.frombuffer(b"".join(frames) + bytes(PAD), dtype=np.uint8)
    return PacketBatch(
        data=data,
        offsets=np.cumsum([0, *sizes[:-1]]).astype(np.int64),
        caplen=np.array(sizes, dtype=np.int64),
        wirelen=np.array(sizes, dtype=np.int64),
        ts=np.zeros(len(frames)),
        linktype=np.ones(len(frames), dtype=np.int32),
    )


def test_vectorised_and_per_packet_fingerprints_agree() -> None:
    ips = [
        IP(src="10.1.2.3", dst="10.4.5.6", id=77, ttl=64)
        / TCP(sport=1, dport=2, seq=9)
        / Raw(b"q" * 40),
        IP(src="10.1.2.3", dst="10.4.5.6", id=78) / UDP(sport=53, dport=5353) / Raw(b"r" * 3),
        IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=443, dport=50000) / Raw(b"s" * 100),
    ]
    frames = [raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p) for p in ips]
    b = _batch(frames)
    h = decode_headers(b)
    rows = np.arange(len(frames))
    l4 = gather(b.data, b.offsets + h.l4, L4_BYTES).copy()
    l4len = np.minimum(b.caplen, h.l3 + h.iplen) - h.l4
    l4[np.arange(L4_BYTES)[None, :] >= l4len[:, None]] = 0
    vec = fingerprint_np(h.src[rows], h.dst[rows], h.proto[rows], h.ipid[rows], l4).tolist()
    one = [fingerprint_packet(raw(p), parse_ip(raw(p))) for p in ips]  # type: ignore[arg-type]
    assert vec == one
    # What a router changes (TTL, checksum, L2) does not change the fingerprint; the payload does.
    routed = ips[0].copy()
    routed.ttl = 12
    routed.chksum = None
    assert fingerprint_packet(raw(routed), parse_ip(raw(routed))) == one[0]  # type: ignore[arg-type]
    other = ips[0].copy()
    other[Raw].load = b"Q" * 40
    assert fingerprint_packet(raw(other), parse_ip(raw(other))) != one[0]  # type: ignore[arg-type]


def test_mirror_copies_matched_to_originals() -> None:
    (f,) = scan(PCAPS / "mirror-with-natives.pcap").findings
    assert f.protocol == "erspan-2"
    checked, matched = f.evidence["copies_checked"], f.evidence["copies_matched"]
    assert checked >= 3 and matched == checked
    assert 0.2 <= float(f.evidence["copy_delay_ms"]) <= 2.0
    assert any("proven copies" in r for r in f.reasons)


def test_without_originals_nothing_matches() -> None:
    (f,) = scan(PCAPS / "erspan-2.pcap").findings
    assert f.evidence.get("copies_matched", 0) == 0
    assert not any("proven copies" in r for r in f.reasons)


def test_plain_copies_to_another_mac() -> None:
    findings = scan(PCAPS / "tee-copies.pcap").findings
    (f,) = [f for f in findings if f.protocol == "tee-copy"]
    assert f.kind == "mirror" and f.severity in ("high", "critical")
    assert f.collector.mac == "52:54:00:9c:00:0a"
    assert len(f.watched) >= 3
    assert any("TEE" in r for r in f.reasons)


def test_ordinary_traffic_has_no_plain_copies() -> None:
    for name in ("plain-traffic.pcap", "tzsp.pcap", "vxlan-overlay.pcap"):
        assert not [f for f in scan(PCAPS / name).findings if f.protocol == "tee-copy"], name
