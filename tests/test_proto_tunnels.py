"""Benign tunnel decoders on packets built from the specs: fields decoded, look-alikes rejected,
prefilters never missing what decode accepts, and no decoder raising on damaged input."""

from __future__ import annotations

import random
import struct

import pytest
from mwtest import heads
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from detector.protocols.ayiya import AyiyaDecoder
from detector.protocols.base import PREFILTER_BYTES, Decoded, Decoder, PacketContext
from detector.protocols.capwap import CapwapDecoder
from detector.protocols.gre_tunnels import GreIpDecoder, GreKeepaliveDecoder, GrePppDecoder
from detector.protocols.gre_udp import GreUdpDecoder
from detector.protocols.gtpu import GtpUDecoder
from detector.protocols.ip_in_ip import IpInIpDecoder
from detector.protocols.ipsec import AhDecoder, EspDecoder, NatTDecoder
from detector.protocols.l2tp import L2tpIpDecoder, L2tpUdpDecoder
from detector.protocols.mpls_tunnel import MplsGreDecoder, MplsUdpDecoder
from detector.protocols.nsh import NshGreDecoder
from detector.protocols.openvpn import OpenVpnDecoder
from detector.protocols.teredo import TeredoDecoder
from detector.protocols.vxlan_gpe import VxlanGpeDecoder
from detector.protocols.wireguard import WireGuardDecoder

INNER4 = bytes(IP(src="10.1.2.3", dst="10.9.8.7") / UDP(sport=1234, dport=53) / (b"q" * 20))
INNER6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(data=b"x" * 8))
FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(INNER4))
TEREDO6 = bytes(
    IPv6(src="2001:0:4136:e378:8000:63bf:3fff:fdd2", dst="2001:db8::5") / ICMPv6EchoRequest()
)
DNS_QUERY = bytes(DNS(id=0x1A2B, rd=1, qd=DNSQR(qname="example.com")))
DNS_RESPONSE = bytes(DNS(id=0x0001, qr=1, rd=1, ra=1, qd=DNSQR(qname="example.com")))
QUIC_INITIAL = bytes.fromhex("c300000001088394c8f03e5157080000449e") + bytes(range(200))
QUIC_SHORT = bytes.fromhex("4f1a2b3c4d5e6f70") + bytes(range(7, 120))
TLS_HELLO = bytes.fromhex("160301020001000200") + bytes(range(120))
ORDINARY = [DNS_QUERY, DNS_RESPONSE, QUIC_INITIAL, QUIC_SHORT, TLS_HELLO]


def ctx(sport: int = 40000, dport: int = 40001, **kw: object) -> PacketContext:
    return PacketContext(src="192.0.2.1", dst="192.0.2.2", sport=sport, dport=dport, **kw)


def prefilter(dec: Decoder, payloads: list[bytes]) -> list[bool]:
    return [bool(x) for x in dec.prefilter(*heads(payloads))]


def gtpu(inner: bytes, teid: int = 0x11223344, seq: int | None = None) -> bytes:
    opt = b"" if seq is None else struct.pack("!HBB", seq, 0, 0)
    flags = 0x32 if seq is not None else 0x30
    return struct.pack("!BBHI", flags, 0xFF, len(opt) + len(inner), teid) + opt + inner


def wg(mtype: int, n: int) -> bytes:
    return bytes([mtype, 0, 0, 0]) + struct.pack("!I", 0xA1B2C3D4) + bytes(range(8)) * 40


