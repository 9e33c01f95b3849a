"""Mirror-format decoders: GRE header, ERSPAN I/II/III, GRE TEB / EoIP, VXLAN, GENEVE, TZSP."""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from mwtest import heads as head_of
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.contrib.tzsp import TZSP, TZSPTagEnd, TZSPTagRXFrameLength
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.dot11 import Dot11, RadioTap
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import RawPcapReader

from detector.decode.frames import parse_carried, parse_ethernet
from detector.protocols import erspan, geneve, gre_teb, tzsp, vxlan
from detector.protocols.base import Decoded, Decoder, PacketContext
from detector.protocols.gre import fill_context, parse_gre

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "pcaps" / "real"

GRE_DECODERS: list[Decoder] = [*erspan.DECODERS, *gre_teb.DECODERS]
UDP_DECODERS: list[Decoder] = [*vxlan.DECODERS, *geneve.DECODERS, *tzsp.DECODERS]
VX, GNV, TZ = vxlan.DECODERS[0], geneve.DECODERS[0], tzsp.DECODERS[0]

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def inner_frame() -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.1.1", dst="10.2.2.2") / ICMP())


def inner_ip() -> bytes:
    return bytes(IP(src="10.1.1.1", dst="10.2.2.2") / ICMP())


def gre_decode(gre_bytes: bytes) -> list[Decoded]:
    """Parse the GRE header the way the engine does and run every decoder for its type."""
    hdr = parse_gre(gre_bytes)
    assert hdr is not None
    ctx = fill_context(hdr, PacketContext())
    body = gre_bytes[hdr.header_len :]
    found = [d.decode(body, ctx, None) for d in GRE_DECODERS if hdr.proto in d.gre_types]
    return [x for x in found if x is not None]


def gre_one(gre_bytes: bytes) -> Decoded:
    found = gre_decode(gre_bytes)
    assert len(found) == 1, [d.protocol for d in found]
    return found[0]


def udp_decode(dec: Decoder, payload: bytes) -> Decoded | None:
    """Decode, and check the prefilter passes whatever decode accepts."""
    got = dec.decode(payload, PacketContext(dport=31337), None)
    if got is not None:
        assert dec.prefilter(*head_of([payload]))[0], f"{dec.name} prefilter missed an accept"
    return got


# ---------------------------------------------------------------- GRE header


def test_gre_plain_header() -> None:
    hdr = parse_gre(b"\x00\x00\x08\x00" + inner_ip())
    assert hdr is not None
    assert (hdr.proto, hdr.header_len, hdr.version, hdr.enhanced) == (0x0800, 4, 0, False)
    assert hdr.key is None and hdr.seq is None and hdr.checksum is None


def test_gre_optional_fields() -> None:
    raw = bytes(
        GRE(
            chksum_present=1,
            key_present=1,
            seqnum_present=1,
            key=7,
            sequence_number=9,
            proto=0x6558,
        )
        / inner_frame()
    )
    hdr = parse_gre(raw)
    assert hdr is not None
    assert (hdr.header_len, hdr.key, hdr.seq, hdr.proto) == (16, 7, 9, 0x6558)
    assert hdr.checksum is not None
    ctx = fill_context(hdr, PacketContext())
    assert (ctx.gre_proto, ctx.gre_key, ctx.gre_seq, ctx.gre_flags) == (0x6558, 7, 9, 0xB000)


def test_gre_routing_entries_skipped() -> None:
    # R set: checksum/offset word, one SRE of 4 bytes, then the null SRE.
    sre = struct.pack("!HBB", 0x0800, 0, 4) + b"\x0a\x00\x00\x01" + b"\x00\x00\x00\x00"
    hdr = parse_gre(b"\x40\x00\x08\x00" + b"\x00\x00\x00\x00" + sre + inner_ip())
    assert hdr is not None and hdr.header_len == 4 + 4 + 8 + 4
    # Without the null SRE the header never ends.
    assert parse_gre(b"\x40\x00\x08\x00" + b"\x00\x00\x00\x00" + sre[:8]) is None


