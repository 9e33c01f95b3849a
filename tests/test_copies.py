"""Copies matched to their originals, and plain copies (iptables TEE / nft dup)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import PCAPS, fuzz, scan
from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw, raw

from detector.capture.reader import PacketBatch
from detector.decode.frames import parse_ip
from detector.decode.headers import decode_headers, gather
from detector.flows import fingerprint
from detector.flows.fingerprint import (
    L4_BYTES,
    fingerprint_np,
    rank_np,
    sampled_fingerprint,
)


def _batch(frames: list[bytes]) -> PacketBatch:
    return PacketBatch.of_frames(frames, ts=np.zeros(len(frames)))


def test_vectorised_and_per_packet_fingerprints_agree() -> None:
    tcp4 = [
        IP(src="10.1.2.3", dst="10.4.5.6", id=i, ttl=64) / TCP(sport=1, dport=2) / Raw(b"q" * 40)
        for i in range(64)
    ]
    udp4 = [
        IP(src="10.1.2.3", dst="10.4.5.6", id=i) / UDP(sport=53, dport=5353) / Raw(b"r" * 3)
        for i in range(64)
    ]
    udp6 = [
        IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=443, dport=i) / Raw(b"s" * 100)
        for i in range(64)
    ]
    ips = tcp4 + udp4 + udp6
    frames = [raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p) for p in ips]
    b = _batch(frames)
    h = decode_headers(b)
    rows = np.arange(len(frames))
    l4 = gather(b.data, b.offsets + h.l4, L4_BYTES).copy()
    l4len = np.minimum(b.caplen, h.l3 + h.iplen) - h.l4
    l4[np.arange(L4_BYTES)[None, :] >= l4len[:, None]] = 0
    ranks = rank_np(h.src[rows], h.dst[rows], h.ipid[rows], l4)
    vec = fingerprint_np(h.src[rows], h.dst[rows], h.proto[rows], h.ipid[rows], l4).tolist()
    for keep_below in (16, 4, 1):
        one = [sampled_fingerprint(raw(p), parse_ip(raw(p)), keep_below) for p in ips]  # type: ignore[arg-type]
        # The per-packet side returns a fingerprint exactly for the packets the sample keeps.
        picked = (ranks < keep_below).tolist()
        assert [v if k else None for v, k in zip(vec, picked, strict=True)] == one
        assert any(picked)


def _sample_gathered(
    b: PacketBatch, h: object, rows: np.ndarray, keep_below: int
) -> tuple[list[int], list[int], list[int]]:
    """The sample as the engine picked it before: every row's fields gathered, then ranked,
    then the picked rows' L4 bytes blanked past the packet's end and hashed."""
    l4len = np.minimum(b.caplen[rows], h.l3[rows] + h.iplen[rows]) - h.l4[rows]  # type: ignore[attr-defined]
    r = rows[~h.fragment[rows] & (h.l4[rows] >= 0) & (l4len >= 8)]  # type: ignore[attr-defined]
    l4len = np.minimum(b.caplen[r], h.l3[r] + h.iplen[r]) - h.l4[r]  # type: ignore[attr-defined]
    ranks = rank_np(h.src[r], h.dst[r], h.ipid[r], h.l4h[r, :8])  # type: ignore[attr-defined]
    pick = ranks < keep_below
    r, ranks, l4len = r[pick], ranks[pick], l4len[pick]
    l4 = h.l4h[r]  # type: ignore[attr-defined]
    l4[np.arange(L4_BYTES)[None, :] >= l4len[:, None]] = 0
    fps = fingerprint_np(h.src[r], h.dst[r], h.proto[r], h.ipid[r], l4)  # type: ignore[attr-defined]
    return r.tolist(), ranks.tolist(), fps.tolist()


@pytest.mark.parametrize("form", ["numpy", "compiled"])
def test_sample_over_batch_columns_matches_the_gathered_sample(form: str) -> None:
    if form == "compiled" and fingerprint.COPIES is None:
        pytest.skip("the compiled copy loops are not built")
    sample_natives = getattr(fingerprint, f"sample_natives_{form}")
    # Short and truncated L4 headers (the bytes after them belong to the next frame),
    # fragments, IPv6, ICMP and non-IP frames, between whole TCP and UDP packets.
    from scapy.all import ARP, ICMP

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = []
    for i in range(48):
        ip4 = IP(src=f"10.0.{i}.1", dst="10.9.9.9", id=7 * i)
        frames += [
            raw(eth / ip4 / TCP(sport=i, dport=443, seq=i) / Raw(b"t" * i)),
            raw(eth / ip4 / UDP(sport=53, dport=i) / Raw(b"u" * (i % 20))),
            raw(eth / IPv6(src=f"2001:db8::{i + 1:x}", dst="2001:db8::1") / UDP(dport=i)),
            raw(eth / ip4 / ICMP(id=i) / Raw(b"i" * (i % 9))),
            raw(eth / IP(src="10.0.0.1", dst="10.0.0.2", id=i, flags="MF") / UDP() / Raw(b"f")),
            raw(eth / ip4 / TCP(sport=i, dport=80) / Raw(b"x" * 40))[: 14 + 20 + 8 + i % 16],
            raw(eth / ARP(psrc="10.0.0.1")),
        ]
    b = _batch(frames)
    h = decode_headers(b)
    ip_rows = np.nonzero(h.ipver > 0)[0]
    for rows in (ip_rows, ip_rows[::3], ip_rows[:0]):
        for keep_below in (16, 4, 1):
            r, ranks, fps, _, _ = sample_natives(b, h, rows, keep_below)
            assert (r.tolist(), ranks.tolist(), fps.tolist()) == _sample_gathered(
                b, h, rows, keep_below
            )
            if keep_below == 16 and len(rows):
                assert len(r) > len(rows) // 2


def test_fingerprint_ignores_what_routers_change() -> None:
    # Find a packet in the sample, then check TTL and checksum changes keep its fingerprint and
    # a payload change loses it.
    for ident in range(2000):
        pkt = IP(src="10.1.2.3", dst="10.4.5.6", id=ident, ttl=64) / TCP(sport=1, dport=2)
        pkt = pkt / Raw(b"q" * 40)
        fp = sampled_fingerprint(raw(pkt), parse_ip(raw(pkt)), 1)  # type: ignore[arg-type]
        if fp is not None:
            break
    else:
        raise AssertionError("no packet of 2000 in the 1-in-16 sample")
    routed = pkt.copy()
    routed.ttl = 12
    routed.chksum = None
    assert sampled_fingerprint(raw(routed), parse_ip(raw(routed)), 1) == fp  # type: ignore[arg-type]
    other = pkt.copy()
    other[Raw].load = b"Q" * 40
    assert sampled_fingerprint(raw(other), parse_ip(raw(other)), 16) != fp  # type: ignore[arg-type]


def test_mirror_copies_matched_to_originals() -> None:
    (f,) = scan(PCAPS / "mirror-with-natives.pcap").findings
    assert f.protocol == "erspan-2"
    checked, matched = f.evidence["copies_checked"], f.evidence["copies_matched"]
    assert checked >= 3 and matched == checked
    assert 0.2 <= float(f.evidence["copy_delay_ms"]) <= 2.0
    assert "copies-matched" in f.reason_codes


def test_without_originals_nothing_matches() -> None:
    (f,) = scan(PCAPS / "erspan-2.pcap").findings
    assert f.evidence.get("copies_matched", 0) == 0
    assert "copies-matched" not in f.reason_codes


def test_plain_copies_to_another_mac() -> None:
    findings = scan(PCAPS / "tee-copies.pcap").findings
    (f,) = [f for f in findings if f.protocol == "tee-copy"]
    assert f.kind == "mirror" and f.severity in ("high", "critical")
    assert f.collector.mac == "52:54:00:9c:00:0a"
    assert len(f.watched) >= 3
    assert "tee-sightings" in f.reason_codes


def test_ordinary_traffic_has_no_plain_copies() -> None:
    for name in ("plain-traffic.pcap", "tzsp.pcap", "vxlan-overlay.pcap"):
        assert not [f for f in scan(PCAPS / name).findings if f.protocol == "tee-copy"], name


def test_packets_routed_past_a_two_sided_span_are_not_a_high_copy(tmp_path: Path) -> None:
    # A span of both router interfaces sees each routed packet twice: LAN side to the router,
    # WAN side to the gateway (and replies the other way).  That is no proof of a copy.
    from scapy.all import wrpcap

    client, router, gateway = "02:00:00:00:00:0c", "02:00:00:00:00:01", "02:00:00:00:00:99"
    frames = []
    t = 1_768_471_200.0
    for i in range(40):
        out = (
            IP(src="192.168.1.10", dst="93.184.216.34", id=i, ttl=64)
            / TCP(sport=40000, dport=443, seq=i)
            / Raw(b"a" * 60)
        )
        back = (
            IP(src="93.184.216.34", dst="192.168.1.10", id=1000 + i, ttl=50)
            / TCP(sport=443, dport=40000, seq=i)
            / Raw(b"b" * 60)
        )
        for pkt, first, second in ((out, (client, router), (router, gateway)),
                                   (back, (gateway, router), (router, client))):  # fmt: skip
            routed = pkt.copy()
            routed.ttl -= 1
            routed.chksum = None
            a = Ether(src=first[0], dst=first[1]) / pkt
            b = Ether(src=second[0], dst=second[1]) / routed
            a.time, b.time = t, t + 0.0002
            frames += [a, b]
            t += 0.01
    path = tmp_path / "routed.pcap"
    wrpcap(str(path), frames)
    findings = [f for f in scan(path).findings if f.protocol == "tee-copy"]
    assert findings, "the duplicates are still reported"
    assert all(f.severity == "low" and not f.evidence["mirror_proven"] for f in findings)
    assert all("tee-one-way" in f.reason_codes for f in findings)


def _tee_conversation(tmp_path: Path, both_ways: bool) -> Path:
    """One client talking to one server; the router clones what it forwards (both directions,
    or only client to server) to a collector's MAC, as iptables TEE does."""
    from scapy.all import wrpcap

    client, router, server_gw, collector = (
        "02:00:00:00:00:0c", "02:00:00:00:00:01", "02:00:00:00:00:99", "02:00:00:00:00:cc",
    )  # fmt: skip
    frames = []
    t = 1_768_471_200.0
    for i in range(30):
        out = IP(src="192.168.1.10", dst="93.184.216.34", id=i) / TCP(sport=40000, dport=443)
        back = IP(src="93.184.216.34", dst="192.168.1.10", id=900 + i) / TCP(sport=443, dport=40000)
        legs = [(out / Raw(b"q" * 80), (client, router))]
        if both_ways:
            legs.append((back / Raw(b"r" * 200), (server_gw, router)))
        for pkt, (src, dst) in legs:
            original = Ether(src=src, dst=dst) / pkt
            copy = Ether(src=router, dst=collector) / pkt
            original.time, copy.time = t, t + 0.0001
            frames += [original, copy]
            t += 0.01
    path = tmp_path / ("tee-both.pcap" if both_ways else "tee-one-way.pcap")
    wrpcap(str(path), frames)
    return path


