"""sFlow versions 2 and 4: the bundled samples, datagrams built field by field from
sflow_version_4.txt (IPv4 summaries, user and URL data), and look-alikes."""

from __future__ import annotations

import random
import struct

import pytest
from mwtest import PCAPS, heads, scan
from scapy.all import IP, TCP, UDP, Ether, rdpcap

from detector.protocols.base import PacketContext
from detector.protocols.sflow import SflowDecoder
from detector.protocols.sflow_v2v4 import SflowV2V4Decoder

V24 = SflowV2V4Decoder()
CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40123, dport=31337)
FRAME = bytes(
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    / IP(src="192.168.1.20", dst="93.184.216.34")
    / TCP(sport=50000, dport=443, flags="A")
)


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def opaque(data: bytes) -> bytes:
    return u32(len(data)) + data + b"\0" * (-len(data) % 4)


def datagram(version: int, samples: list[bytes], agent: bytes = bytes([10, 0, 0, 1])) -> bytes:
    addr_type = 1 if len(agent) == 4 else 2
    return u32(version, addr_type) + agent + u32(7, 123_456, len(samples)) + b"".join(samples)


def flow_sample(data: bytes, extended: list[bytes]) -> bytes:
    return u32(1, 42, 3, 1024, 99_000, 0, 3, 5) + data + u32(len(extended)) + b"".join(extended)


HEADER = u32(1, 1, len(FRAME) + 4) + opaque(FRAME)
IPV4 = u32(2, 1400, 17) + bytes([10, 1, 1, 1, 10, 2, 2, 2]) + u32(5353, 53, 0, 0)
IPV6 = u32(3, 1400, 6) + bytes(range(16)) + bytes(range(16, 32)) + u32(1234, 80, 0x18, 0)
SWITCH = u32(1, 10, 0, 20, 0)
ROUTER = u32(2, 1, 0x0A000001, 24, 16)
GATEWAY_V2 = u32(3, 64500, 64500, 64501, 2, 64502, 15169)
GATEWAY_V4 = u32(3, 64500, 64500, 64501, 1, 2, 2, 64502, 15169, 1, 0xFBF40064, 100)
USER = u32(4) + opaque(b"alice") + opaque(b"bob")
URL = u32(5, 1) + opaque(b"http://example.com/")
COUNTERS_ETHERNET = u32(2, 1, 3, 30, 2) + bytes(88 + 52)
COUNTERS_VLAN = u32(2, 2, 0x01000014, 30, 7, 20) + bytes(24)


def decode(payload: bytes):
    found = V24.decode(payload, CTX, None)
    if found is not None:
        assert V24.prefilter(*heads([payload]))[0], "prefilter rejected what decode accepts"
    return found


@pytest.mark.parametrize("name", ["sflow-v2.pcap", "sflow-v4.pcap"])
def test_every_datagram_of_the_samples_decodes(name: str) -> None:
    versions = set()
    for p in rdpcap(str(PCAPS / name)):
        found = decode(bytes(p[UDP].payload))
        assert found is not None and found.protocol == "sflow"
        assert (
            found.facts["flow_samples"] + found.facts["counter_samples"] == found.facts["samples"]
        )
        versions.add(found.facts["version"])
    assert versions == {int(name[len("sflow-v")])}


def test_v4_ipv6_agent_every_extended_structure() -> None:
    sample = flow_sample(HEADER, [SWITCH, ROUTER, GATEWAY_V4, USER, URL])
    found = decode(datagram(4, [sample, COUNTERS_ETHERNET, COUNTERS_VLAN], bytes(range(16))))
    assert found is not None
    assert found.session == {"agent": "1:203:405:607:809:a0b:c0d:e0f"}
    assert found.facts["flow_samples"] == 1 and found.facts["counter_samples"] == 2
    assert found.facts["sampling_rate"] == 1024
    (carried,) = found.carried
    assert (carried.link, carried.data, carried.orig_len) == ("ethernet", FRAME, len(FRAME) + 4)
    (flow,) = found.records
    assert (flow.src, flow.dst, flow.sport, flow.dport, flow.proto) == (
        "192.168.1.20",
        "93.184.216.34",
        50000,
        443,
        6,
    )
    assert "sFlow version 4, agent IPv6" in found.header and "sub-agent" not in found.header