def test_gre_pptp_enhanced() -> None:
    # Enhanced GRE as in zeek's gre-pptp.pcap: K, S and A set, version 1, PPP.
    raw = bytes.fromhex("3081880b006717800006 8fb100083a76 ff030021".replace(" ", ""))
    hdr = parse_gre(raw)
    assert hdr is not None
    assert hdr.enhanced and hdr.pptp and hdr.version == 1
    assert (hdr.payload_len, hdr.call_id, hdr.seq, hdr.ack) == (0x67, 0x1780, 0x68FB1, 0x83A76)
    assert hdr.header_len == 16


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x02\x08\x00",  # version 2
        b"\x00\x07\x08\x00",  # version 7
        b"\x00\x08\x08\x00",  # reserved flag bit
        b"\x10\x01\x88\x0b\x00\x00\x00\x01",  # version 1 without the key
        b"\xb0\x01\x88\x0b" + bytes(12),  # version 1 with a checksum
        b"\x20\x00\x08",  # cut inside the base header
        b"\x30\x00\x08\x00\x00\x00\x00\x01",  # K and S set but the sequence number is missing
        b"",
    ],
)
def test_gre_rejects_invalid(raw: bytes) -> None:
    assert parse_gre(raw) is None


# ---------------------------------------------------------------- ERSPAN


def test_erspan_type2() -> None:
    copy = inner_frame()
    pkt = GRE(proto=0x88BE, seqnum_present=1, sequence_number=77) / ERSPAN_II(
        ver=1, vlan=42, cos=5, en=3, t=1, session_id=513, index=0xABCDE
    )
    got = gre_one(bytes(pkt) + copy)
    assert got.protocol == "erspan-2" and got.kind == "mirror"
    assert got.session == {"session_id": 513, "index": 0xABCDE}
    assert got.facts["gre_seq"] == 77 and got.facts["vlan"] == 42
    assert got.facts["cos"] == 5 and got.facts["en"] == 3 and got.facts["truncated"] is True
    assert got.header_len == 8 and got.header.startswith("10 2a")
    assert [(c.link, c.data) for c in got.carried] == [("ethernet", copy)]


def test_erspan_type1_and_s_bit() -> None:
    copy = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=101) / IP() / ICMP())
    got = gre_one(bytes(GRE(proto=0x88BE)) + copy)
    assert got.protocol == "erspan-1" and got.carried[0].data == copy and got.header_len == 0
    # Without the S bit a type II header is not read as type II.
    body = bytes(ERSPAN_II(ver=1, session_id=1)) + copy
    assert all(d.protocol != "erspan-2" for d in gre_decode(bytes(GRE(proto=0x88BE)) + body))


def test_erspan_type3_platform_and_direction() -> None:
    copy = inner_frame()
    hdr3 = ERSPAN_III(
        ver=2, vlan=7, session_id=1000, timestamp=123456, sgt_other=99, ft=0, hw=17, d=1, gra=1, o=1
    )
    platform = ERSPAN_PlatformSpecific(platf_id=3, info1=5, info2=6)
    got = gre_one(
        bytes(GRE(proto=0x22EB, seqnum_present=1, sequence_number=3) / hdr3 / platform) + copy
    )
    assert got.protocol == "erspan-3"
    assert got.session == {"session_id": 1000, "hw_id": 17, "platform_id": 3}
    assert got.facts["direction"] == "egress" and got.facts["timestamp"] == 123456
    assert got.facts["sgt"] == 99 and got.facts["granularity"] == "100ns"
    assert got.header_len == 20
    assert got.carried[0].data == copy and got.carried[0].direction == "egress"


