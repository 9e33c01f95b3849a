"""Lawful-intercept shims and remote-capture formats over UDP: PCLI, jmirror, Nokia LI, BCM LI,
peekremote, CWIDS, rpcap over UDP.  Packets are built from the specs around real scapy packets."""

from __future__ import annotations

import random
import struct
import time

import pytest
from mwtest import heads as head_of
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, SNAP, Dot1Q, Ether

from detector.protocols.base import Decoded, Decoder, PacketContext
from detector.protocols.bcm_li import BcmLiDecoder
from detector.protocols.cwids import CwidsDecoder
from detector.protocols.jmirror import JmirrorDecoder
from detector.protocols.nokia_li import NokiaLiDecoder
from detector.protocols.pcli import NTP_UNIX_OFFSET, PcliDecoder
from detector.protocols.peekremote import PeekremoteDecoder
from detector.protocols.rpcap import RpcapUdpDecoder

CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40000, dport=9000)

IPV4 = bytes(IP(src="10.1.2.3", dst="10.9.8.7") / ICMP(id=7, seq=1) / (b"ping" * 8))
IPV6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5353, dport=53) / (b"q" * 12))
ETH = bytes(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / IP(IPV4))
# A short frame padded to the Ethernet minimum, as switches copy it.
ETH_SMALL = bytes(
    Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / IP(dst="10.0.0.1") / ICMP()
)
ETH_PADDED = ETH_SMALL + bytes(60 - len(ETH_SMALL))
ETH_VLAN = bytes(
    Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / Dot1Q(vlan=42) / IP(IPV4)
)
DNS_QUERY = bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="example.com")))
WLAN = bytes(
    Dot11(
        type=2,
        subtype=0,
        FCfield=1,
        addr1="00:0b:86:00:00:01",
        addr2="00:11:22:33:44:55",
        addr3="00:0b:86:00:00:01",
    )
    / LLC()
    / SNAP()
    / IP(IPV4)
)
FCS = b"\xde\xad\xbe\xef"


def passes(decoder: Decoder, payload: bytes) -> bool:
    head, length = head_of([payload])
    return bool(decoder.prefilter(head, length)[0])


def accept(decoder: Decoder, payload: bytes, ctx: PacketContext = CTX) -> Decoded:
    """Decode, and check the prefilter lets the payload through (it may never miss one)."""
    found = decoder.decode(payload, ctx, decoder.new_state())
    assert found is not None
    assert passes(decoder, payload)
    assert found.protocol == decoder.name and found.kind == decoder.kind
    return found


def rejects(decoder: Decoder, payload: bytes) -> bool:
    return decoder.decode(payload, CTX, decoder.new_state()) is None


# -- PCLI --------------------------------------------------------------------------------------


def ntp_now() -> bytes:
    now = time.time() + NTP_UNIX_OFFSET
    return struct.pack("!II", int(now), int((now % 1) * 2**32))