# One valid payload per UDP decoder, with the fields the decoder must report.
UDP_CASES: list[tuple[Decoder, bytes, PacketContext, str, dict[str, object]]] = [
    (GtpUDecoder(), gtpu(INNER4), ctx(2152, 2152), "gtp-u", {"teid": 0x11223344}),
    (GtpUDecoder(), gtpu(INNER6, 7, seq=9), ctx(), "gtp-u", {"teid": 7}),
    (
        L2tpUdpDecoder(),
        bytes.fromhex("0002 1234 5678 ff03 0021") + INNER4,
        ctx(1701, 1701),
        "l2tp",
        {"tunnel_id": 0x1234, "session_id": 0x5678},
    ),
    (
        L2tpUdpDecoder(),
        bytes.fromhex("c802 0014 0001 0000 0000 0000 8008 0000 0000 0001"),
        ctx(1701, 1701),
        "l2tp",
        {"tunnel_id": 1, "session_id": 0},
    ),
    (
        L2tpUdpDecoder(),
        bytes.fromhex("0003 0000 0000abcd") + FRAME,
        ctx(),
        "l2tp",
        {"session_id": 0xABCD},
    ),
    (
        CapwapDecoder(),
        bytes.fromhex("0010 0000 0001 0000") + FRAME,
        ctx(5247, 5247),
        "capwap",
        {"rid": 0, "wbid": 0},
    ),
    (
        CapwapDecoder(),
        bytes.fromhex("0010 0300 e03c 0000 0208 0000") + bytes(range(30)),
        ctx(5247, 5247),
        "capwap",
        {"rid": 0, "wbid": 1},
    ),
    (TeredoDecoder(), TEREDO6, ctx(3544, 50000), "teredo", {"server": "65.54.227.120"}),
    (
        TeredoDecoder(),
        bytes.fromhex("0000 f227 c0a80101") + TEREDO6,
        ctx(),
        "teredo",
        {"server": "65.54.227.120"},
    ),
    (
        AyiyaDecoder(),
        bytes.fromhex("41 52 11 29 4af64c00") + bytes(16) + bytes(20) + INNER6,
        ctx(5072, 5072),
        "ayiya",
        {"identity": "00" * 16},
    ),
    (
        NatTDecoder(),
        struct.pack("!II", 0x12345678, 1) + bytes(range(48)),
        ctx(4500, 4500),
        "nat-t",
        {"spi": 0x12345678},
    ),
    (WireGuardDecoder(), wg(1, 148)[:148], ctx(51820, 3333), "wireguard", {}),
    (WireGuardDecoder(), wg(2, 92)[:92], ctx(), "wireguard", {}),
    (WireGuardDecoder(), wg(3, 64)[:64], ctx(), "wireguard", {}),
    (WireGuardDecoder(), wg(4, 32)[:32], ctx(), "wireguard", {"receiver_index": 0xA1B2C3D4}),
    (
        OpenVpnDecoder(),
        bytes([7 << 3]) + bytes(range(1, 9)) + b"\x00" + struct.pack("!I", 0),
        ctx(50000, 1194),
        "openvpn",
        {"session_id": "0102030405060708"},
    ),
    (
        OpenVpnDecoder(),
        bytes([(9 << 3) | 1]) + b"\x00\x00\x05" + bytes(range(40)),
        ctx(1194, 50000),
        "openvpn",
        {"peer_id": 5},
    ),
    (
        VxlanGpeDecoder(),
        bytes.fromhex("0c000001 00012300") + INNER4,
        ctx(4790, 4790),
        "vxlan-gpe",
        {"vni": 0x123},
    ),
    (
        VxlanGpeDecoder(),
        bytes.fromhex("0c000004 00000700")
        + bytes.fromhex("0006 0103 00002a05")
        + bytes(16)
        + FRAME,
        ctx(),
        "vxlan-gpe",
        {"vni": 7, "nsh_spi": 42},
    ),
    (
        MplsUdpDecoder(),
        bytes.fromhex("00064040 000651ff") + INNER4,
        ctx(40000, 6635),
        "mpls-udp",
        {"label": 100},
    ),
    (
        MplsUdpDecoder(),
        bytes.fromhex("000c81ff 00000000") + FRAME,
        ctx(6635, 6635),
        "mpls-udp",
        {"label": 200},
    ),
    (
        GreUdpDecoder(),
        bytes.fromhex("2000 0800 00000063") + INNER4,
        ctx(40000, 4754),
        "gre-udp",
        {"gre_proto": 0x0800, "key": 0x63},
    ),
    (
        GreUdpDecoder(),
        bytes.fromhex("0000 8847 000641ff") + INNER6,
        ctx(),
        "gre-udp",
        {"gre_proto": 0x8847},
    ),
]


@pytest.mark.parametrize(("dec", "payload", "c", "proto", "session"), UDP_CASES)
def test_udp_tunnels_decode_and_pass_prefilter(
    dec: Decoder, payload: bytes, c: PacketContext, proto: str, session: dict[str, object]
) -> None:
    got = dec.decode(payload, c, None)
    assert got is not None
    assert got.protocol == proto and got.kind == "tunnel"
    for k, v in session.items():
        assert got.session[k] == v
    assert prefilter(dec, [payload]) == [True]
    assert got.header.startswith(payload[:1].hex())