def test_erspan_type3_ip_and_reserved_frame_type() -> None:
    ip = inner_ip()
    got = gre_one(bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, ft=2, session_id=5)) + ip)
    assert got.carried[0].link == "ip" and got.carried[0].data == ip
    assert got.facts["direction"] == "ingress"
    # Frame type 7: still ERSPAN III, the copy is reported as raw bytes.
    got = gre_one(bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, ft=7)) + b"\x00\x01\x02\x03")
    assert got.carried[0].link == "raw" and got.strength < 1.0
    # Frame type 2 must carry IP, frame type 0 Ethernet.
    assert gre_decode(bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, ft=2)) + inner_frame()) == []
    assert gre_decode(bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, ft=0)) + ip) == []


def test_erspan_sonic_gre_type_by_version() -> None:
    copy = inner_frame()
    v2 = bytes(GRE(proto=0x8949) / ERSPAN_II(ver=1, session_id=9, index=4)) + copy
    assert gre_one(v2).protocol == "erspan-2"
    v3 = bytes(GRE(proto=0x8949) / ERSPAN_III(ver=2, session_id=9, hw=2)) + copy
    got = gre_one(v3)
    assert got.protocol == "erspan-3" and got.session["hw_id"] == 2
    assert gre_decode(bytes(GRE(proto=0x8949) / ERSPAN_II(ver=3)) + copy) == []


def test_erspan_wrong_version_or_copy_rejected() -> None:
    copy = inner_frame()
    seq = GRE(proto=0x88BE, seqnum_present=1, sequence_number=1)
    assert gre_decode(bytes(seq / ERSPAN_II(ver=2)) + copy) == []
    assert gre_decode(bytes(seq / ERSPAN_II(ver=1)) + bytes(range(60))) == []
    assert gre_decode(bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=1)) + copy) == []


def test_erspan_copy_of_vxlan_reports_only_the_copy() -> None:
    vx_inner = inner_frame()
    copied = (
        bytes(
            Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02")
            / IP(src="192.0.2.1", dst="192.0.2.2")
            / UDP(sport=40000, dport=4789)
            / VXLAN(vni=5000)
        )
        + vx_inner
    )
    got = gre_one(bytes(GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II(ver=1)) + copied)
    assert got.protocol == "erspan-2"
    assert len(got.carried) == 1 and got.carried[0].data == copied
    inner = parse_carried("ethernet", got.carried[0].data)
    assert inner is not None and (inner.src, inner.dport) == ("192.0.2.1", 4789)


# ---------------------------------------------------------------- GRE TEB and EoIP


def test_gre_teb_key_session() -> None:
    copy = inner_frame()
    got = gre_one(bytes(GRE(proto=0x6558, key_present=1, key=42)) + copy)
    assert (got.protocol, got.kind, got.session) == ("gre-teb", "mirror", {"gre_key": 42})
    assert got.carried[0].link == "ethernet" and got.carried[0].data == copy
    assert gre_one(bytes(GRE(proto=0x6558)) + copy).session == {}
    assert gre_decode(bytes(GRE(proto=0x6558)) + inner_ip()) == []


def eoip(frame: bytes, tunnel_id: int, length: int | None = None, flags: int = 0x2001) -> bytes:
    size = len(frame) if length is None else length
    return struct.pack("!HHH", flags, 0x6400, size) + struct.pack("<H", tunnel_id) + frame


def test_eoip() -> None:
    copy = inner_frame()
    hdr = parse_gre(eoip(copy, 300))
    assert hdr is not None and hdr.enhanced and not hdr.pptp and hdr.header_len == 8
    got = gre_one(eoip(copy, 300))
    assert (got.protocol, got.kind, got.session) == ("eoip", "mirror", {"tunnel_id": 300})
    assert got.carried[0].data == copy and got.carried[0].orig_len == len(copy)
    # Truncated capture: the length field may exceed what was captured, never the reverse.
    assert gre_one(eoip(copy[:40], 300, length=len(copy))).carried[0].orig_len == len(copy)
    assert gre_decode(eoip(copy, 300, length=len(copy) - 1)) == []
    keepalive = gre_one(eoip(b"", 300))
    assert keepalive.carried == [] and keepalive.facts["keepalive"] is True


