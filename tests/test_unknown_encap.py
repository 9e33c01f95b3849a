"""Unknown encapsulation: an IP packet or Ethernet frame at one fixed offset behind a header
mirrorwatch does not know."""

from __future__ import annotations

import random

from mwtest import PCAPS, expected_samples, scan
from mwtest import heads as _heads
from scapy.all import IP, TCP, UDP, Ether, Raw, raw, rdpcap

from detector.capture.reader import InputStats, open_stream, read_batches
from detector.engine import Engine
from detector.policy.verdict import PolicyContext, judge
from detector.protocols.base import PacketContext
from detector.protocols.unknown_encap import UnknownEncapsulation, find_carried

DEC = UnknownEncapsulation()


def test_made_up_shim_on_a_random_port() -> None:
    (f,) = scan(PCAPS / "unknown-shim.pcap").findings
    assert f.protocol == "unknown-encapsulation" and f.kind == "mirror"
    assert f.session == {"offset": "7", "inner": "ip"}
    assert f.collector.port == 47777
    assert "ca fe 01" in f.reasons[f.reason_codes.index("unknown-header-bytes")]
    assert f.watched and f.severity in ("high", "critical")


def test_broadcom_shim_found_without_its_decoder() -> None:
    # With no format decoder at all (PCLI would also accept a 4-byte id before Ethernet), the
    # heuristic alone must find the shim and what it carries.
    engine = Engine()
    engine.udp_decoders = (DEC,)
    path = str(PCAPS / "bcm-li.pcap")
    for batch in read_batches(open_stream(path), InputStats(path)):
        engine.process(batch)
    findings = [f for f, _ in judge(engine.finish(), PolicyContext())]
    (f,) = [f for f in findings if f.protocol == "unknown-encapsulation"]
    assert f.session == {"offset": "4", "inner": "ethernet"}
    assert f.watched


def test_known_formats_and_ordinary_traffic_are_not_unknown() -> None:
    for row in expected_samples():
        if row["file"] == "unknown-shim.pcap":
            continue
        report = scan(PCAPS / row["file"])
        assert all(f.protocol != "unknown-encapsulation" for f in report.findings), row["file"]


def test_offsets_and_links() -> None:
    inner = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"x" * 30))
    for k in (0, 3, 12, 40):
        assert find_carried(bytes(range(k)) + inner) == (k, "ip", k)
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(inner))
    assert find_carried(b"\x99" * 4 + frame) == (4, "ethernet", 18)
    # A wrong length or checksum is not a carried packet.
    assert find_carried(b"\x00" * 5 + inner + b"\x00") is None
    broken = bytearray(inner)
    broken[10] ^= 0xFF
    assert find_carried(bytes(broken)) is None


def test_prefilter_never_misses_what_decode_accepts() -> None:
    rng = random.Random(7)
    base = raw(IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=1234, dport=80) / Raw(b"a" * 50))
    payloads = [bytes(rng.randrange(256) for _ in range(k)) + base for k in range(0, 45)]
    payloads += [
        bytes(rng.randrange(256) for _ in range(rng.randrange(20, 300))) for _ in range(2000)
    ]
    head, length = _heads(payloads)
    mask = DEC.prefilter(head, length)
    ctx = PacketContext()
    for i, p in enumerate(payloads):
        if DEC.decode(p, ctx, None) is not None:
            assert mask[i], i
    assert mask[:45].all()
    assert mask[45:].sum() <= 2  # random bytes almost never pass


def test_dns_in_samples_is_not_a_candidate() -> None:
    dns = [raw(p[UDP].payload) for p in rdpcap(str(PCAPS / "plain-traffic.pcap")) if UDP in p]
    assert dns
    head, length = _heads(dns)
    assert not DEC.prefilter(head, length).any()