def test_carried_inner_packets() -> None:
    got = GtpUDecoder().decode(gtpu(INNER4), ctx(), None)
    assert got is not None and got.carried[0].link == "ip" and got.carried[0].data == INNER4
    assert got.header_len == 8
    got = GtpUDecoder().decode(gtpu(INNER6, seq=3), ctx(), None)
    assert got is not None and got.header_len == 12 and got.facts["seq"] == 3
    gpe = VxlanGpeDecoder().decode(UDP_CASES[18][1], ctx(), None)
    assert gpe is not None and gpe.carried[0].link == "ethernet" and gpe.carried[0].data == FRAME
    cap = CapwapDecoder().decode(UDP_CASES[6][1], ctx(), None)
    # Cisco access points swap the two frame-control bytes; the carried frame is restored.
    assert cap is not None and cap.carried[0].data[:2] == b"\x08\x02"
    assert cap.facts["fc_swapped"] is True


def test_non_esp_marker_and_keepalive_are_not_esp() -> None:
    # IKE behind the non-ESP marker and the keep-alive belong to the same NAT-T tunnel, but are
    # told apart from ESP.  An IKE header whose length does not match is nothing.
    head = bytes.fromhex("9e89f2388f90bc1e 0000000000000000 2e202308 00000000")
    bad_ike = bytes(4) + head + bytes(4) + bytes(40)
    assert NatTDecoder().decode(bad_ike, ctx(4500, 4500), None) is None
    ike = bytes(4) + head + struct.pack("!I", 28 + 40) + bytes(40)
    got = NatTDecoder().decode(ike, ctx(4500, 4500), None)
    assert got is not None and got.facts["message"] == "ike" and got.facts["ike_version"] == 2
    keepalive = NatTDecoder().decode(b"\xff", ctx(4500, 4500), None)
    assert keepalive is not None and keepalive.facts["message"] == "keepalive"
    esp = struct.pack("!II", 0x12345678, 1) + bytes(48)
    assert "message" not in (NatTDecoder().decode(esp, ctx(4500, 4500), None) or got).facts
    # Without the port there is nothing to go on.
    assert NatTDecoder().decode(esp, ctx(40000, 40001), None) is None
    assert prefilter(NatTDecoder(), [ike, b"\xff"]) == [True, True]


def test_mpls_udp_needs_its_port() -> None:
    # A GTP-U header without options reads as two labels followed by IP: only the port tells.
    payload = gtpu(INNER4, teid=0x7E10B568)
    assert MplsUdpDecoder().decode(payload, ctx(6635, 6635), None) is not None
    assert MplsUdpDecoder().decode(payload, ctx(2152, 2152), None) is None


def test_openvpn_needs_its_port_and_a_valid_opcode() -> None:
    payload = UDP_CASES[15][1]
    assert OpenVpnDecoder().decode(payload, ctx(40000, 443), None) is None
    bad_key = bytes([(7 << 3) | 2]) + payload[1:]  # hard reset on key id 2
    assert OpenVpnDecoder().decode(bad_key, ctx(50000, 1194), None) is None
    assert OpenVpnDecoder().decode(b"\xf8" + payload[1:], ctx(50000, 1194), None) is None