def test_eoip_needs_version_1() -> None:
    raw = struct.pack("!HHI", 0x2000, 0x6400, 0x00622C01) + inner_frame()
    assert gre_decode(raw) == []


# ---------------------------------------------------------------- VXLAN


def test_vxlan_on_linux_port() -> None:
    copy = inner_frame()
    pkt = UDP(sport=50000, dport=8472) / VXLAN(vni=0xABCDEF) / copy
    payload = bytes(pkt[VXLAN])
    got = udp_decode(VX, payload)
    assert got is not None and got.protocol == "vxlan" and got.kind == "mirror"
    assert got.session == {"vni": 0xABCDEF} and got.header_len == 8
    assert got.carried[0].data == copy and got.header.startswith("08 00 00 00 ab cd ef 00")


def test_vxlan_group_policy() -> None:
    payload = bytes.fromhex("88400123") + struct.pack("!I", 77 << 8) + inner_frame()
    got = udp_decode(VX, payload)
    assert got is not None and got.session == {"vni": 77}
    assert got.facts["group_policy_id"] == 0x0123 and got.facts["dont_learn"] is True


@pytest.mark.parametrize(
    "prefix",
    [
        "0c000003_00000100",  # VXLAN-GPE: P bit and next protocol 3 (Ethernet)
        "08000000_00000101",  # reserved byte after the VNI
        "08000100_00000100",  # reserved byte in the first word
        "88100000_00000100",  # GBP with a reserved bit
        "00000000_00000100",  # I bit clear
    ],
)
def test_vxlan_lookalikes(prefix: str) -> None:
    assert udp_decode(VX, bytes.fromhex(prefix.replace("_", "")) + inner_frame()) is None


def test_vxlan_inner_must_be_ethernet() -> None:
    # A source MAC with the group bit set cannot start a real frame.
    assert udp_decode(VX, bytes.fromhex("0800000000000100") + b"\xff" * 60) is None


# ---------------------------------------------------------------- GENEVE


def test_geneve_google_options() -> None:
    copy = inner_frame()
    opts = GeneveOptions(classid=0x0132, type=1, data=b"\x00\x00\x00\x01") / GeneveOptions(
        classid=0x0101, type=0x80, data=b"\x00\x00\x00\x02\x00\x00\x00\x03"
    )
    payload = bytes(GENEVE(vni=0x123, proto=0x6558, critical=1, options=opts)) + copy
    got = udp_decode(GNV, payload)
    assert got is not None and got.protocol == "geneve"
    assert got.session == {"vni": 0x123}
    assert got.facts["option_classes"] == [0x0132, 0x0101]
    assert got.facts["critical"] is True and got.header_len == 8 + 8 + 12
    assert "Google" in got.header and got.carried[0].data == copy


def test_geneve_ip_payloads() -> None:
    v4 = inner_ip()
    got = udp_decode(GNV, bytes(GENEVE(vni=9, proto=0x0800)) + v4)
    assert got is not None and got.carried[0].link == "ip" and got.carried[0].data == v4
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP())
    got = udp_decode(GNV, bytes(GENEVE(vni=9, proto=0x86DD)) + v6)
    assert got is not None and got.carried[0].data == v6
    # The protocol type must match what follows.
    assert udp_decode(GNV, bytes(GENEVE(vni=9, proto=0x86DD)) + v4) is None


def test_geneve_lookalikes() -> None:
    copy = inner_frame()
    base = bytearray(bytes(GENEVE(vni=1, proto=0x6558)))
    assert udp_decode(GNV, bytes(base) + copy) is not None
    for index, value in ((0, 0x40), (1, 0x01), (7, 0x01), (2, 0x88)):  # version, reserved, proto
        bad = bytearray(base)
        bad[index] = value
        assert udp_decode(GNV, bytes(bad) + copy) is None
    # Options whose lengths do not tile the declared option area.
    opt = struct.pack("!HBB", 0x0132, 1, 2) + bytes(4)  # claims 8 data bytes, holds 4
    assert udp_decode(GNV, bytes([0x02]) + bytes(base[1:]) + opt + copy) is None


