"""LI handover and remote-capture formats over TCP: ETSI TS 102 232-1 PS-PDUs, TS 101 671 HI2,
TS 103 221-2 X2/X3, rpcap control and data, PCAP-over-IP.  PDUs are built from the specs (BER
layouts as libwandder writes them) around real scapy packets, and fed whole, split at awkward
boundaries, and several to a segment."""

from __future__ import annotations

import io
import itertools
import random
import struct
import uuid

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter
from test_proto_intercept import head_of

from detector.protocols import ber
from detector.protocols.base import Decoded, PacketContext, StreamDecoder
from detector.protocols.etsi_102232 import Etsi102232Decoder, EtsiHi2Decoder
from detector.protocols.etsi_x2x3 import EtsiX2X3Decoder
from detector.protocols.pcap_over_ip import PcapOverIpDecoder
from detector.protocols.rpcap import RpcapStreamDecoder

CTX = PacketContext(src="192.0.2.10", dst="198.51.100.20", sport=51000, dport=44445)
PING = bytes(IP(src="10.0.0.5", dst="10.0.0.9") / ICMP(id=3, seq=9) / (b"abcdefgh" * 7))
FRAMES = [
    bytes(Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb") / IP(PING)),
    bytes(Ether(src="00:11:22:33:44:66", dst="66:77:88:99:aa:bb") / IP(dst="10.1.1.1") / TCP()),
]


def classify(decoder: StreamDecoder, segment: bytes) -> Decoded | None:
    """Single-segment decode; when it accepts, the prefilter must have let the segment through."""
    found = decoder.decode(segment, CTX, decoder.new_state())
    if found is not None:
        head, length = head_of([segment])
        assert decoder.prefilter(head, length)[0], segment[:32].hex()
    return found


def feed_in_pieces(decoder: StreamDecoder, stream: bytes, cuts: list[int]) -> list[Decoded]:
    state = decoder.new_state()
    out: list[Decoded] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for a, b in itertools.pairwise(bounds):
        out += decoder.feed(stream[a:b], CTX, state)
    return out


def summary(found: list[Decoded]) -> list[tuple]:
    return [
        (d.protocol, sorted(d.session.items()), d.facts.get("pdu"), [c.data for c in d.carried])
        for d in found
    ]


# -- BER building blocks (definite lengths; libwandder writes the long form for the PDU) -------


def tlv(ident: int, value: bytes, long_form: bool = False) -> bytes:
    n = len(value)
    if long_form:
        length = b"\x82" + n.to_bytes(2, "big")
    elif n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([ident]) + length + value


def integer(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)


DOMAIN_X690 = bytes.fromhex("04000202050111")
DOMAIN_LEGACY = bytes.fromhex("0400020205011100")
DOMAIN_CYBERPROBE = bytes.fromhex("00040002020501")
IPCC_OID = bytes.fromhex("05030a02")
IPIRI_OID = bytes.fromhex("05030a01")


def ps_header(domain: bytes = DOMAIN_LEGACY, seq: int = 7, liid: bytes = b"LIID-TEST1") -> bytes:
    netid = tlv(0xA0, tlv(0x80, b"WAND") + tlv(0x81, b"ne-01"))
    cid = tlv(0xA3, netid + tlv(0x81, integer(1234)) + tlv(0x82, b"NZ"))
    return tlv(
        0xA1,
        tlv(0x80, domain)
        + tlv(0x81, liid)
        + tlv(0x82, b"NZ")
        + cid
        + tlv(0x84, integer(seq))
        + tlv(0x85, b"20240301101500.250Z"),
    )


def cc_payload(packet: bytes, direction: int = 0) -> bytes:
    ipcc = tlv(0xA2, tlv(0x80, IPCC_OID) + tlv(0xA1, tlv(0x80, packet)))
    item = tlv(0x30, tlv(0x80, bytes([direction])) + tlv(0xA2, ipcc))
    return tlv(0xA2, tlv(0xA1, item))


def iri_payload() -> bytes:
    ipiri = tlv(0xA2, tlv(0x80, IPIRI_OID) + tlv(0xA1, tlv(0x80, b"\x04")))
    item = tlv(0x30, tlv(0x80, b"\x01") + tlv(0xA2, ipiri))
    return tlv(0xA2, tlv(0xA0, item))


KEEPALIVE = tlv(0xA2, tlv(0xA2, b"\x83\x00"))
KEEPALIVE_RESPONSE = tlv(0xA2, tlv(0xA2, b"\x84\x00"))


def ps_pdu(payload: bytes, **header: object) -> bytes:
    return tlv(0x30, ps_header(**header) + payload, long_form=True)  # type: ignore[arg-type]


class TestEtsi102232:
    dec = Etsi102232Decoder()

    def test_cc_pdu(self) -> None:
        pdu = ps_pdu(cc_payload(PING))
        # The catalog's first bytes of libtrace's etsi_10_pings.pcap: long-form PDU length,
        # pSHeader, the legacy 8-byte domain id, a 10-byte LIID.
        assert pdu[:2] == bytes.fromhex("3082")
        assert pdu[4:18] == bytes.fromhex("a1") + pdu[5:6] + bytes.fromhex(
            "80080400020205011100810a"
        )
        found = classify(self.dec, pdu)
        assert found is not None and found.strength == 1.0
        assert found.session == {
            "liid": "LIID-TEST1",
            "operator": "WAND",
            "network_element": "ne-01",
            "cin": 1234,
        }
        assert found.facts["pdu"] == "cc" and found.facts["sequence"] == 7
        assert found.facts["ps_version"] == 17 and found.facts["domain_id_encoding"] == "legacy"
        assert found.facts["service"] == "ip" and found.facts["cc_packets"] == 1
        assert found.carried[0].link == "ip" and found.carried[0].data == PING
        assert found.carried[0].direction == "from-target"
        assert "0.4.0.2.2.5.1.17.0" in found.header and "LIID 'LIID-TEST1'" in found.header

    @pytest.mark.parametrize(
        ("domain", "encoding"),
        [(DOMAIN_X690, "x690"), (DOMAIN_LEGACY, "legacy"), (DOMAIN_CYBERPROBE, "cyberprobe")],
    )
    def test_domain_id_encodings(self, domain: bytes, encoding: str) -> None:
        found = classify(self.dec, ps_pdu(cc_payload(PING, direction=1), domain=domain))
        assert found is not None and found.facts["domain_id_encoding"] == encoding
        assert found.carried[0].direction == "to-target"

    def test_iri_pdu(self) -> None:
        found = classify(self.dec, ps_pdu(iri_payload(), seq=1))
        assert found is not None and not found.carried
        assert found.facts["pdu"] == "iri" and found.facts["iri_type"] == "begin"
        assert found.facts["service_oid"] == "5.3.10.1"

    @pytest.mark.parametrize(
        ("payload", "kind"), [(KEEPALIVE, "keepalive"), (KEEPALIVE_RESPONSE, "keepalive-response")]
    )
    def test_keepalives(self, payload: bytes, kind: str) -> None:
        # The catalog's bytes: tRIPayload [2] holding keep-alive [3] / keep-alive-response [4].
        assert payload[-4:] in (bytes.fromhex("a2028300"), bytes.fromhex("a2028400"))
        found = classify(self.dec, ps_pdu(payload))
        assert found is not None and found.facts["pdu"] == kind

    def test_start_of_a_pdu_in_one_segment(self) -> None:
        pdu = ps_pdu(cc_payload(PING))
        found = classify(self.dec, pdu[:70])
        assert found is not None and found.session["liid"] == "LIID-TEST1"
        assert found.strength < 1 and not found.carried

    def test_stream_split_at_awkward_boundaries(self) -> None:
        stream = b"".join(
            [ps_pdu(KEEPALIVE, seq=1), ps_pdu(cc_payload(PING), seq=2), ps_pdu(iri_payload())]
        )
        whole = feed_in_pieces(self.dec, stream, [])
        assert [d.facts["pdu"] for d in whole] == ["keepalive", "cc", "iri"]
        assert [d.facts["sequence"] for d in whole] == [1, 2, 7]
        for cuts in ([1], [2, 3, 4], [len(stream) - 1], list(range(1, len(stream), 7))):
            assert summary(feed_in_pieces(self.dec, stream, cuts)) == summary(whole)
        rng = random.Random(5)
        for _ in range(20):
            cuts = rng.sample(range(1, len(stream)), 5)
            assert summary(feed_in_pieces(self.dec, stream, cuts)) == summary(whole)

    def test_keepalive_only_stream(self) -> None:
        stream = b"".join(ps_pdu(KEEPALIVE, seq=n) for n in range(5))
        found = feed_in_pieces(self.dec, stream, [13, 40, 41])
        assert [d.facts["pdu"] for d in found] == ["keepalive"] * 5
        assert all(not d.carried for d in found)

    def test_stream_that_is_not_etsi_stays_silent(self) -> None:
        state = self.dec.new_state()
        assert self.dec.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", CTX, state) == []
        assert self.dec.feed(ps_pdu(KEEPALIVE), CTX, state) == []

    @pytest.mark.parametrize(
        "pdu",
        [
            ps_pdu(cc_payload(PING), domain=bytes.fromhex("0400020201")),  # not the PS domain
            tlv(0x30, tlv(0xA2, b"\x83\x00") + ps_header()),  # header not first
            tlv(0x30, ps_header() + b"\xa2\x05\x00"),  # payload TLV overruns the PDU
            bytes.fromhex("160303004a0200004603035f"),  # TLS
            tlv(0x30, tlv(0x02, b"\x01") + tlv(0x04, b"snmp-ish")),
        ],
        ids=["hi2-domain", "header-not-first", "overrun", "tls", "snmp-like"],
    )
    def test_look_alikes(self, pdu: bytes) -> None:
        state = self.dec.new_state()
        assert self.dec.feed(pdu + b"\x00" * 16, CTX, state) == []


def hi2_record(record_tag: int = 0xA1) -> bytes:
    cid = tlv(0xA2, tlv(0x80, b"CIN-77") + tlv(0xA1, tlv(0x80, b"OPER")))
    return tlv(
        record_tag,
        tlv(0x80, bytes.fromhex("040002020112"))  # hi2OperationId version 18
        + tlv(0x81, b"LIID-HI2")
        + cid
        + tlv(0xA3, tlv(0x81, b"20240301101500Z")),
    )


class TestEtsiHi2:
    dec = EtsiHi2Decoder()

    def test_iri_begin_record(self) -> None:
        found = classify(self.dec, hi2_record())
        assert found is not None and found.protocol == "etsi-hi2" and found.kind == "intercept"
        assert found.session == {"liid": "LIID-HI2", "cin": "CIN-77", "operator": "OPER"}
        assert found.facts == {"pdu": "iri", "iri_type": "begin", "domain_id": "0.4.0.2.2.1.18"}

    def test_record_inside_a_rose_invoke(self) -> None:
        invoke = tlv(0xA1, tlv(0x02, b"\x01") + tlv(0x02, b"\x01") + hi2_record(0xA2))
        found = classify(self.dec, invoke)
        assert found is not None and found.facts["iri_type"] == "end"

    def test_eps_domain(self) -> None:
        record = tlv(0xA4, tlv(0x80, bytes.fromhex("0400020204081001")) + tlv(0x81, b"L"))
        found = classify(self.dec, record)
        assert found is not None and found.facts["domain_id"] == "0.4.0.2.2.4.8.16.1"

    def test_stream_of_records(self) -> None:
        stream = hi2_record() + hi2_record(0xA3) + hi2_record(0xA2)
        found = feed_in_pieces(self.dec, stream, [3, 30, 31])
        assert [d.facts["iri_type"] for d in found] == ["begin", "continue", "end"]

    def test_ps_pdus_are_not_hi2(self) -> None:
        assert classify(self.dec, ps_pdu(cc_payload(PING))) is None
        assert classify(self.dec, tlv(0x30, tlv(0x02, b"\x05") + tlv(0x04, b"x" * 20))) is None


# -- X2/X3 -------------------------------------------------------------------------------------

XID = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")


def x2x3(
    ptype: int,
    payload: bytes = b"",
    fmt: int = 0,
    direction: int = 0,
    attrs: bytes = b"",
    xid: bytes = XID.bytes,
    version: int = 5,
) -> bytes:
    hlen = 40 + len(attrs)
    fixed = struct.pack("!HHIIHH16sQ", version, ptype, hlen, len(payload), fmt, direction, xid, 99)
    return fixed + attrs + payload


def attr(atype: int, value: bytes) -> bytes:
    return struct.pack("!HH", atype, len(value)) + value


def keepalive_ack(seq: int) -> bytes:
    # OpenLI's keepalive ack: version 5, type 4, header 48 (one sequence-number attribute).
    return x2x3(4, attrs=attr(8, struct.pack("!I", seq)), xid=bytes(16))


class TestEtsiX2X3:
    dec = EtsiX2X3Decoder()

    def test_x3_ipv4_cc(self) -> None:
        attrs = attr(8, struct.pack("!I", 41)) + attr(17, b"sip:target@example.net")
        found = classify(self.dec, x2x3(2, PING, fmt=5, direction=3, attrs=attrs))
        assert found is not None and found.session == {"xid": str(XID)}
        assert found.facts["pdu_type"] == "x3-cc" and found.facts["payload_format"] == "ipv4"
        assert found.facts["sequence"] == 41 and found.facts["target"] == "sip:target@example.net"
        assert found.facts["correlation_id"] == 99
        assert found.carried[0].link == "ip" and found.carried[0].data == PING
        assert found.carried[0].direction == "from-target"
        assert found.header.startswith("00 05 00 02")

    def test_x3_ethernet_cc(self) -> None:
        found = classify(self.dec, x2x3(2, FRAMES[0], fmt=7, direction=2))
        assert found is not None and found.carried[0].link == "ethernet"
        assert found.carried[0].direction == "to-target"

    def test_x2_iri_carries_no_packet(self) -> None:
        found = classify(self.dec, x2x3(1, b"\x30\x03\x02\x01\x01", fmt=2, version=1))
        assert found is not None and found.facts["pdu_type"] == "x2-iri" and not found.carried

    def test_keepalive_only_stream(self) -> None:
        stream = b"".join(
            x2x3(3, attrs=attr(8, struct.pack("!I", n)), xid=bytes(16)) + keepalive_ack(n)
            for n in range(3)
        )
        found = feed_in_pieces(self.dec, stream, [1, 39, 40, 47, 50, 100])
        assert [d.facts["pdu_type"] for d in found] == ["keepalive", "keepalive-ack"] * 3
        assert [d.facts["sequence"] for d in found] == [0, 0, 1, 1, 2, 2]
        assert all(not d.session and not d.carried for d in found)

    def test_several_pdus_in_one_segment(self) -> None:
        stream = keepalive_ack(1) + x2x3(2, PING, fmt=5, direction=3) + keepalive_ack(2)
        found = self.dec.feed(stream, CTX, self.dec.new_state())
        assert [d.facts["pdu_type"] for d in found] == ["keepalive-ack", "x3-cc", "keepalive-ack"]

    def test_start_of_a_pdu(self) -> None:
        found = classify(self.dec, x2x3(2, PING, fmt=5, direction=3)[:50])
        assert found is not None and found.strength < 1 and not found.carried

    @pytest.mark.parametrize(
        "pdu",
        [
            x2x3(2, PING, fmt=5, attrs=attr(8, b"\x00" * 4)[:-1]),  # TLV overruns header
            x2x3(5, PING, fmt=5),  # PDU type 5
            x2x3(2, PING, fmt=5, version=9),
            x2x3(3, PING, fmt=5),  # keepalive with a payload
            struct.pack("!HHII", 1, 1, 39, 0) + bytes(31),  # header length below 40
        ],
    )
    def test_look_alikes(self, pdu: bytes) -> None:
        assert self.dec.feed(pdu, CTX, self.dec.new_state()) == []


# -- rpcap -------------------------------------------------------------------------------------


def rpcap_msg(mtype: int, body: bytes = b"", value: int = 0) -> bytes:
    return struct.pack("!BBHI", 0, mtype, value, len(body)) + body


def rpcap_packet(frame: bytes, npkt: int) -> bytes:
    return rpcap_msg(7, struct.pack("!IIIII", 1700000000, 1, len(frame), len(frame), npkt) + frame)


class TestRpcap:
    dec = RpcapStreamDecoder()

    def test_control_connection(self) -> None:
        server = PacketContext(src="203.0.113.50", dst="192.0.2.2", sport=2002, dport=40001)
        client_side = (
            rpcap_msg(8, struct.pack("!HHHH", 1, 0, 4, 6) + b"userpasswd")
            + rpcap_msg(3, b"eth0")
            + rpcap_msg(4, struct.pack("!IIHH", 65535, 1000, 0, 0) + struct.pack("!HHI", 0, 0, 0))
        )
        found = self.dec.feed(client_side, CTX, self.dec.new_state())
        assert [d.facts["message"] for d in found] == ["auth", "open", "startcap"]
        assert found[1].facts["device"] == "eth0" and all(d.facts["control"] for d in found)
        replies = rpcap_msg(0x88) + rpcap_msg(0x83, struct.pack("!ii", 105, 0))
        found = self.dec.feed(replies, server, self.dec.new_state())
        assert found[1].facts == {"message": "open-reply", "control": True, "linktype": 105}
        # The data connection from the same server carries 802.11 frames, per the OPEN reply.
        data = self.dec.feed(rpcap_packet(b"\x08\x00" + bytes(22), 1), server, self.dec.new_state())
        assert data[0].carried[0].link == "ieee80211"

    def test_data_stream_without_control(self) -> None:
        stream = b"".join(rpcap_packet(f, n) for n, f in enumerate(FRAMES * 2))
        whole = feed_in_pieces(self.dec, stream, [])
        assert [d.facts["npkt"] for d in whole] == [0, 1, 2, 3]
        assert [c.data for d in whole for c in d.carried] == FRAMES * 2
        assert all(d.carried[0].link == "ethernet" for d in whole)
        assert summary(feed_in_pieces(self.dec, stream, [5, 8, 27, 28, 29])) == summary(whole)
        assert classify(self.dec, stream[:60]) is not None

    @pytest.mark.parametrize(
        "segment",
        [
            b"GET / HTTP/1.1\r\n\r\n",
            rpcap_msg(0x86),  # CLOSE has no reply
            rpcap_msg(3, b""),  # OPEN without a device
            rpcap_msg(0x83, b"\x00" * 4),  # OPEN reply is 8 bytes
            rpcap_msg(8, struct.pack("!HHHH", 1, 0, 4, 6) + b"user"),  # string lengths disagree
            rpcap_msg(7, struct.pack("!IIIII", 1, 1, 10, 5, 0) + bytes(10)),  # caplen > len
            b"\x01\x07" + rpcap_packet(FRAMES[0], 1)[2:],  # version 1
        ],
    )
    def test_look_alikes(self, segment: bytes) -> None:
        assert self.dec.feed(segment, CTX, self.dec.new_state()) == []


# -- PCAP-over-IP ------------------------------------------------------------------------------


def pcap_file(**kwargs: object) -> bytes:
    out = io.BytesIO()
    writer = PcapWriter(out, **kwargs)  # type: ignore[arg-type]
    for n, frame in enumerate(FRAMES):
        pkt = Ether(frame)
        pkt.time = 1700000000 + n
        writer.write(pkt)
    writer.flush()
    return out.getvalue()


def pcapng_file() -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        total = len(body) + 12
        return struct.pack("<II", btype, total) + body + struct.pack("<I", total)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 65535))
    epbs = [
        block(6, struct.pack("<IIIII", 0, 0, n, len(f), len(f)) + f) for n, f in enumerate(FRAMES)
    ]
    return shb + idb + b"".join(epbs)