@pytest.mark.parametrize(
    ("dec", "payload"),
    [
        (GtpUDecoder(), gtpu(b"\x45" + bytes(30))),  # not an IP packet
        (GtpUDecoder(), b"\x50\xff" + gtpu(INNER4)[2:]),  # version 2 (GTP-C v2)
        (GtpUDecoder(), gtpu(INNER4)[:3] + b"\x08" + gtpu(INNER4)[4:]),  # length too short
        (L2tpUdpDecoder(), bytes.fromhex("0002 1234 5678 1234 5678") + INNER4),  # not PPP
        (L2tpUdpDecoder(), bytes.fromhex("8002 1234 5678 0000 0000")),  # control without L/S
        (TeredoDecoder(), INNER6),  # IPv6 outside 2001:0::/32
        (AyiyaDecoder(), bytes.fromhex("41 52 11 29 0af64c00") + bytes(36) + INNER6),  # 1975
        (WireGuardDecoder(), wg(1, 148)[:147]),
        (WireGuardDecoder(), wg(4, 48)[:40]),
        (WireGuardDecoder(), b"\x01\x00\x01\x00" + wg(1, 148)[4:148]),
        (VxlanGpeDecoder(), bytes.fromhex("08000000 00012300") + FRAME),  # plain VXLAN
        (VxlanGpeDecoder(), bytes.fromhex("0c000001 00012300") + INNER6),  # says IPv4
        (MplsUdpDecoder(), bytes.fromhex("00064000 000651ff") + INNER4),  # TTL 0
        (MplsUdpDecoder(), bytes.fromhex("00064040 00065040") + INNER4),  # no bottom label
        (GreUdpDecoder(), bytes.fromhex("0001 0800") + INNER4),  # version 1
        (GreUdpDecoder(), bytes.fromhex("0000 86dd") + INNER4),  # says IPv6
        (CapwapDecoder(), bytes.fromhex("1010 0000 0001 0000") + FRAME),  # version 1
        (CapwapDecoder(), bytes.fromhex("0008 0000 0001 0000") + FRAME),  # HLEN 1
    ],
)
def test_look_alikes_rejected(dec: Decoder, payload: bytes) -> None:
    assert dec.decode(payload, ctx(4500, 1194), None) is None


UDP_DECODERS = list({type(c[0]): c[0] for c in UDP_CASES}.values())


@pytest.mark.parametrize("dec", UDP_DECODERS, ids=lambda d: d.name)
def test_prefilters_reject_ordinary_traffic(dec: Decoder) -> None:
    assert all(dec.decode(p, ctx(), None) is None for p in ORDINARY)
    if dec.name in ("nat-t", "openvpn"):
        return  # no content signature: decode requires the port (tested above)
    assert not any(prefilter(dec, ORDINARY))
    rng = random.Random(7)
    noise = [rng.randbytes(rng.randrange(20, 300)) for _ in range(4000)]
    assert sum(prefilter(dec, noise)) / len(noise) < 0.01


GRE_CASES: list[tuple[Decoder, bytes, PacketContext, str]] = [
    (GreIpDecoder(), INNER4, ctx(gre_proto=0x0800, gre_key=5), "gre-ip"),
    (GreIpDecoder(), INNER6, ctx(gre_proto=0x86DD), "gre-ip"),
    (GreKeepaliveDecoder(), b"", ctx(gre_proto=0, gre_key=0x28), "gre-keepalive"),
    (
        GrePppDecoder(),
        bytes.fromhex("ff030021") + INNER4,
        ctx(gre_proto=0x880B, gre_flags=0x3001, gre_key=((4 + len(INNER4)) << 16) | 0x1780),
        "gre-ppp",
    ),
    (GrePppDecoder(), b"", ctx(gre_proto=0x880B, gre_flags=0x2081, gre_key=7), "gre-ppp"),
    (MplsGreDecoder(), bytes.fromhex("000641ff") + INNER4, ctx(gre_proto=0x8847), "gre-mpls"),
    (
        NshGreDecoder(),
        bytes.fromhex("0fc60101 00000203") + bytes(16) + INNER4,
        ctx(gre_proto=0x894F),
        "nsh",
    ),
]


@pytest.mark.parametrize(("dec", "payload", "c", "proto"), GRE_CASES)
def test_gre_tunnels(dec: Decoder, payload: bytes, c: PacketContext, proto: str) -> None:
    got = dec.decode(payload, c, None)
    assert got is not None and got.protocol == proto and got.kind == "tunnel"


def test_gre_fields() -> None:
    ppp = GRE_CASES[3]
    got = ppp[0].decode(ppp[1], ppp[2], None)
    assert got is not None and got.session == {"call_id": 0x1780}
    assert got.carried[0].link == "ppp"
    nsh = NshGreDecoder().decode(GRE_CASES[6][1], GRE_CASES[6][2], None)
    assert nsh is not None and nsh.session == {"spi": 2} and nsh.facts["si"] == 3
    keep = bytes(IP(src="192.0.2.2", dst="192.0.2.1", proto=47) / b"\x00\x00\x00\x00")
    got = GreIpDecoder().decode(keep, ctx(gre_proto=0x0800), None)
    assert got is not None and got.facts["keepalive"] is True
    # Wrong inner type, payload after a keep-alive, PPP claimed but not there.
    assert GreIpDecoder().decode(INNER6, ctx(gre_proto=0x0800), None) is None
    assert GreKeepaliveDecoder().decode(b"\x00", ctx(gre_proto=0), None) is None
    assert (
        GrePppDecoder().decode(INNER4, ctx(gre_proto=0x880B, gre_key=len(INNER4) << 16), None)
        is None
    )


