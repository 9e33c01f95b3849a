"""False alarms by class: well-known protocols that a format without a magic number could be
guessed from are named for what they are (or give nothing), and a guess climbs from low to its
own severity only on copy-shaped evidence over many packets."""

from __future__ import annotations

import struct

import pytest
from mwtest import PCAPS, scan
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from detector.evidence import StreamEvidence
from detector.findings import Finding
from detector.policy.verdict import PolicyContext, Thresholds, decide
from detector.protocols.base import Decoded, PacketContext
from detector.protocols.jmirror import JmirrorDecoder
from detector.protocols.pcap_over_ip import PcapOverIpDecoder
from detector.protocols.rpcap import RpcapStreamDecoder
from detector.severity import SEVERITY_ORDER


def alarms(name: str) -> list[Finding]:
    """Mirror and intercept findings of a sample at medium or above."""
    return [
        f
        for f in scan(PCAPS / name).findings
        if f.kind in ("mirror", "intercept")
        and SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER["medium"]
    ]


@pytest.mark.parametrize(
    ("name", "protocol"),
    [
        ("lisp-data.pcap", "lisp"),
        ("lisp-control.pcap", "lisp-control"),
        ("vxlan-reserved-bits.pcap", "vxlan"),
        ("wccp-redirect.pcap", "wccp"),
        ("gwlb-geneve.pcap", "geneve"),
    ],
)
def test_known_protocol_is_a_tunnel_and_nothing_else(name: str, protocol: str) -> None:
    findings = scan(PCAPS / name).findings
    assert {(f.kind, f.protocol, f.severity) for f in findings} == {("tunnel", protocol, "info")}


@pytest.mark.parametrize("name", ["wccp-redirect.pcap", "gwlb-geneve.pcap"])
def test_steering_says_so(name: str) -> None:
    (f,) = scan(PCAPS / name).findings
    assert "steering" in f.reason_codes, f.reason_codes


def test_gwlb_would_be_a_proven_mirror_by_its_inner_directions() -> None:
    """What makes GWLB a trap: both directions of each flow inside one outer direction."""
    (f,) = scan(PCAPS / "gwlb-geneve.pcap").findings
    assert f.evidence["inner_both_directions"] == f.evidence["inner_conversations"] > 0


@pytest.mark.parametrize(
    "name",
    [
        "lsp-ping.pcap",
        "vxlan-gpe-ipv4.pcap",
        "rpcap-lookalikes.pcap",
        "pcap-over-http.pcap",
        "bfd-echo.pcap",
    ],
)
def test_no_mirror_intercept_or_export(name: str) -> None:
    findings = scan(PCAPS / name).findings
    assert not [f for f in findings if f.kind != "tunnel"], [
        (f.kind, f.protocol, f.severity) for f in findings
    ]


def test_capture_file_sent_by_dcc_stays_low_and_says_why() -> None:
    (f,) = scan(PCAPS / "pcap-over-dcc.pcap").findings
    assert (f.protocol, f.severity, f.evidence["evidence_level"]) == ("pcap-over-ip", "low", "low")
    assert "capture-file-transfer" in f.reason_codes


# --------------------------------------------------------------------------- the ladder

EXPORTER, COLLECTOR = "10.1.0.1", "10.9.0.10"
CTX = PacketContext(src=EXPORTER, dst=COLLECTOR, sport=40000, dport=30030, udp_checksum=0)


def inner(src: str, dst: str, sport: int, dport: int, n: int = 0) -> bytes:
    return bytes(IP(src=src, dst=dst, id=n) / TCP(sport=sport, dport=dport) / Raw(b"x" * 20))


def stream_of(protocol: str, kind: str, decoded: list[Decoded]) -> StreamEvidence:
    s = StreamEvidence(
        key=1, flow_key=1, direction=0, protocol=protocol, kind=kind,  # type: ignore[arg-type]
        transport="udp", src=EXPORTER, dst=COLLECTOR, sport=40000, dport=30030,
    )  # fmt: skip
    for d in decoded:
        s.decoded += 1
        s.packets += 1
        s.add(d, 1.0)
    return s


def jmirror_stream(packets: list[bytes]) -> StreamEvidence:
    dec = JmirrorDecoder()
    found = [dec.decode(struct.pack("!II", 0x2A0F, 0xC0FFEE) + p, CTX, None) for p in packets]
    assert all(found)
    return stream_of("jmirror", "intercept", [d for d in found if d is not None])