# ---------------------------------------------------------------- TZSP


def tzsp_bytes(ptype: int, encap: int, tags: bytes, frame: bytes) -> bytes:
    return struct.pack("!BBH", 1, ptype, encap) + tags + b"\x01" + frame


def test_tzsp_mikrotik_minimal_any_port() -> None:
    copy = inner_frame()
    payload = tzsp_bytes(0, 1, b"", copy)
    assert payload[:5] == bytes.fromhex("0100000101")
    got = udp_decode(TZ, payload)
    assert got is not None and (got.protocol, got.kind) == ("tzsp", "mirror")
    assert got.session == {"encapsulation": 1} and got.header_len == 5
    assert got.carried[0].link == "ethernet" and got.carried[0].data == copy
    assert got.header.startswith("01 00 00 01 01")


def test_tzsp_walks_every_tag() -> None:
    copy = inner_frame()
    tags = (
        b"\x00"  # PAD
        + bytes([41, 2]) + struct.pack("!H", 1514)  # original length
        + bytes([60, 6]) + bytes.fromhex("4c5e0c112233")  # sensor MAC
        + bytes([40, 4]) + struct.pack("!I", 99)  # packet id
        + bytes([12, 1, 0x6E])  # data rate
    )  # fmt: skip
    got = udp_decode(TZ, tzsp_bytes(1, 1, tags, copy))
    assert got is not None
    assert got.session == {"encapsulation": 1, "sensor_mac": "4c:5e:0c:11:22:33"}
    assert got.facts["tags"] == [41, 60, 40, 12] and got.facts["packet_id"] == 99
    assert got.carried[0].orig_len == 1514 and got.carried[0].data == copy
    assert got.header_len == 4 + len(tags) + 1


def test_tzsp_built_by_scapy() -> None:
    copy = inner_frame()
    payload = bytes(
        TZSP(type=0, encapsulated_protocol=1) / TZSPTagRXFrameLength(rx_frame_length=98)
        / TZSPTagEnd() / Ether(copy)
    )  # fmt: skip
    got = udp_decode(TZ, payload)
    assert got is not None and got.carried[0].orig_len == 98 and got.carried[0].data == copy


def test_tzsp_raw_ip_and_wireless() -> None:
    ip = inner_ip()
    got = udp_decode(TZ, tzsp_bytes(0, 7, b"", ip))
    assert got is not None and got.carried[0].link == "ip"
    dot11 = bytes(Dot11(type=2, addr1=MAC_B, addr2=MAC_A, addr3=MAC_B) / (b"\xaa" * 8))
    got = udp_decode(TZ, tzsp_bytes(0, 18, bytes([18, 1, 6]), dot11))
    assert got is not None and got.carried[0].link == "ieee80211"
    radiotap = bytes(RadioTap() / Dot11(type=2, addr1=MAC_B, addr2=MAC_A, addr3=MAC_B))
    got = udp_decode(TZ, tzsp_bytes(0, 126, b"", radiotap))
    assert got is not None and got.carried[0].data == radiotap[8:]
    inner = parse_carried("ieee80211", got.carried[0].data)
    assert inner is not None and inner.src_mac == MAC_A
    prism = struct.pack("<II", 0x44, 144) + bytes(136)
    got = udp_decode(TZ, tzsp_bytes(0, 119, b"", prism + dot11))
    assert got is not None and got.carried[0].data == dot11
    avs = struct.pack("!II", 0x80211001, 64) + bytes(56)
    got = udp_decode(TZ, tzsp_bytes(0, 127, b"", avs + dot11))
    assert got is not None and got.carried[0].data == dot11
    # A radiotap header that claims more than the payload holds.
    assert udp_decode(TZ, tzsp_bytes(0, 126, b"", b"\x00\x00\xff\x00" + bytes(30))) is None