def test_tee_copy_of_one_conversation_both_ways_is_high(tmp_path: Path) -> None:
    # A single watched subscriber: two hosts, one conversation, but both of its directions
    # cloned to one collector and every copy seen beside its original.
    (f,) = [f for f in scan(_tee_conversation(tmp_path, True)).findings if f.protocol == "tee-copy"]
    assert f.evidence["mirror_proven"] is True and f.severity == "high", f.reasons
    # Only one direction (as a redirect to a cache shows): no proof of a copy.
    one_way = [
        f for f in scan(_tee_conversation(tmp_path, False)).findings if f.protocol == "tee-copy"
    ]
    assert all(f.severity == "low" for f in one_way)


def _outer_link_natives_and_mirror(link: str) -> list:
    """Native UDP and TCP packets over ``link``, and a TZSP mirror (over the same link) carrying
    a plain-Ethernet copy of each, 0.5 ms after its original."""
    from scapy.all import PPP, Dot1AD, Dot1Q, IPv6ExtHdrDestOpt, PPPoE
    from scapy.contrib.mpls import MPLS

    def l2(payload_type: int) -> object:
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if link == "mpls":
            return eth / MPLS(label=16020, s=0) / MPLS(label=24001, s=1)
        if link == "pppoe":
            return eth / PPPoE(sessionid=0x1234) / PPP(proto=0x0021)
        if link == "qinq":
            return eth / Dot1AD(vlan=300) / Dot1Q(vlan=42, type=payload_type)
        return eth

    frames = []
    t = 1_768_471_200.0
    for i in range(40):
        if link == "ipv6-ext":
            pkt = (
                IPv6(src="2001:db8::10", dst="2001:db8:99::1")
                / IPv6ExtHdrDestOpt()
                / UDP(sport=5000 + i, dport=443)
                / Raw(bytes([i]) * 60)
            )
            mirror_ip = IPv6(src="2001:db8::5", dst="2001:db8::6") / IPv6ExtHdrDestOpt()
        else:
            l4 = TCP(sport=40000, dport=443, seq=1000 * i) if i % 2 else UDP(sport=40001 + i)
            pkt = IP(src="192.168.1.10", dst="93.184.216.34", id=i) / l4 / Raw(bytes([i]) * 60)
            mirror_ip = IP(src="10.0.0.5", dst="10.0.0.6")
        ethertype = 0x86DD if link == "ipv6-ext" else 0x0800
        native = l2(ethertype) / pkt
        copy = Ether(src="02:00:00:00:00:0c", dst="02:00:00:00:00:01") / pkt
        mirror = (
            l2(ethertype) / mirror_ip / UDP(sport=40123, dport=37008)
            / Raw(b"\x01\x00\x00\x01\x01" + raw(copy))
        )  # fmt: skip
        native.time, mirror.time = t, t + 0.0005
        frames += [native, mirror]
        t += 0.01
    return frames


