"""Tunnel decoders on real captures (../shared/pcaps/real, role benign-tunnel): each tunnel
packet decodes as its tunnel and as nothing else, and the IKE and DNS next to them as none."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ppp import PPPoE  # noqa: F401  (registers PPPoE so IP inside it is dissected)
from scapy.utils import rdpcap

from detector.protocols import (
    ayiya,
    capwap,
    gre_tunnels,
    gre_udp,
    gtpu,
    ip_in_ip,
    ipsec,
    l2tp,
    mpls_tunnel,
    nsh,
    openvpn,
    teredo,
    vxlan_gpe,
    wireguard,
)
from detector.protocols.base import Decoded, Decoder, PacketContext

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "pcaps" / "real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real captures not present at {REAL}")

MODULES = (ayiya, capwap, gre_tunnels, gre_udp, gtpu, ip_in_ip, ipsec, l2tp, mpls_tunnel, nsh,
           openvpn, teredo, vxlan_gpe, wireguard)  # fmt: skip
DECODERS: list[Decoder] = [d for m in MODULES for d in m.DECODERS]


def _gre(data: bytes) -> tuple[int, int, int | None, int] | None:
    """(flags word, protocol type, key, header length) of a GRE header, for feeding the GRE
    decoders the way the engine does."""
    if len(data) < 4:
        return None
    flags, proto = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
    off, key = 4, None
    if flags & 0x8000:
        off += 4
    if flags & 0x2000:
        key = int.from_bytes(data[off : off + 4], "big")
        off += 4
    off += 4 * bool(flags & 0x1000) + 4 * bool(flags & 7 == 1 and flags & 0x0080)
    return flags, proto, key, off


def _outer_ip(pkt: object) -> IP | IPv6 | None:
    for layer in pkt.layers():  # type: ignore[attr-defined]
        if layer in (IP, IPv6):
            return pkt.getlayer(layer)  # type: ignore[attr-defined]
    return None


def decode_all(ip: IP | IPv6) -> list[Decoded]:
    """Every decoder of the tunnel modules that accepts this IP packet's payload."""
    v6 = isinstance(ip, IPv6)
    proto = ip.nh if v6 else ip.proto
    if not v6 and ip.frag:
        return []
    payload = bytes(ip.payload)
    if not v6:
        payload = payload[: max(0, ip.len - ip.ihl * 4)]
    ctx = PacketContext(src=ip.src, dst=ip.dst, ip_proto=proto)
    found: list[Decoded] = []
    if proto == 17 and len(payload) >= 8:
        ctx.sport, ctx.dport = int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:4])
        body = payload[8:]
        for d in DECODERS:
            if d.transport == "udp" and (got := d.decode(body, ctx, None)):
                found.append(got)
    elif proto == 47 and (gre := _gre(payload)):
        ctx.gre_flags, ctx.gre_proto, ctx.gre_key, off = gre
        for d in DECODERS:
            if d.transport == "gre" and ctx.gre_proto in d.gre_types:
                found.extend(x for x in [d.decode(payload[off:], ctx, None)] if x)
    else:
        for d in DECODERS:
            if d.transport == "ip" and proto in d.ip_protos:
                found.extend(x for x in [d.decode(payload, ctx, None)] if x)
    return found