def conversations(n_packets: int, n_convs: int, both_ways: bool) -> list[bytes]:
    out = []
    for i in range(n_packets):
        c = i % n_convs
        a, b = f"192.168.1.{10 + c}", f"203.0.113.{20 + c}"
        up = not both_ways or (i // n_convs) % 2 == 0
        out.append(inner(a, b, 40000 + c, 443, i) if up else inner(b, a, 443, 40000 + c, i))
    return out


def verdict(s: StreamEvidence) -> Finding:
    f = decide(s, PolicyContext(), returning=0)
    assert f is not None
    return f


def test_copy_shaped_intercept_is_critical() -> None:
    f = verdict(jmirror_stream(conversations(40, 6, both_ways=True)))
    assert (f.severity, f.evidence["evidence_level"]) == ("critical", "critical")


def test_a_few_packets_are_only_a_guess() -> None:
    f = verdict(jmirror_stream(conversations(Thresholds().guess_min_packets - 1, 3, True)))
    assert f.severity == "low" and "few-packets" in f.reason_codes


def test_one_repeated_exchange_is_not_a_copy() -> None:
    """Many packets of one inner conversation (a control protocol's requests) stay low."""
    f = verdict(jmirror_stream(conversations(40, 1, both_ways=False)))
    assert f.severity == "low" and "few-hosts" in f.reason_codes


def test_plausible_one_way_traffic_is_medium() -> None:
    f = verdict(jmirror_stream(conversations(40, 6, both_ways=False)))
    assert f.severity == "medium" and "no-copy-shape" in f.reason_codes


def test_ladder_thresholds_come_from_the_config() -> None:
    s = jmirror_stream(conversations(40, 6, both_ways=True))
    ctx = PolicyContext(thresholds=Thresholds(guess_min_packets=100))
    f = decide(s, ctx, returning=0)
    assert f is not None and f.severity == "low"


def rpcap_control(*messages: bytes) -> StreamEvidence:
    dec = RpcapStreamDecoder()
    found = [dec.decode(m, CTX, None) for m in messages]
    assert all(found)
    return stream_of("rpcap", "mirror", [d for d in found if d is not None])


def rpcap_msg(mtype: int, body: bytes) -> bytes:
    return struct.pack(">BBHI", 0, mtype, 0, len(body)) + body


def test_rpcap_control_needs_a_session() -> None:
    findalldevs = rpcap_msg(0x02, b"")
    assert verdict(rpcap_control(findalldevs, findalldevs)).severity == "low"
    opened = rpcap_control(
        rpcap_msg(0x03, b"eth1"),
        rpcap_msg(0x83, struct.pack(">II", 1, 0)),
        rpcap_msg(0x04, struct.pack(">IIHHHHI", 65535, 1000, 0, 0, 1, 0, 0)),
    )
    assert verdict(opened).severity == "high"


def pcap_stream(record_time: float, now: float) -> StreamEvidence:
    dec = PcapOverIpDecoder()
    state = dec.new_state()
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    data = header
    for i, p in enumerate(conversations(30, 6, both_ways=True)):
        secs = int(record_time) + i
        data += struct.pack("<IIII", secs, 0, len(p), len(p)) + p
    ctx = PacketContext(src=EXPORTER, dst=COLLECTOR, sport=57012, dport=40000, ts=now)
    return stream_of("pcap-over-ip", "mirror", dec.feed(data, ctx, state))


def test_pcap_over_ip_tracks_capture_time() -> None:
    now = 1_768_471_200.0
    live = verdict(pcap_stream(now - 40, now))
    assert live.severity == "high"
    old = verdict(pcap_stream(now - 3 * 365 * 86400, now))
    assert old.severity == "low"
    assert "capture-file-transfer" in old.reason_codes


def test_udp_carried_inner_is_parsed_for_the_ladder() -> None:
    """The ladder counts inner hosts from the carried packets themselves (UDP too)."""
    pkts = [
        bytes(IP(src=f"10.0.0.{i % 5 + 1}", dst="10.0.1.1") / UDP(sport=5000 + i % 5, dport=53))
        for i in range(20)
    ]
    s = jmirror_stream(pkts)
    assert len(s.hosts) == 6 and len(s.conversations) == 5