class TestPcli:
    dec = PcliDecoder()

    def test_cccid_and_ipv4(self) -> None:
        found = accept(self.dec, struct.pack("!I", 12345) + IPV4)
        assert found.session == {"cccid": 12345}
        assert found.facts["variant"] == "pcli"
        assert found.carried[0].link == "ip" and found.carried[0].data == IPV4
        assert found.header_len == 4 and found.strength < 1
        assert found.header.startswith("00 00 30 39")

    def test_ipv6_payload(self) -> None:
        found = accept(self.dec, struct.pack("!I", 7) + IPV6)
        assert found.carried[0].data == IPV6

    def test_ntp_timestamp_variant(self) -> None:
        found = accept(self.dec, struct.pack("!I", 99) + ntp_now() + IPV4)
        assert found.facts["variant"] == "pcli12"
        assert abs(found.facts["timestamp"] - time.time()) < 60
        assert found.header_len == 12

    def test_case_id_variant_with_ethernet(self) -> None:
        payload = struct.pack("!I", 5) + ntp_now() + struct.pack("!Q", 0xCA5E) + ETH
        found = accept(self.dec, payload)
        assert found.session == {"cccid": 5, "case_id": 0xCA5E}
        assert found.carried[0].link == "ethernet" and found.carried[0].data == ETH

    def test_eight_byte_variant(self) -> None:
        found = accept(self.dec, struct.pack("!II", 1, 2) + IPV4)
        assert found.facts["variant"] == "pcli8"

    def test_implausible_timestamp_is_not_the_12_byte_form(self) -> None:
        # 1968 is neither in NTP era 0 after 2000 nor early era 1.
        assert rejects(self.dec, struct.pack("!III", 1, 0x8000_0000, 0) + IPV4)

    @pytest.mark.parametrize(
        "payload",
        [
            DNS_QUERY,
            struct.pack("!I", 1) + IPV4 + b"\x00",  # IP length does not reach the end
            struct.pack("!I", 1) + IPV4[:-1],
            struct.pack("!I", 1) + IPV4[:10] + b"\x00\x00" + IPV4[12:],  # checksum wrong
            struct.pack("!I", 1) + ETH + b"x" * 30,  # frame followed by junk
            bytes(range(80)),
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


# -- jmirror and Nokia ------------------------------------------------------------------------


class TestJmirror:
    dec = JmirrorDecoder()

    def test_mhv0_ipv4(self) -> None:
        ctx = PacketContext(src="192.0.2.1", dst="192.0.2.9", udp_checksum=0)
        found = accept(self.dec, struct.pack("!II", 0x0000_1234, 0xABCDEF) + IPV4, ctx)
        assert found.session == {"intercept_id": 0x1234, "session_id": 0xABCDEF, "mhv": 0}
        assert found.carried[0].data == IPV4
        assert found.strength == 0.7 and found.facts["udp_checksum_zero"] is True

    def test_mhv1_ipv6(self) -> None:
        found = accept(self.dec, struct.pack("!II", 0x4000_0009, 3) + IPV6)
        assert found.session["mhv"] == 1 and found.session["intercept_id"] == 9
        assert found.facts["ip_version"] == 6

    @pytest.mark.parametrize(
        "payload",
        [
            struct.pack("!II", 0x8000_0001, 1) + IPV4,  # MHV 2 is undefined
            struct.pack("!II", 1, 1) + ETH,  # jmirror carries IP, not Ethernet
            struct.pack("!II", 1, 1) + IPV4 + b"\x00\x00",
            DNS_QUERY,
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


class TestNokiaLi:
    dec = NokiaLiDecoder()

    def test_direction_bit_and_29_bit_id(self) -> None:
        word = (1 << 30) | (1 << 29) | 0x1ABCDEF
        found = accept(self.dec, struct.pack("!II", word, 77) + ETH_VLAN)
        assert found.session == {"intercept_id": 0x1ABCDEF, "session_id": 77, "mhv": 1}
        assert found.carried[0].direction == "to-target"
        assert found.carried[0].link == "ethernet" and found.carried[0].data == ETH_VLAN

    def test_mhv0_padded_small_frame(self) -> None:
        found = accept(self.dec, struct.pack("!II", 0x3FFF_FFFF, 1) + ETH_PADDED)
        assert found.session["intercept_id"] == 0x3FFF_FFFF
        assert found.carried[0].direction is None

    @pytest.mark.parametrize(
        "payload",
        [
            struct.pack("!II", 5, 1) + ETH + bytes(40),  # more than padding + FCS after the packet
            struct.pack("!II", 0xC000_0005, 1) + ETH,  # MHV 3
            struct.pack("!II", 5, 1) + ETH[:20],
            DNS_QUERY,
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


# -- BCM QMX LI -------------------------------------------------------------------------------


def bcm(d: int, pt: int, spt: int, liid: int) -> bytes:
    return struct.pack("!I", (d << 29) | (pt << 25) | (spt << 22) | liid)


class TestBcmLi:
    dec = BcmLiDecoder()

    def test_upstream_untagged_ethernet(self) -> None:
        found = accept(self.dec, bcm(3, 7, 3, 4194301) + ETH)
        assert found.session == {"liid": 4194301}
        assert found.facts == {"direction": "upstream", "packet_type": 7, "sub_type": "untagged"}
        assert found.carried[0].direction == "from-target" and found.carried[0].data == ETH

    def test_downstream_single_tagged(self) -> None:
        found = accept(self.dec, bcm(2, 7, 1, 17) + ETH_VLAN)
        assert found.carried[0].direction == "to-target"

    def test_ipv4_packet_type(self) -> None:
        found = accept(self.dec, bcm(2, 5, 0, 1) + IPV4)
        assert found.carried[0].link == "ip"

    def test_keepalive(self) -> None:
        found = accept(self.dec, bcm(0, 7, 0, 4))
        assert found.facts["direction"] == "keepalive" and not found.carried
        assert found.strength < 0.5

    @pytest.mark.parametrize(
        "payload",
        [
            bcm(3, 7, 2, 1) + ETH,  # says double-tagged, frame is untagged
            bcm(3, 6, 0, 1) + IPV4,  # says IPv6, carries IPv4
            bcm(1, 7, 3, 1) + ETH,  # direction 1 is undefined
            bcm(0, 7, 0, 1) + ETH,  # keepalives carry nothing
            DNS_QUERY,
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


# -- peekremote -------------------------------------------------------------------------------


def peek_new(frame: bytes, channel: int = 36) -> bytes:
    fields = struct.pack(
        "!IHHIII4B8xHHBBQ", 6, 7, channel, 5180, 2, 0x80, 60, 10, 0xC4, 0xA0,
        len(frame), len(frame), 0, 0, 123456,
    )  # fmt: skip
    return b"\x00\xff\xab\xcd" + b"\x02" + struct.pack("!I", 55) + fields + frame


def peek_legacy(frame: bytes, flags: int = 0, channel: int = 6) -> bytes:
    hdr = struct.pack("!bbHHBBQBBBB", -40, -95, len(frame), 0, flags, 0, 99, 108, channel, 70, 5)
    return hdr + frame


class TestPeekremote:
    dec = PeekremoteDecoder()

    def test_new_header(self) -> None:
        found = accept(self.dec, peek_new(WLAN + FCS))
        assert found.strength == 1.0 and found.header_len == 55
        assert found.facts["channel"] == 36 and found.facts["lengths_agree"] is True
        assert found.carried[0].link == "ieee80211" and found.carried[0].data == WLAN

    def test_legacy_header(self) -> None:
        found = accept(self.dec, peek_legacy(WLAN + FCS))
        assert found.facts["header"] == "legacy" and found.facts["channel"] == 6
        assert found.carried[0].data == WLAN and found.strength < 1

    @pytest.mark.parametrize(
        "payload",
        [
            peek_legacy(WLAN + FCS, flags=0x10),  # reserved flag bit
            peek_legacy(WLAN + FCS, channel=0),
            peek_legacy(WLAN + FCS) + b"extra",  # length disagrees
            DNS_QUERY,
            IPV4,
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


# -- CWIDS ------------------------------------------------------------------------------------


def cwids_record(frame: bytes, real: int | None = None, version: int = 1) -> bytes:
    real = len(frame) if real is None else real
    return struct.pack("!H6sxB6xHH8x", version, b"\x00" * 6, 11, real, len(frame)) + frame


class TestCwids:
    dec = CwidsDecoder()

    def test_records_chain(self) -> None:
        ack = bytes(Dot11(type=1, subtype=13, addr1="00:11:22:33:44:55"))
        found = accept(self.dec, cwids_record(WLAN) + cwids_record(ack, real=14))
        assert found.facts == {"version": 1, "records": 2, "channel": 11}
        assert [c.data for c in found.carried] == [WLAN, ack]
        assert found.carried[1].orig_len == 14 and found.strength > 0.5

    @pytest.mark.parametrize(
        "payload",
        [
            cwids_record(WLAN) + b"\x00" * 5,  # does not chain to the end
            cwids_record(WLAN, real=10),  # captured more than the original
            cwids_record(WLAN) + cwids_record(WLAN, version=2),
            DNS_QUERY,
        ],
    )
    def test_look_alikes(self, payload: bytes) -> None:
        assert rejects(self.dec, payload)


# -- rpcap over UDP ---------------------------------------------------------------------------


def rpcap_packet(frame: bytes, npkt: int = 1) -> bytes:
    body = struct.pack("!IIIII", 1700000000, 5, len(frame), len(frame) + 10, npkt) + frame
    return struct.pack("!BBHI", 0, 7, 0, len(body)) + body


class TestRpcapUdp:
    dec = RpcapUdpDecoder()

    def test_packet_datagram(self) -> None:
        found = accept(self.dec, rpcap_packet(ETH, npkt=42))
        assert found.facts == {"message": "packet", "caplen": len(ETH), "npkt": 42}
        assert found.carried[0].link == "ethernet" and found.carried[0].orig_len == len(ETH) + 10

    def test_look_alikes(self) -> None:
        assert rejects(self.dec, rpcap_packet(ETH) + b"\x00")
        assert rejects(self.dec, b"\x00\x01" + rpcap_packet(ETH)[2:])
        assert rejects(self.dec, DNS_QUERY)


# -- every UDP decoder: never raises, prefilter never misses ----------------------------------

SAMPLES = {
    PcliDecoder(): [struct.pack("!I", 1) + ntp_now() + IPV4, struct.pack("!I", 1) + ETH],
    JmirrorDecoder(): [struct.pack("!II", 1, 2) + IPV6],
    NokiaLiDecoder(): [struct.pack("!II", 1, 2) + ETH_VLAN],
    BcmLiDecoder(): [bcm(3, 7, 1, 9) + ETH_VLAN],
    PeekremoteDecoder(): [peek_new(WLAN + FCS), peek_legacy(WLAN + FCS)],
    CwidsDecoder(): [cwids_record(WLAN) * 2],
    RpcapUdpDecoder(): [rpcap_packet(ETH)],
}


@pytest.mark.parametrize("decoder", list(SAMPLES), ids=lambda d: d.name)
def test_garbage_and_truncations(decoder: Decoder) -> None:
    rng = random.Random(1234)
    payloads = [b""] + [rng.randbytes(rng.randrange(0, 200)) for _ in range(300)]
    for sample in SAMPLES[decoder]:
        payloads += [sample[:n] for n in range(len(sample))]
        flipped = bytearray(sample)
        for _ in range(100):
            i = rng.randrange(len(sample))
            flipped[i] ^= 1 << rng.randrange(8)
            payloads.append(bytes(flipped))
    head, length = head_of(payloads)
    mask = decoder.prefilter(head, length)
    accepted = 0
    for payload, passed in zip(payloads, mask, strict=True):
        found = decoder.decode(payload, CTX, decoder.new_state())  # must not raise
        if found is not None:
            accepted += 1
            assert passed, f"prefilter missed {payload[:24].hex()}"
    # Random bytes are (nearly) never taken for these formats.
    assert accepted < 0.2 * len(payloads)


@pytest.mark.parametrize("decoder", list(SAMPLES), ids=lambda d: d.name)
def test_prefilter_rejects_ordinary_traffic(decoder: Decoder) -> None:
    rng = random.Random(99)
    tls = bytes.fromhex("160301020001") + rng.randbytes(200)
    quic = bytes([0xC3, 0, 0, 0, 1]) + rng.randbytes(1200)
    ordinary = [DNS_QUERY, tls, quic] + [rng.randbytes(rng.randrange(30, 1400)) for _ in range(500)]
    head, length = head_of(ordinary)
    assert int(decoder.prefilter(head, length).sum()) <= 5