def census(name: str) -> Counter[str]:
    """How many packets of the capture decode as each protocol ("" for none); a packet that
    two decoders accept counts as "a+b"."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    seen: Counter[str] = Counter()
    for pkt in rdpcap(str(path)):
        ip = _outer_ip(pkt)
        if ip is None:
            continue
        seen["+".join(sorted(d.protocol for d in decode_all(ip)))] += 1
    return seen


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # 36 trailing IP fragments carry no UDP header; first fragments still decode.
        ("zeek/gtp1_gn_normal_incl_fragmentation.pcap", {"gtp-u": 72, "": 36}),
        ("arkime/gtp-u.pcap", {"gtp-u": 102}),
        ("arkime/gtp-iphone.pcap", {"gtp-u": 106}),
        ("zeek/ayiya3.pcap", {"ayiya": 35}),
        ("ndpi/capwap_data.pcapng", {"capwap": 14}),
        ("ndpi/wireguard.pcap", {"wireguard": 52}),
        ("tcpdump/espudp1.pcap", {"nat-t": 8}),
        ("arkime/IKEv2.pcap", {"esp": 162, "": 35}),
        ("tcpdump/02-sunrise-sunset-esp.pcap", {"esp": 8}),
        ("ndpi/4in4tunnel.pcap", {"ipip": 5}),
        ("suricata-verify/bug-7725-01/ip_in_ip.pcap", {"ipip": 6}),
        ("ndpi/6in4tunnel.pcap", {"6in4": 127}),
        ("zeek/ping6-in-ipv4.pcap", {"6in4": 10}),
        ("ndpi/4in6tunnel.pcap", {"4in6": 4}),
        ("zeek/gre-pptp.pcap", {"4in6": 2}),
        ("zeek/gre-sample.pcap", {"gre-ip": 40}),
        ("akvorado/gre-v4-key.pcap", {"gre-ip": 2}),
        ("tcpdump/pptp.pcap", {"gre-ppp": 1, "": 22}),
        ("zeek/gre-over-udp-4754.pcap", {"gre-udp": 14}),
        ("tcpdump/nsh-over-vxlan-gpe.pcap", {"vxlan-gpe": 1}),
        ("packetnet/l2tp.pcap", {"l2tp": 1}),
    ],
)
def test_real_capture_census(name: str, expected: dict[str, int]) -> None:
    assert dict(census(name)) == expected


@pytest.mark.parametrize(
    "name",
    ["tcpdump/isakmp4500.pcap", "ndpi/ipsec_isakmp_esp.pcap", "scapy/ikev2_nat_t.pcapng"],
)
def test_nat_t_splits_esp_from_ike(name: str) -> None:
    """On UDP 4500 every packet belongs to the NAT-T tunnel, and ESP is told apart from IKE
    (behind the zero non-ESP marker) and the one-byte keep-alive; IKE on 500 is nothing."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    kinds: Counter[str] = Counter()
    for pkt in rdpcap(str(path)):
        ip = _outer_ip(pkt)
        if ip is None or (ip.nh if isinstance(ip, IPv6) else ip.proto) != 17:
            continue
        udp = bytes(ip.payload)
        ports = {int.from_bytes(udp[:2], "big"), int.from_bytes(udp[2:4], "big")}
        body = udp[8:]
        esp = 4500 in ports and body[:4] != bytes(4) and len(body) > 1
        found = decode_all(ip)
        assert [d.protocol for d in found] == (["nat-t"] if 4500 in ports else []), ports
        if found:
            message = found[0].facts.get("message", "esp")
            assert (message == "esp") == esp, (message, body[:8].hex())
        kinds["esp" if esp else "ike"] += 1
    assert kinds["ike"] > 0


def test_various_gre_keepalives() -> None:
    # Returned keep-alives (GRE type 0, empty); the 0x8909 and CDP packets are not routed tunnels.
    seen = census("tcpdump/various_gre.pcap")
    assert seen["gre-keepalive"] == 8 and set(seen) == {"gre-keepalive", ""}


def test_pptp_inside_4in6_and_fields() -> None:
    path = REAL / "zeek/gre-pptp.pcap"
    if not path.exists():
        pytest.skip(f"{path} not present")
    for pkt in rdpcap(str(path)):
        outer = pkt[IPv6]
        (tun,) = decode_all(outer)
        inner = IP(tun.carried[0].data)
        (ppp,) = decode_all(inner)
        assert ppp.protocol == "gre-ppp" and ppp.carried[0].link == "ppp"
        assert ppp.session["call_id"] in (0x1780, 0x0011)


def test_gtp_and_vxlan_gpe_fields() -> None:
    pkt = rdpcap(str(REAL / "arkime/gtp-u.pcap"))[0]
    (got,) = decode_all(pkt[IP])
    assert got.session == {"teid": 1} and got.carried[0].data[0] == 0x45
    pkt = rdpcap(str(REAL / "tcpdump/nsh-over-vxlan-gpe.pcap"))[0]
    (got,) = decode_all(pkt[IP])
    assert got.session["vni"] == 0xFFFFFF and got.facts["next_protocol"] == 4
    assert got.carried[0].link == "ip"


def test_nsh_after_ethernet() -> None:
    # (suricata-verify's decode-nsh-type1 is the same packet with edited addresses and a stale
    # inner IPv4 checksum, so it is rightly rejected.)
    path = REAL / "tcpdump/nsh.pcap"
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = bytes(rdpcap(str(path))[0])
    assert raw[12:14] == b"\x89\x4f"
    got = nsh.NshGreDecoder().decode(raw[14:], PacketContext(gre_proto=0x894F), None)
    assert got is not None and got.protocol == "nsh" and got.carried