class TestPcapOverIp:
    dec = PcapOverIpDecoder()

    @pytest.mark.parametrize("kwargs", [{}, {"nano": True}, {"endianness": ">"}])
    def test_pcap_stream(self, kwargs: dict) -> None:
        stream = pcap_file(**kwargs)
        header = classify(self.dec, stream[:40])
        assert header is not None and header.facts["pdu"] == "file-header"
        assert header.session == {"format": "pcap", "linktype": 1}
        for cuts in ([], [3, 24, 25, 40], list(range(1, len(stream), 11))):
            found = feed_in_pieces(self.dec, stream, cuts)
            assert [d.facts["pdu"] for d in found] == ["file-header", "record", "record"]
            assert [d.carried[0].data for d in found[1:]] == FRAMES
            assert {d.carried[0].link for d in found[1:]} == {"ethernet"}

    def test_pcapng_stream(self) -> None:
        stream = pcapng_file()
        found = feed_in_pieces(self.dec, stream, [7, 30, 31, 90])
        assert [d.facts["pdu"] for d in found] == ["file-header", "block", "record", "record"]
        assert [d.carried[0].data for d in found[2:]] == FRAMES
        assert found[2].carried[0].link == "ethernet"
        assert classify(self.dec, stream[:20]) is not None

    @pytest.mark.parametrize(
        "segment",
        [
            b"\xd4\xc3\xb2\xa1\x07\x00\x04\x00" + bytes(16),  # version 7.4
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x11\x22\x33\x44" + bytes(16),  # bad byte order
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
        ],
    )
    def test_look_alikes(self, segment: bytes) -> None:
        assert self.dec.feed(segment, CTX, self.dec.new_state()) == []
        assert classify(self.dec, segment) is None


