"""NetFlow v8 aggregation exports: every scheme of the bundled sample, a full-flow record built
by hand, and look-alikes that are not v8."""

from __future__ import annotations

import random
import struct

import pytest
from mwtest import PCAPS, heads, scan
from scapy.all import UDP, rdpcap

from detector.protocols.base import PacketContext
from detector.protocols.netflow import NetflowDecoder
from detector.protocols.netflow_v8 import SCHEMES, NetflowV8Decoder

V8 = NetflowV8Decoder()
CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40123, dport=31337)
NOW = 1_700_000_000


def header(count: int, scheme: int, secs: int = NOW) -> bytes:
    return struct.pack(">HHIIIIBBBBI", 8, count, 123_456, secs, 0, 77, 0, 1, scheme, 2, 0)


def full_flow(src: str, dst: str, sport: int, dport: int, proto: int) -> bytes:
    a4 = lambda s: bytes(int(x) for x in s.split("."))  # noqa: E731
    return (
        a4(dst)
        + a4(src)
        + struct.pack(">HHIIIIHHBBBBII", dport, sport, 12, 3400, 1, 2, 3, 4, 0, proto, 0, 0, 0, 0)
    )


def payloads() -> list[bytes]:
    return [bytes(p[UDP].payload) for p in rdpcap(str(PCAPS / "netflow-v8.pcap"))]


def passes_prefilter(payload: bytes) -> bool:
    return bool(V8.prefilter(*heads([payload]))[0])


def test_every_aggregation_scheme_of_the_sample_decodes() -> None:
    seen = set()
    for p in payloads():
        found = V8.decode(p, CTX, None)
        assert found is not None and passes_prefilter(p)
        assert (found.protocol, found.kind) == ("netflow-v8", "flow-export")
        assert found.facts["count"] == (len(p) - 28) // SCHEMES[p[22]].record
        seen.add(found.facts["aggregation"])
        # Only the Catalyst schemes that name a source and a destination give conversations.
        assert bool(found.records) == (p[22] in (7, 8))
    assert seen == {s.name for s in SCHEMES.values()}


def test_full_flow_record_names_the_conversation() -> None:
    payload = header(1, 8) + full_flow("192.168.10.7", "93.184.216.34", 51000, 443, 6)
    found = V8.decode(payload, CTX, None)
    assert found is not None and passes_prefilter(payload)
    (flow,) = found.records
    assert (flow.src, flow.dst, flow.sport, flow.dport, flow.proto) == (
        "192.168.10.7",
        "93.184.216.34",
        51000,
        443,
        6,
    )
    assert (flow.packets, flow.bytes) == (12, 3400)
    assert found.session == {"engine_type": 0, "engine_id": 1}
    assert "aggregation 8 (full-flow) version 2" in found.header


@pytest.mark.parametrize(
    "payload",
    [
        header(1, 8) + full_flow("10.0.0.1", "10.0.0.2", 1, 2, 17)[:-4],  # short record
        header(2, 8) + full_flow("10.0.0.1", "10.0.0.2", 1, 2, 17),  # count says two
        header(0, 8),  # no record
        header(1, 0) + bytes(44),  # no scheme 0
        header(1, 15) + bytes(44),  # nor 15
        header(1, 8, secs=12_345) + full_flow("10.0.0.1", "10.0.0.2", 1, 2, 17),  # clock of 1970
        header(60, 1) + bytes(60 * 28),  # more AS records than a datagram holds
    ],
    ids=["short", "count", "empty", "scheme-0", "scheme-15", "old-clock", "oversized"],
)
def test_lookalikes_are_not_v8(payload: bytes) -> None:
    assert V8.decode(payload, CTX, None) is None
    assert not passes_prefilter(payload)


def test_v8_and_v5_decoders_keep_to_their_versions() -> None:
    v8 = payloads()[0]
    assert NetflowDecoder().decode(v8, CTX, None) is None
    v5 = struct.pack(">HHIIIIBBH", 5, 1, 1, NOW, 0, 1, 0, 0, 0) + bytes(48)
    assert NetflowDecoder().decode(v5, CTX, None) is not None
    assert V8.decode(v5, CTX, None) is None


def test_truncations_and_noise_never_raise() -> None:
    rng = random.Random(8)
    for p in payloads()[:14]:
        for cut in range(0, len(p), 7):
            V8.decode(p[:cut], CTX, None)
        noisy = bytearray(p)
        for _ in range(20):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
            V8.decode(bytes(noisy), CTX, None)


def test_sample_is_one_v8_export() -> None:
    (f,) = scan(PCAPS / "netflow-v8.pcap").findings
    assert (f.protocol, f.kind, f.severity, f.packets) == (
        "netflow-v8",
        "flow-export",
        "medium",
        28,
    )
    assert f.collector.port == 9995
    assert f.watched, "full-flow and source/destination records name hosts"