def test_copies_matched_over_mpls_pppoe_qinq_and_ipv6_extension_links(tmp_path: Path) -> None:
    from scapy.all import wrpcap

    for link in ("mpls", "pppoe", "qinq", "ipv6-ext"):
        path = tmp_path / f"{link}.pcap"
        wrpcap(str(path), _outer_link_natives_and_mirror(link))
        (f,) = [f for f in scan(path).findings if f.protocol == "tzsp"]
        checked, matched = f.evidence["copies_checked"], f.evidence["copies_matched"]
        assert checked >= 3 and matched == checked, (link, checked, matched)


@fuzz(40)
@given(st.lists(st.lists(st.integers(0, 300), max_size=60), max_size=12), st.integers(1, 50))
def test_native_index_in_two_parts_gives_the_ids_of_one(
    batches: list[list[int]], recent_keys: int
) -> None:
    # Batches of keys (small, so that they repeat across batches) through the two-part index,
    # merged every few keys, and through one KeyIndex: the same ids, the same keys added.
    from detector.flows import copies
    from detector.flows.table import KeyIndex

    one, two = KeyIndex(), copies._NativeIndex()
    by_id = np.zeros(0, np.uint64)
    saved = copies.RECENT_KEYS
    copies.RECENT_KEYS = recent_keys
    try:
        for batch in batches:
            keys = np.unique(np.array(batch, np.uint64) * np.uint64(0x9E3779B97F4A7C15))
            want, want_added = one.lookup_or_add(keys)
            got, got_added = two.lookup_or_add(keys)
            assert got.tolist() == want.tolist() and got_added.tolist() == want_added.tolist()
            by_id = np.concatenate([by_id, keys[got_added][np.argsort(got[got_added])]])
            two.settle(by_id)
            probe = np.arange(0, 320, 7, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            assert two.lookup(probe).tolist() == one.lookup(probe).tolist()
            assert two.count == one.count
    finally:
        copies.RECENT_KEYS = saved