# -- every stream decoder: never raises, prefilter never misses ------------------------------

STREAMS = {
    Etsi102232Decoder(): ps_pdu(cc_payload(PING)) + ps_pdu(KEEPALIVE),
    EtsiHi2Decoder(): hi2_record() + hi2_record(0xA2),
    EtsiX2X3Decoder(): x2x3(2, PING, fmt=5, direction=3) + keepalive_ack(3),
    RpcapStreamDecoder(): rpcap_msg(3, b"eth0") + rpcap_packet(FRAMES[0], 1),
    PcapOverIpDecoder(): pcap_file(),
}


@pytest.mark.parametrize("decoder", list(STREAMS), ids=lambda d: d.name)
def test_garbage_truncations_and_random_splits(decoder: StreamDecoder) -> None:
    rng = random.Random(77)
    sample = STREAMS[decoder]
    segments = [b""] + [rng.randbytes(rng.randrange(1, 300)) for _ in range(200)]
    segments += [sample[:n] for n in range(len(sample))]
    for _ in range(100):
        flipped = bytearray(sample)
        flipped[rng.randrange(len(sample))] ^= 1 << rng.randrange(8)
        segments.append(bytes(flipped))
    head, length = head_of(segments)
    mask = decoder.prefilter(head, length)
    for segment, passed in zip(segments, mask, strict=True):
        if decoder.decode(segment, CTX, decoder.new_state()) is not None:
            assert passed, f"prefilter missed {segment[:32].hex()}"
        state = decoder.new_state()
        cuts = sorted(rng.sample(range(len(segment) + 1), min(3, len(segment) + 1)))
        for a, b in zip([0, *cuts], [*cuts, len(segment)], strict=True):
            decoder.feed(segment[a:b], CTX, state)  # must not raise


@pytest.mark.parametrize("decoder", list(STREAMS), ids=lambda d: d.name)
def test_prefilter_rejects_ordinary_streams(decoder: StreamDecoder) -> None:
    rng = random.Random(3)
    ordinary = [
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        bytes.fromhex("1603010200010001fc0303") + rng.randbytes(100),
    ] + [rng.randbytes(rng.randrange(20, 1400)) for _ in range(500)]
    head, length = head_of(ordinary)
    assert int(decoder.prefilter(head, length).sum()) <= 5


def test_ber_walker_edges() -> None:
    assert ber.read_tlv(b"\x30\x80\x00\x00", 0) is None  # indefinite length refused
    assert ber.read_tlv(b"\x30\x85" + bytes(5), 0) is None  # five length octets
    long_tag = ber.read_tlv(b"\x9f\x81\x01\x01\x05", 0)
    assert long_tag is not None and long_tag.tag == 129 and long_tag.value_start == 4
    top = ber.read_tlv(b"\x30\x06\x02\x01\x05\x04\x01", 0)
    assert top is not None and ber.children(b"\x30\x06\x02\x01\x05\x04\x01", top) is None
    assert ber.oid_str(DOMAIN_X690) == "0.4.0.2.2.5.1.17"
