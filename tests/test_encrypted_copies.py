"""Encrypted copies: streams that cannot be read but whose byte rate and packet sizes follow the
traffic seen in clear; honest encryption (a VPN of one's own traffic, a download, a NAT seen on
both sides) must not look like one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from mwtest import PCAPS, scan

from detector.flows.encrypted import (
    COPIES,
    MAX_CANDIDATES,
    Candidate,
    EncryptedCopies,
    _busiest_hosts,
    carrier_of,
)


def _copy_findings(name: str):
    return [f for f in scan(PCAPS / name).findings if f.protocol == "encrypted-copy"]


def test_wireguard_copy_is_high_with_overhead_and_hosts() -> None:
    (f,) = _copy_findings("encrypted-copy-wireguard.pcap")
    assert (f.kind, f.severity) == ("mirror", "high")
    assert (f.exporter.ip, f.collector.ip, f.collector.port) == ("10.1.0.1", "203.0.113.50", 51820)
    ev = f.evidence
    assert ev["carrier"] == "wireguard" and f.session["carrier"] == "wireguard"
    assert ev["correlation"] > 0.95 and 1.0 < ev["bytes_ratio"] < 1.6
    # IPv4 20 + UDP 8 + WireGuard header 16 + tag 16 = 60, plus padding to 16.
    assert ev["overhead_bytes"] == 60 and ev["matched_share"] >= 0.5
    assert f.watched and all(w.ip not in ("10.1.0.1", "203.0.113.50") for w in f.watched)
    assert any(w.ip and w.ip.startswith("192.168.10.") for w in f.watched)
    assert "encrypted-blind-spots" in f.reason_codes


def test_tls_copy_is_high() -> None:
    (f,) = _copy_findings("encrypted-copy-tls.pcap")
    assert f.severity == "high" and f.evidence["carrier"] == "tls" and f.transport == "tcp"
    assert f.evidence["correlation"] > 0.9 and "matched_share" not in f.evidence


def test_honest_encryption_is_not_a_copy() -> None:
    for name in ("vpn-own-traffic.pcap", "tls-download.pcap", "nat-both-sides.pcap"):
        assert _copy_findings(name) == [], name
        high = [f for f in scan(PCAPS / name).findings if f.severity in ("high", "critical")]
        assert high == [], name


def test_two_way_tunnel_tracking_clear_traffic_is_not_high() -> None:
    """A VPN gateway whose span sees both its clear side and its tunnel: the tunnel follows the
    clear traffic as a copy would, but traffic comes back through it as much as goes out."""
    (f,) = _copy_findings("vpn-gateway-both-sides.pcap")
    assert f.evidence["correlation"] > 0.9
    assert f.evidence["bytes_back_share"] >= 0.25 and f.severity == "medium"
    assert "two-way-bytes" in f.reason_codes
    for name in ("encrypted-copy-wireguard.pcap", "encrypted-copy-tls.pcap"):
        (copy,) = _copy_findings(name)
        assert copy.evidence["bytes_back_share"] < 0.25, name


def test_carrier_names() -> None:
    assert carrier_of(6, 40000, 22, b"", None) == "ssh"
    assert carrier_of(6, 40000, 8000, b"SSH-2.0-", None) == "ssh"
    assert carrier_of(6, 40000, 9000, b"\x17\x03\x03\x01\x00", None) == "tls"
    assert carrier_of(6, 40000, 443, b"\x00\x11", None) == "tls"
    assert carrier_of(17, 40000, 9000, b"\x17\xfe\xfd\x00", None) == "dtls"
    assert carrier_of(17, 40000, 9000, b"\x04\x00\x00\x00\x01\x02", None) == "wireguard"
    assert carrier_of(17, 40000, 1194, b"\x30", None) == "openvpn"
    assert carrier_of(17, 40000, 443, b"\xc3\x00", None) == "quic"
    assert carrier_of(50, 0, 0, b"", None) == "esp"
    assert carrier_of(17, 4500, 4500, b"", "nat-t") == "nat-t"


def _cand(key: int, t: float) -> Candidate:
    return Candidate(
        key=key, src="10.0.0.1", dst=f"10.9.{key >> 8 & 255}.{key & 255}", sport=1, dport=2,
        proto=17, carrier="udp", src_h=1, dst_h=key + 100, flow_key=key, direction=0, flow_bytes=0,
        first_seen=t, last_seen=t,
        first_bin=int(t * 10) + 1,
    )  # fmt: skip


def test_memory_is_bounded_and_late_packets_are_dropped() -> None:
    ec = EncryptedCopies()
    rng = np.random.default_rng(7)
    for step in range(40):
        t0 = step * 0.5
        n = 2000
        ts = np.sort(t0 + rng.random(n) * 0.5)
        keys = rng.integers(1, 5000, n).astype(np.uint64)
        admit = [_cand(int(k), t0) for k in np.unique(keys)[:10]]
        ec.add(ts, rng.integers(40, 1500, n), keys, keys % np.uint64(97), keys + np.uint64(100),
               admit, [])  # fmt: skip
        ec.settle()
        # A straggler from long ago changes nothing and raises nothing.
        ec.add(np.array([0.01]), np.array([100]), keys[:1], keys[:1], keys[:1], [], [])
        ec.settle()
        assert len(ec.candidates) <= MAX_CANDIDATES
        assert len(ec.open_native) <= 16
        assert len(ec.open_own) <= 16 and len(ec.open_excl) <= 16
    assert len(ec.ring_ts) <= 8192
    assert ec.verdicts() is not None


def test_busiest_hosts_are_ranked_by_bytes_whatever_their_hashes() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(1 << 40, 1 << 62, 40, dtype=np.uint64)
    # Hashes that differ only in their lowest bits, and hashes far apart.
    pool = np.concatenate([base, base + np.uint64(1), base ^ np.uint64(6)])
    # Sizes of every value, and one size only (weights that tie: equal ones in hash order).
    for rows, sizes in ((5, 1500), (300, 1500), (8192, 1500), (300, 41), (8192, 41)):
        keys = SimpleNamespace(src_host=rng.choice(pool, rows), dst_host=rng.choice(pool, rows))
        size = rng.integers(40, sizes, rows)
        hosts = np.concatenate([keys.src_host, keys.dst_host])
        uh, first, inv = np.unique(hosts, return_index=True, return_inverse=True)
        weight = np.bincount(inv, weights=np.concatenate([size, size]))
        # Equal bytes: the host seen first first.
        top = np.lexsort((first, -weight))[:32]
        want = [(int(uh[i]), int(first[i]), weight[i]) for i in top]
        distinct = len(uh)
        got = _busiest_hosts(keys, size, 32, compiled=False)  # type: ignore[arg-type]
        assert got == (want, distinct)
        if COPIES is not None:
            # The table sized for none, for as many, or for far more hosts: the same hosts.
            for expect in (0, distinct, 50 * distinct):
                got = _busiest_hosts(keys, size, 32, compiled=True, expect=expect)  # type: ignore[arg-type]
                assert got == (want, distinct)


def test_busiest_hosts_bytes_as_ranked_are_those_counted_over_the_rows() -> None:
    # The bytes _busiest_hosts ranks the hosts by are what the buckets take for them, unless a
    # packet goes from a host to itself (one packet for that host): then they are counted again.
    rng = np.random.default_rng(5)
    pool = rng.integers(1 << 40, 1 << 62, 60, dtype=np.uint64)
    for self_rows in (0, 7):
        src, dst = rng.choice(pool, 3000), rng.choice(pool, 3000)
        apart = src != dst
        src, dst = src[apart], dst[apart]
        dst[:self_rows] = src[:self_rows]
        size = rng.integers(40, 1500, len(src))
        keys = SimpleNamespace(src_host=src, dst_host=dst)
        busiest = [
            (host, (4, 0, 0, 0, host & 0xFFFFFFFF), b)
            for host, _, b in _busiest_hosts(keys, size, 32)[0]  # type: ignore[arg-type]
        ]
        ranked, counted = EncryptedCopies(), EncryptedCopies()
        ranked._add_busiest(busiest, size, src, dst, True)
        counted._add_busiest(busiest, size, src, dst, False)
        if self_rows:
            assert ranked.bucket_hosts != counted.bucket_hosts
        else:
            assert ranked.bucket_hosts == counted.bucket_hosts
        assert sum(len(b) for b in counted.bucket_hosts) == 32
        # Every packet of the batch too late: the hosts ranked over it take no bytes.
        late = EncryptedCopies()
        late._add_busiest(busiest, size[:0], src[:0], dst[:0], False)
        assert {b for bucket in late.bucket_hosts for b in bucket.values()} == {0.0}
