"""Known protocols first: LISP, WCCP, AWS GWLB GENEVE and VXLAN with reserved bits are
recognised for what they are, and guesses without a magic number yield to registered ports."""

from __future__ import annotations

import struct

import pytest
from mwtest import heads
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from detector.protocols import registry
from detector.protocols.base import Decoder, PacketContext
from detector.protocols.geneve import Geneve
from detector.protocols.jmirror import JmirrorDecoder
from detector.protocols.lisp import LispControlDecoder, LispDataDecoder
from detector.protocols.netflow import NetflowDecoder
from detector.protocols.pcli import PcliDecoder
from detector.protocols.rpcap import RpcapStreamDecoder
from detector.protocols.vxlan import Vxlan, VxlanOnItsPort
from detector.protocols.wccp import WccpRedirectDecoder

INNER4 = bytes(IP(src="10.1.2.3", dst="10.9.8.7") / ICMP() / (b"p" * 24))
MAP_REQUEST = bytes(
    IP(src="10.0.123.2", dst="10.0.123.1") / UDP(sport=4342, dport=4342) / (b"\x10" + b"\0" * 31)
)
FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(INNER4))


def ctx(sport: int, dport: int) -> PacketContext:
    return PacketContext(src="192.0.2.1", dst="192.0.2.2", sport=sport, dport=dport)


def lisp_data(inner: bytes, flags: int = 0x48, iid: int = 100) -> bytes:
    return bytes([flags]) + b"\x00\x12\x34" + struct.pack("!I", iid << 8) + inner


class TestLisp:
    def test_data_plane_is_a_tunnel_not_jmirror(self) -> None:
        payload = lisp_data(INNER4)
        got = LispDataDecoder().decode(payload, ctx(4341, 4341), None)
        assert got is not None and got.kind == "tunnel" and got.protocol == "lisp"
        assert got.session["instance_id"] == 100 and got.carried[0].data == INNER4
        # The same bytes are a valid jmirror header: only the registered port tells them apart.
        assert JmirrorDecoder().decode(payload, ctx(4341, 4341), None) is not None
        assert registry.port_owner(JmirrorDecoder(), "udp", 4341, 4341) == "lisp"
        assert LispDataDecoder().prefilter(*heads([payload])).all()

    def test_nonce_and_map_version_exclude_each_other(self) -> None:
        assert LispDataDecoder().decode(lisp_data(INNER4, flags=0x90), ctx(1, 4341), None) is None

    def test_encapsulated_control_message(self) -> None:
        payload = b"\x80\x00\x00\x00" + MAP_REQUEST
        got = LispControlDecoder().decode(payload, ctx(4342, 4342), None)
        assert got is not None and got.kind == "tunnel"
        assert got.facts["message"] == "encapsulated-control" and got.header_len == 4
        # A 4-byte ECM header is also a PCLI CCCID; PCLI yields on 4342.
        assert PcliDecoder().decode(payload, ctx(4342, 4342), None) is not None
        assert registry.port_owner(PcliDecoder(), "udp", 4342, 4342) == "lisp-control"

    def test_map_register_carries_nothing(self) -> None:
        got = LispControlDecoder().decode(b"\x30" + b"\x00" * 27, ctx(4342, 4342), None)
        assert got is not None and not got.carried

    def test_unknown_message_type(self) -> None:
        assert LispControlDecoder().decode(b"\x90" + b"\x00" * 27, ctx(1, 4342), None) is None


def test_wccp_redirect_is_steering() -> None:
    dec = WccpRedirectDecoder()
    got = dec.decode(b"\x00\x5a\x00\x07" + INNER4, PacketContext(gre_proto=0x883E), None)
    assert got is not None and got.kind == "tunnel" and got.protocol == "wccp"
    assert got.session["service_id"] == 0x5A and "steering" in got.facts
    assert got.carried[0].data == INNER4
    v1 = dec.decode(INNER4, PacketContext(gre_proto=0x883E), None)
    assert v1 is not None and v1.facts["version"] == 1
    assert dec.decode(b"\x00\x5a\x00\x07" + b"\x99" * 40, PacketContext(), None) is None


def geneve(options: bytes, inner: bytes) -> bytes:
    return struct.pack("!BBHI", len(options) // 4, 0, 0x6558, 42 << 8) + options + inner


def test_gwlb_geneve_is_steering_and_other_geneve_is_not() -> None:
    gwlb_option = struct.pack("!HBB", 0x0108, 1, 2) + b"\x00" * 8
    got = Geneve().decode(geneve(gwlb_option, FRAME), ctx(1, 6081), None)
    assert (
        got is not None
        and got.kind == "tunnel"
        and "Gateway Load Balancer" in str(got.facts["steering"])
    )
    google = struct.pack("!HBB", 0x0132, 1, 2) + b"\x00" * 8
    other = Geneve().decode(geneve(google, FRAME), ctx(1, 6081), None)
    assert other is not None and other.kind == "mirror" and "steering" not in other.facts


def test_vxlan_with_reserved_bits_is_vxlan_on_its_port_only() -> None:
    payload = b"\x08\x00\x01\x00" + struct.pack("!I", 77 << 8 | 0x5A) + FRAME
    assert Vxlan().decode(payload, ctx(1, 4789), None) is None
    got = VxlanOnItsPort().decode(payload, ctx(1, 4789), None)
    assert got is not None and got.protocol == "vxlan" and got.session["vni"] == 77
    assert got.facts["reserved_bits"] != "0000000000"
    assert VxlanOnItsPort().prefilter(*heads([payload])).all()
    assert VxlanOnItsPort().decode(payload, ctx(1, 4790), None) is None
    assert VxlanOnItsPort.ports_required


@pytest.mark.parametrize(
    ("decoder", "transport", "port", "owner"),
    [
        (JmirrorDecoder(), "udp", 3503, "mpls-lsp-ping"),
        (JmirrorDecoder(), "udp", 4790, "vxlan-gpe"),
        (JmirrorDecoder(), "udp", 3544, "teredo"),
        (PcliDecoder(), "udp", 4789, "vxlan"),
        (PcliDecoder(), "udp", 3785, "bfd-echo"),
        (RpcapStreamDecoder(), "tcp", 445, "smb"),
        (RpcapStreamDecoder(), "tcp", 80, "http"),
        (RpcapStreamDecoder(), "tcp", 3260, "iscsi"),
        (RpcapStreamDecoder(), "tcp", 111, "onc-rpc portmapper"),
        (NetflowDecoder(), "udp", 3503, "mpls-lsp-ping"),
    ],
)
def test_registered_ports_have_owners(
    decoder: Decoder, transport: str, port: int, owner: str
) -> None:
    assert registry.port_owner(decoder, transport, 51000, port) == owner
    # Either end: a server answers from its registered port.
    assert registry.port_owner(decoder, transport, port, 51000) == owner


def test_own_and_unregistered_ports_have_no_owner() -> None:
    assert registry.port_owner(JmirrorDecoder(), "udp", 51000, 30030) is None
    assert registry.port_owner(RpcapStreamDecoder(), "tcp", 2002, 445) is None
    assert registry.port_owner(PcliDecoder(), "udp", 51000, 40123) is None
    # A port is registered per transport: UDP 80 is nobody's.
    assert registry.port_owner(PcliDecoder(), "udp", 51000, 80) is None
    assert all(not d.heuristic for d in (LispDataDecoder(), Vxlan(), WccpRedirectDecoder()))
    assert all(d.heuristic for d in (JmirrorDecoder(), PcliDecoder(), RpcapStreamDecoder()))