def test_tzsp_keepalive_carries_nothing() -> None:
    got = udp_decode(TZ, bytes.fromhex("01040000"))
    assert got is not None and got.carried == [] and got.strength < 0.5
    got = udp_decode(TZ, tzsp_bytes(3, 0, bytes([80, 3]) + b"ap1", b""))
    assert got is not None and got.carried == [] and got.facts["type"] == 3


@pytest.mark.parametrize(
    "payload",
    [
        tzsp_bytes(0, 1, b"", b"\xff" * 60),  # inner not Ethernet
        tzsp_bytes(0, 7, b"", inner_frame()),  # raw IP declared, Ethernet carried
        b"\x02\x00\x00\x01\x01" + inner_frame(),  # version 2
        b"\x01\x02\x00\x01\x01" + inner_frame(),  # reserved type
        b"\x01\x00\x00\x09\x01" + inner_frame(),  # unknown encapsulation
        b"\x01\x00\x00\x00\x01" + inner_frame(),  # frame type with no encapsulation
        b"\x01\x00\x00\x01" + bytes([41, 200, 0, 0]),  # tag runs past the end
        b"\x01\x00\x00\x01\x00\x00\x00",  # no END tag
        tzsp_bytes(4, 0, b"", b"\x00\x01"),  # keepalive with trailing bytes
    ],
)
def test_tzsp_lookalikes(payload: bytes) -> None:
    assert udp_decode(TZ, payload) is None


# ---------------------------------------------------------------- prefilters and robustness


def valid_udp_samples() -> list[tuple[Decoder, bytes]]:
    copy = inner_frame()
    return [
        (VX, bytes(VXLAN(vni=5) / copy)),
        (VX, bytes.fromhex("88000001") + struct.pack("!I", 5 << 8) + copy),
        (GNV, bytes(GENEVE(vni=5, proto=0x6558)) + copy),
        (GNV, bytes(GENEVE(proto=0x0800, options=GeneveOptions(classid=0x0133))) + inner_ip()),
        (TZ, tzsp_bytes(0, 1, bytes([60, 6]) + bytes(6), copy)),
        (TZ, tzsp_bytes(1, 7, b"\x00\x00", inner_ip())),
        (TZ, bytes.fromhex("01050000")),
    ]


def valid_gre_samples() -> list[bytes]:
    copy = inner_frame()
    return [
        bytes(GRE(proto=0x88BE)) + copy,
        bytes(GRE(proto=0x88BE, seqnum_present=1) / ERSPAN_II(ver=1)) + copy,
        bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, o=1) / ERSPAN_PlatformSpecific()) + copy,
        bytes(GRE(proto=0x22EB) / ERSPAN_III(ver=2, ft=2)) + inner_ip(),
        bytes(GRE(proto=0x6558, key_present=1, key=1)) + copy,
        eoip(copy, 7),
    ]


def test_valid_samples_decode() -> None:
    for dec, payload in valid_udp_samples():
        assert udp_decode(dec, payload) is not None, dec.name
    for raw in valid_gre_samples():
        assert len(gre_decode(raw)) == 1


def test_prefilter_rejects_ordinary_traffic() -> None:
    rng = random.Random(7)
    rows = [rng.randbytes(rng.randrange(0, 200)) for _ in range(20000)]
    ordinary = [
        bytes(DNS(id=0x0800, rd=1, qd=DNSQR(qname="example.com"))),
        bytes(DNS(id=0x0100, qd=DNSQR(qname="example.org"))),
        bytes.fromhex("c30000000108") + rng.randbytes(1200),  # QUIC initial
        bytes.fromhex("160301020001") + rng.randbytes(500),  # TLS client hello
        bytes.fromhex("1703030040") + rng.randbytes(64),  # TLS application data
    ]
    for dec in UDP_DECODERS:
        assert not dec.prefilter(*head_of(ordinary)).any(), dec.name
        passed = int(dec.prefilter(*head_of(rows)).sum())
        assert passed <= 20, (dec.name, passed)
        assert not dec.prefilter(*head_of([b""]))[0]