def test_v2_gateway_as_path_and_ip_summaries() -> None:
    samples = [flow_sample(IPV4, [GATEWAY_V2]), flow_sample(IPV6, [SWITCH])]
    found = decode(datagram(2, samples))
    assert found is not None and not found.carried
    assert [(f.src, f.dst, f.dport) for f in found.records] == [
        ("10.1.1.1", "10.2.2.2", 53),
        ("1:203:405:607:809:a0b:c0d:e0f", "1011:1213:1415:1617:1819:1a1b:1c1d:1e1f", 80),
    ]


def test_gateway_layouts_differ_between_v2_and_v4() -> None:
    assert decode(datagram(2, [flow_sample(HEADER, [GATEWAY_V2])])) is not None
    assert decode(datagram(4, [flow_sample(HEADER, [GATEWAY_V4])])) is not None
    assert decode(datagram(4, [flow_sample(HEADER, [GATEWAY_V2])])) is None
    assert decode(datagram(2, [flow_sample(HEADER, [GATEWAY_V4])])) is None


@pytest.mark.parametrize(
    "payload",
    [
        datagram(4, [flow_sample(HEADER, [SWITCH])]) + b"\0\0\0\0",  # bytes after the last sample
        datagram(4, [flow_sample(HEADER, [SWITCH])])[:-4],  # cut short
        datagram(4, [u32(3) + bytes(40)]),  # no sample type 3 before version 5
        datagram(4, [flow_sample(HEADER, [u32(9, 0)])]),  # unknown extended data
        datagram(4, [u32(2, 1, 3, 30, 8) + bytes(88)]),  # unknown counter block
        datagram(3, [flow_sample(HEADER, [])]),  # version 3
        datagram(4, []),  # no sample
        u32(4, 1) + bytes([10, 0, 0, 1]) + u32(7, 1, 2000) + bytes(64),  # too many samples
    ],
    ids=["trailing", "short", "type-3", "ext-9", "counter-8", "v3", "empty", "count"],
)
def test_lookalikes_are_not_sflow(payload: bytes) -> None:
    assert V24.decode(payload, CTX, None) is None


def test_versions_keep_to_their_decoders() -> None:
    v4 = datagram(4, [flow_sample(HEADER, [SWITCH])])
    assert SflowDecoder().decode(v4, CTX, None) is None
    v5 = (
        u32(5, 1)
        + bytes([10, 0, 0, 1])
        + u32(0, 7, 1, 1)
        + u32(2, 12 + 8 + 88)
        + u32(1, 3, 1)
        + u32(1, 88)
        + bytes(88)
    )
    assert SflowDecoder().decode(v5, CTX, None) is not None
    assert V24.decode(v5, CTX, None) is None


def test_truncations_and_noise_never_raise() -> None:
    rng = random.Random(4)
    whole = datagram(4, [flow_sample(HEADER, [SWITCH, ROUTER, GATEWAY_V4, USER, URL])])
    for cut in range(len(whole)):
        V24.decode(whole[:cut], CTX, None)
    for _ in range(300):
        noisy = bytearray(whole)
        for _ in range(3):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        V24.decode(bytes(noisy), CTX, None)


def test_samples_are_sflow_findings() -> None:
    for name in ("sflow-v2.pcap", "sflow-v4.pcap"):
        (f,) = scan(PCAPS / name).findings
        assert (f.protocol, f.kind, f.severity) == ("sflow", "flow-export", "medium")
        assert f.watched and f.collector.port == 6343