def test_ip_protocol_tunnels() -> None:
    dec = IpInIpDecoder()
    got = dec.decode(INNER4, ctx(ip_proto=4), None)
    assert got is not None and got.protocol == "ipip" and got.carried[0].data == INNER4
    v6 = PacketContext(src="2001:db8::1", dst="2001:db8::2", ip_proto=4)
    got = dec.decode(INNER4, v6, None)
    assert got is not None and got.protocol == "4in6"
    got = dec.decode(INNER6, ctx(ip_proto=41), None)
    assert got is not None and got.protocol == "6in4"
    assert dec.decode(INNER6, ctx(ip_proto=4), None) is None
    assert dec.decode(INNER4[:19], ctx(ip_proto=4), None) is None
    esp = EspDecoder().decode(struct.pack("!II", 0x1000, 5) + bytes(40), ctx(ip_proto=50), None)
    assert esp is not None and esp.session == {"spi": 0x1000} and esp.facts["seq"] == 5
    assert EspDecoder().decode(struct.pack("!II", 17, 5) + bytes(40), ctx(), None) is None
    ah = struct.pack("!BBHII", 4, 4, 0, 0x2000, 1) + bytes(12) + INNER4
    got = AhDecoder().decode(ah, ctx(ip_proto=51), None)
    assert got is not None and got.carried[0].data == INNER4 and got.header_len == 24
    l2 = L2tpIpDecoder()
    got = l2.decode(struct.pack("!I", 0x99) + FRAME, ctx(ip_proto=115), None)
    assert got is not None and got.protocol == "l2tp" and got.carried[0].link == "ethernet"
    ctl = bytes(4) + bytes.fromhex("c803 0014 00000007 0000 0000 8008 0000 0000 0001")
    got = l2.decode(ctl, ctx(ip_proto=115), None)
    assert got is not None and got.session == {"control_connection_id": 7}


ALL_DECODERS = [
    *UDP_DECODERS,
    *{type(c[0]): c[0] for c in GRE_CASES}.values(),
    IpInIpDecoder(),
    EspDecoder(),
    AhDecoder(),
    L2tpIpDecoder(),
]
VALID = [(c[0], c[1], c[2]) for c in UDP_CASES] + [(c[0], c[1], c[2]) for c in GRE_CASES]


def test_damaged_input_never_raises_and_prefilter_covers_decode() -> None:
    rng = random.Random(2024)
    for dec in ALL_DECODERS:
        for p in [b"", b"\x00", rng.randbytes(3), *(rng.randbytes(n) for n in range(1, 80))]:
            dec.decode(p, ctx(4500, 1194, ip_proto=4), None)
    # Truncations and byte flips of valid payloads: whatever decode still accepts, the
    # prefilter must let through.
    for dec, payload, c in VALID:
        damaged = [payload[:n] for n in range(len(payload))]
        for _ in range(150 if payload else 0):
            b = bytearray(payload)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(min(len(b), PREFILTER_BYTES + 8))] = rng.randrange(256)
            damaged.append(bytes(b))
        accepted: list[bytes] = []
        for p in damaged:
            got = dec.decode(p, c, None)
            assert got is None or isinstance(got, Decoded)
            if got is not None:
                accepted.append(p)
        if dec.transport == "udp" and accepted:
            assert all(prefilter(dec, accepted)), dec.name


def test_icmp_in_gtp_keeps_inner_addresses() -> None:
    inner = bytes(IP(src="10.0.0.1", dst="8.8.8.8") / ICMP())
    got = GtpUDecoder().decode(gtpu(inner, 1, seq=0x28DB), ctx(), None)
    assert got is not None
    assert got.carried[0].data[12:16] == bytes([10, 0, 0, 1])
    assert "TEID 0x00000001" in got.header