def test_prefilter_never_misses_a_decode() -> None:
    # Mutate valid payloads byte by byte: whenever decode still accepts, the prefilter must too.
    rng = random.Random(11)
    for dec, payload in valid_udp_samples():
        for _ in range(400):
            buf = bytearray(payload)
            for _ in range(rng.randrange(1, 3)):
                buf[rng.randrange(min(len(buf), 16))] = rng.randrange(256)
            cut = bytes(buf[: rng.randrange(len(buf) + 1)]) if rng.random() < 0.3 else bytes(buf)
            udp_decode(dec, cut)


def test_decoders_never_raise_on_garbage_or_truncation() -> None:
    rng = random.Random(3)
    ctxs = [PacketContext()]
    for flags in (0x0000, 0x1000, 0x2001, 0x3000):
        ctxs.append(PacketContext(gre_flags=flags, gre_key=rng.randrange(1 << 32), gre_seq=1))
    blobs = [rng.randbytes(rng.randrange(0, 120)) for _ in range(1500)]
    for _dec, payload in valid_udp_samples():
        blobs.extend(payload[:n] for n in range(len(payload)))
    for raw in valid_gre_samples():
        blobs.extend(raw[:n] for n in range(len(raw)))
        hdr = parse_gre(raw)
        assert hdr is not None
        blobs.extend(raw[hdr.header_len : hdr.header_len + n] for n in range(len(raw)))
    for blob in blobs:
        parse_gre(blob)
        for dec in UDP_DECODERS:
            dec.decode(blob, PacketContext(), None)
        for dec in GRE_DECODERS:
            for ctx in ctxs:
                dec.decode(blob, ctx, None)


# ---------------------------------------------------------------- real captures


def real_pcap(rel: str) -> Path:
    path = REAL / rel
    if not path.exists():
        pytest.skip(f"real capture {path} not available (../shared/pcaps/real is absent)")
    return path


def pcap_payloads(path: Path) -> list[tuple[int, bytes]]:
    """(IP protocol, L4 payload) of every IPv4/IPv6 packet; UDP payloads skip the UDP header."""
    out: list[tuple[int, bytes]] = []
    for data, _meta in RawPcapReader(str(path)):
        pkt = parse_ethernet(data)
        if pkt is None or pkt.ip_offset < 0 or pkt.l4_offset < 0:
            continue
        end = pkt.ip_offset + pkt.ip_len
        if pkt.proto == 47:
            out.append((47, data[pkt.l4_offset : end]))
        elif pkt.proto == 17:
            out.append((17, data[pkt.l4_offset + 8 : end]))
    return out


def payloads_of(rel: str, ip_proto: int) -> list[bytes]:
    return [p for proto, p in pcap_payloads(real_pcap(rel)) if proto == ip_proto]


def real_gre(rel: str) -> list[Decoded]:
    found = []
    for payload in payloads_of(rel, 47):
        if parse_gre(payload) is not None:
            hits = gre_decode(payload)
            assert len(hits) <= 1
            found.extend(hits)
    return found


@pytest.mark.parametrize(
    ("rel", "protocol", "count", "session"),
    [
        ("tcpdump/erspan-type-i-1.pcap", "erspan-1", 2, {}),
        ("tcpdump/erspan-type-i-4.pcap", "erspan-1", 88, {}),
        ("zeek/erspanI.pcap", "erspan-1", 10, {}),
        ("suricata-verify/decode-erspan-typeI-02/input.pcap", "erspan-1", 42, {}),
        ("tcpdump/erspan-type-ii-1.pcap", "erspan-2", 1, {"session_id": 666, "index": 32760}),
        ("tcpdump/erspan-type-ii-3.pcap", "erspan-2", 108, {"session_id": 101, "index": 43973}),
        ("zeek/erspanII.pcap", "erspan-2", 4, {"session_id": 100, "index": 0}),
        ("suricata-verify/decode-erspan-typeII-01/input.pcap", "erspan-2", 6, {"session_id": 100}),
        ("tcpdump/erspan-type-iii-ft-0.pcap", "erspan-3", 9, {"session_id": 0, "hw_id": 0}),
        ("zeek/erspanIII.pcap", "erspan-3", 2, {"session_id": 0, "hw_id": 3}),
    ],
)
def test_real_erspan(rel: str, protocol: str, count: int, session: dict[str, int]) -> None:
    found = real_gre(rel)
    assert Counter(d.protocol for d in found) == {protocol: count}
    for d in found:
        assert session.items() <= d.session.items()
        assert d.carried[0].link == "ethernet"
        assert parse_carried("ethernet", d.carried[0].data) is not None


def test_real_erspan_type3_frame_type_7() -> None:
    found = real_gre("tcpdump/erspan-type-iii-ft-7.pcap")
    assert len(found) == 58
    assert {(d.protocol, d.carried[0].link, d.facts["frame_type"]) for d in found} == {
        ("erspan-3", "raw", 7)
    }
    assert {d.session["session_id"] for d in found} == {101}
    assert all(d.facts["gre_seq"] is not None for d in found)


def test_real_plain_gre_is_not_a_mirror() -> None:
    payloads = payloads_of("akvorado/gre-v4-key.pcap", 47)
    assert payloads
    for payload in payloads:
        hdr = parse_gre(payload)
        assert hdr is not None and (hdr.proto, hdr.key) == (0x0800, 1)
        assert gre_decode(payload) == []
        ctx = fill_context(hdr, PacketContext())
        assert all(d.decode(payload[hdr.header_len :], ctx, None) is None for d in GRE_DECODERS)


@pytest.mark.parametrize(
    ("rel", "dec", "count", "vnis"),
    [
        ("ndpi/vxlan.pcap", VX, 127, {1111}),
        ("zeek/vxlan-encapsulated-http.pcap", VX, 12, {1}),
        ("tcpdump/geneve.pcap", GNV, 39, None),
        ("tcpdump/geneve-gcp.pcap", GNV, 1, {0}),
        ("zeek/geneve.pcap", GNV, 6, {0}),
    ],
)
def test_real_udp_mirrors(rel: str, dec: Decoder, count: int, vnis: set[int] | None) -> None:
    payloads = payloads_of(rel, 17)
    found = [d for d in (udp_decode(dec, p) for p in payloads) if d is not None]
    assert len(found) == count
    if vnis is not None:
        assert {d.session["vni"] for d in found} == vnis
    for d in found:
        assert parse_carried(d.carried[0].link, d.carried[0].data) is not None
    # No other mirror decoder claims these payloads.
    others = [o for o in UDP_DECODERS if o is not dec]
    assert all(o.decode(p, PacketContext(), None) is None for p in payloads for o in others)


def test_real_geneve_google_option_class() -> None:
    payloads = payloads_of("tcpdump/geneve-gcp.pcap", 17)
    got = udp_decode(GNV, payloads[0])
    assert got is not None and got.facts["option_classes"] == [0x0132]
    assert got.carried[0].link == "ip"


def test_real_vxlan_gpe_not_claimed() -> None:
    payloads = payloads_of("tcpdump/nsh-over-vxlan-gpe.pcap", 17)
    assert payloads
    for dec in UDP_DECODERS:
        assert all(dec.decode(p, PacketContext(), None) is None for p in payloads)
        assert not dec.prefilter(*head_of(payloads)).any()
