"""Flow-metadata export decoders: NetFlow v1/v5/v7, NetFlow v9, IPFIX (and PSAMP), sFlow v5."""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

import pytest
from mwtest import heads
from scapy.all import DNS, DNSQR, ICMP, IP, TCP, UDP, VXLAN, Ether, IPv6, rdpcap
from scapy.layers.netflow import (
    NetflowHeader,
    NetflowHeaderV1,
    NetflowHeaderV5,
    NetflowRecordV1,
    NetflowRecordV5,
)

from detector.protocols.base import Decoded, Decoder, PacketContext
from detector.protocols.ipfix import IpfixDecoder
from detector.protocols.netflow import NetflowDecoder
from detector.protocols.netflow_v9 import NetflowV9Decoder
from detector.protocols.registry import all_decoders
from detector.protocols.sflow import SflowDecoder
from detector.protocols.templates import (
    MAX_RECORDS,
    MAX_TEMPLATES,
    TemplateCache,
    make_template,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "pcaps" / "real"
NF, V9, IPFIX, SFLOW = NetflowDecoder(), NetflowV9Decoder(), IpfixDecoder(), SflowDecoder()
ALL: list[Decoder] = [NF, V9, IPFIX, SFLOW]
NOW = 1_700_000_000
# Exports arrive on any port: nothing below depends on the well-known ones.
CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40123, dport=31337)


def passes_prefilter(dec: Decoder, payload: bytes) -> bool:
    return bool(dec.prefilter(*heads([payload]))[0])


def decode(dec: Decoder, payload: bytes, state: object | None = None) -> Decoded | None:
    found = dec.decode(payload, CTX, state)
    if found is not None:
        assert passes_prefilter(dec, payload), "prefilter rejected a payload decode accepts"
        assert found.kind == "flow-export"
    return found


# ---------------------------------------------------------------- builders (from the specs)


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def fset(sid: int, body: bytes) -> bytes:
    body = pad4(body)
    return struct.pack("!HH", sid, 4 + len(body)) + body


def tmpl_record(tid: int, fields: list[tuple[int, ...]]) -> bytes:
    out = struct.pack("!HH", tid, len(fields))
    for f in fields:
        if len(f) == 3:  # enterprise-specific element
            out += struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack("!HH", *f)
    return out


def ipfix_msg(sets: list[bytes], domain: int = 7, seq: int = 1, export: int = NOW) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export, seq, domain) + body


def v9_msg(flowsets: list[bytes], count: int, source_id: int = 0x0102, seq: int = 5) -> bytes:
    return struct.pack("!HHIIII", 9, count, 123_456, NOW, seq, source_id) + b"".join(flowsets)


V4_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 8), (1, 8)]


def addr(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def v4_record(
    src: str, dst: str, sport: int, dport: int, proto: int, pkts: int, octets: int
) -> bytes:
    return addr(src) + addr(dst) + struct.pack("!HHBQQ", sport, dport, proto, pkts, octets)


# --------------------------------------------------------------------- NetFlow v1 / v5 / v7


def test_netflow_v5_from_scapy():
    pkt = bytes(
        NetflowHeader(version=5)
        / NetflowHeaderV5(
            unixSecs=NOW, flowSequence=4242, engineType=1, engineID=3, samplingInterval=0x4064
        )
        / NetflowRecordV5(
            src="10.0.0.1", dst="10.0.0.2", srcport=1234, dstport=443, prot=6, dpkts=7,
            dOctets=900,
        )
        / NetflowRecordV5(src="10.0.0.3", dst="8.8.8.8", srcport=5353, dstport=53, prot=17)
    )  # fmt: skip
    assert len(pkt) == 24 + 2 * 48
    d = decode(NF, pkt)
    assert d is not None and d.protocol == "netflow-v5"
    assert d.session == {"engine_type": 1, "engine_id": 3}
    assert d.facts["sequence"] == 4242 and d.facts["count"] == 2
    assert d.facts["sampling_mode"] == 1 and d.facts["sampling_interval"] == 100
    assert d.header.startswith("00 05 00 02: NetFlow v5")
    r = d.records[0]
    assert (r.src, r.dst, r.sport, r.dport, r.proto, r.packets, r.bytes) == (
        "10.0.0.1", "10.0.0.2", 1234, 443, 6, 7, 900,
    )  # fmt: skip
    assert (d.records[1].dst, d.records[1].proto) == ("8.8.8.8", 17)


def test_netflow_v1_from_scapy():
    pkt = bytes(
        NetflowHeader(version=1)
        / NetflowHeaderV1(unixSecs=NOW)
        / NetflowRecordV1(ipsrc="192.168.1.5", ipdst="1.1.1.1", srcport=999, dstport=80, proto=6)
    )
    d = decode(NF, pkt)
    assert d is not None and d.protocol == "netflow-v1"
    assert d.session == {} and d.strength < 1.0
    assert (d.records[0].src, d.records[0].dport, d.records[0].proto) == ("192.168.1.5", 80, 6)


def v7_packet(count: int = 2) -> bytes:
    hdr = struct.pack("!HHIIIII", 7, count, 1000, NOW, 0, 77, 0)
    recs = b"".join(
        struct.pack(
            "!4s4s4sHHIIIIHHBBBBHHBBH4s",
            bytes([10, 1, 1, i]), bytes([10, 2, 2, i]), b"\0" * 4, 1, 2, 3, 300, 0, 0,
            1000 + i, 22, 0, 0x18, 6, 0, 0, 0, 24, 24, 0, b"\x0a\0\0\x01",
        )
        for i in range(count)
    )  # fmt: skip
    return hdr + recs


def test_netflow_v7_by_hand():
    pkt = v7_packet(3)
    assert len(pkt) == 24 + 3 * 52
    d = decode(NF, pkt)
    assert d is not None and d.protocol == "netflow-v7"
    assert d.facts["sequence"] == 77 and len(d.records) == 3
    assert (d.records[2].src, d.records[2].dst, d.records[2].sport, d.records[2].dport) == (
        "10.1.1.2", "10.2.2.2", 1002, 22,
    )  # fmt: skip


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p[:-1],  # length no longer header + count × record
        lambda p: p + b"\0" * 48,  # one record more than counted
        lambda p: p[:2] + b"\0\0" + p[4:],  # count 0
        lambda p: p[:8] + struct.pack("!I", 1000) + p[12:],  # unix_secs in 1970
        lambda p: b"\0\x06" + p[2:],  # version 6 does not exist here
    ],
)
def test_netflow_v5_lookalikes_rejected(mutate):
    good = bytes(NetflowHeader(version=5) / NetflowHeaderV5(unixSecs=NOW) / NetflowRecordV5())
    assert decode(NF, good) is not None
    bad = mutate(good)
    assert NF.decode(bad, CTX, None) is None
    assert not passes_prefilter(NF, bad)


# ------------------------------------------------------------------------------ NetFlow v9


def test_v9_template_then_data_and_per_source_id_state():
    state = V9.new_state()
    template = fset(0, tmpl_record(300, V4_FIELDS))
    d = decode(V9, v9_msg([template], count=1), state)
    assert d is not None and d.protocol == "netflow-v9"
    assert d.session == {"source_id": 0x0102}
    assert d.facts["template_ids"] == [300] and d.facts["data_records"] == 0

    data = fset(300, v4_record("10.9.8.7", "192.0.2.55", 5000, 53, 17, 3, 210) * 2)
    d = decode(V9, v9_msg([data], count=2, seq=6), state)
    assert d is not None
    assert d.facts["data_records"] == 2 and d.facts["records_without_template"] == 0
    assert d.facts["sequence"] == 6
    r = d.records[0]
    assert (r.src, r.dst, r.sport, r.dport, r.proto, r.packets, r.bytes) == (
        "10.9.8.7", "192.0.2.55", 5000, 53, 17, 3, 210,
    )  # fmt: skip

    # Same template id from another source id of the same exporter is a different template.
    other = decode(V9, v9_msg([data], count=2, source_id=9), state)
    assert other is not None and other.records == []
    assert other.facts["records_without_template"] == 2
    assert other.facts["missing_template_ids"] == [300]


def test_v9_data_before_template_in_one_packet():
    data = fset(256, v4_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 40))
    template = fset(0, tmpl_record(256, V4_FIELDS))
    d = decode(V9, v9_msg([data, template, data], count=3), V9.new_state())
    assert d is not None
    assert d.facts["data_records"] == 1 and d.facts["records_without_template"] == 1
    assert d.facts["data_set_ids"] == [256] and len(d.records) == 1


def test_v9_options_template_sampling_interval():
    # Scope: system (type 1, 4 bytes); options: SAMPLING_INTERVAL (34), SAMPLING_ALGORITHM (35).
    opt = fset(1, struct.pack("!HHH", 400, 4, 8) + struct.pack("!HHHHHH", 1, 4, 34, 4, 35, 1))
    data = fset(400, struct.pack("!IIB", 0x0A000001, 1000, 2))
    state = V9.new_state()
    d = decode(V9, v9_msg([opt, data], count=2), state)
    assert d is not None
    assert d.facts["options_template_ids"] == [400]
    assert d.facts["options_records"] == 1 and d.facts["sampling_interval"] == 1000
    # The scope "system" field (type 1) must not be read as octetDeltaCount.
    assert d.records == []


def test_v9_without_state_still_valid_export():
    data = fset(256, b"\x01" * 20)
    d = decode(V9, v9_msg([data], count=1), None)
    assert d is not None and d.facts["records_without_template"] == 1


@pytest.mark.parametrize(
    "payload",
    [
        v9_msg([fset(17, b"\x01" * 8)], count=1),  # flowset ids 2-255 are reserved
        v9_msg([fset(256, b"\x01" * 8)], count=1)[:-2],  # flowset overruns the datagram
        v9_msg([fset(256, b"\x01" * 8)], count=1) + b"\x01\x02\x03\x04\x05\x06\x07\x08",
        v9_msg([], count=0),  # no flowset at all
        b"\0\x09" + v9_msg([fset(256, b"\x01" * 8)], count=1)[2:8] + b"\0\0\0\x01" + b"\0" * 20,
    ],
)
def test_v9_lookalikes_rejected(payload):
    assert V9.decode(payload, CTX, V9.new_state()) is None


# ----------------------------------------------------------------------------------- IPFIX

IPFIX_FIELDS = [*V4_FIELDS, (100, 4, 29305), (82, 0xFFFF)]


def ipfix_v4_record(name: bytes, *flow) -> bytes:
    return v4_record(*flow) + b"\xde\xad\xbe\xef" + bytes([len(name)]) + name


def test_ipfix_template_enterprise_and_variable_length():
    state = IPFIX.new_state()
    t = ipfix_msg([fset(2, tmpl_record(310, IPFIX_FIELDS))])
    d = decode(IPFIX, t, state)
    assert d is not None and d.protocol == "ipfix"
    assert d.session == {"observation_domain": 7}
    assert d.facts["template_ids"] == [310]
    assert d.header.startswith("00 0a 00 ")

    recs = ipfix_v4_record(b"eth0", "172.16.0.9", "203.0.113.4", 443, 51000, 6, 12, 9000)
    recs += ipfix_v4_record(b"a-long-interface-name", "172.16.0.10", "203.0.113.5", 1, 2, 17, 1, 1)
    d = decode(IPFIX, ipfix_msg([fset(310, recs)], seq=2), state)
    assert d is not None
    assert d.facts["data_records"] == 2 and d.facts["sequence"] == 2
    assert [(r.src, r.dst, r.sport, r.dport, r.proto) for r in d.records] == [
        ("172.16.0.9", "203.0.113.4", 443, 51000, 6),
        ("172.16.0.10", "203.0.113.5", 1, 2, 17),
    ]
    assert (d.records[0].packets, d.records[0].bytes) == (12, 9000)


def test_ipfix_variable_length_three_byte_prefix_and_ipv6():
    fields = [(27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (82, 0xFFFF)]
    long_name = b"x" * 300  # length ≥ 255 uses the 0xFF + 2-byte form (RFC 7011 7)
    rec = addr("2001:db8::1") + addr("2001:db8::2") + struct.pack("!HHB", 80, 8080, 6)
    rec += b"\xff" + struct.pack("!H", len(long_name)) + long_name
    msg = ipfix_msg([fset(2, tmpl_record(311, fields)), fset(311, rec + rec)])
    d = decode(IPFIX, msg, IPFIX.new_state())
    assert d is not None and d.facts["data_records"] == 2
    assert (d.records[1].src, d.records[1].dst, d.records[1].dport) == (
        "2001:db8::1", "2001:db8::2", 8080,
    )  # fmt: skip


def test_ipfix_data_before_template_then_known():
    state = IPFIX.new_state()
    data = fset(320, v4_record("10.1.2.3", "10.3.2.1", 7, 9, 17, 1, 64))
    d = decode(IPFIX, ipfix_msg([data]), state)
    assert d is not None and d.protocol == "ipfix"
    assert d.facts["records_without_template"] == 1 and d.records == []
    d = decode(IPFIX, ipfix_msg([fset(2, tmpl_record(320, V4_FIELDS)), data]), state)
    assert d is not None and d.facts["records_without_template"] == 0
    assert d.records[0].src == "10.1.2.3"
    # A template withdrawal (field count 0) forgets it again.
    d = decode(IPFIX, ipfix_msg([fset(2, struct.pack("!HH", 320, 0))]), state)
    assert d is not None and d.facts["withdrawn_template_ids"] == [320]
    d = decode(IPFIX, ipfix_msg([data]), state)
    assert d is not None and d.facts["records_without_template"] == 1


def test_ipfix_options_template_psamp_sampling():
    # Scope selectorId (302); samplingPacketInterval (305) = 1, samplingPacketSpace (306) = 99.
    opt = struct.pack("!HHH", 330, 3, 1) + struct.pack("!HHHHHH", 302, 4, 305, 4, 306, 4)
    d = decode(
        IPFIX,
        ipfix_msg([fset(3, opt), fset(330, struct.pack("!III", 5, 1, 99))]),
        IPFIX.new_state(),
    )
    assert d is not None
    assert d.facts["options_template_ids"] == [330] and d.facts["sampling_interval"] == 100


def test_psamp_packet_sections_are_carried():
    frame = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.7.7.7", dst="10.8.8.8")
        / TCP(sport=3333, dport=25)
    )
    ip_hdr = bytes(IP(src="10.5.5.5", dst="10.6.6.6") / UDP(sport=1, dport=2))
    fields = [(302, 4), (312, 2), (315, 0xFFFF), (224, 2), (313, 0xFFFF)]
    rec = struct.pack("!IH", 1, 1514) + bytes([len(frame)]) + frame
    rec += struct.pack("!H", 1400) + bytes([len(ip_hdr)]) + ip_hdr
    msg = ipfix_msg([fset(2, tmpl_record(340, fields)), fset(340, rec)])
    d = decode(IPFIX, msg, IPFIX.new_state())
    assert d is not None and d.protocol == "psamp" and d.kind == "flow-export"
    assert sorted((c.link, c.data, c.orig_len) for c in d.carried) == [
        ("ethernet", frame, 1514),
        ("ip", ip_hdr, 1400),
    ]
    assert d.facts["packet_sections"] == 2
    # The same stream with only plain flow records is IPFIX.
    plain = ipfix_msg([fset(2, tmpl_record(341, V4_FIELDS))])
    assert decode(IPFIX, plain, IPFIX.new_state()).protocol == "ipfix"


def test_ipfix_record_cap():
    recs = v4_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1) * 150
    msg = ipfix_msg([fset(2, tmpl_record(350, V4_FIELDS)), fset(350, recs)])
    d = decode(IPFIX, msg, IPFIX.new_state())
    assert d is not None and d.facts["data_records"] == 150
    assert len(d.records) == MAX_RECORDS


@pytest.mark.parametrize(
    "payload",
    [
        ipfix_msg([fset(2, tmpl_record(310, V4_FIELDS))]) + b"\0\0\0\0",  # length ≠ datagram
        ipfix_msg([fset(4, b"\0" * 8)]),  # set ids 4-255 are reserved
        ipfix_msg([fset(256, b"\1" * 8)], export=12345),  # export time in 1970
        ipfix_msg([]),  # header only
        b"\0\x0a\0\x18" + b"\x65" * 20,
    ],
)
def test_ipfix_lookalikes_rejected(payload):
    assert IPFIX.decode(payload, CTX, IPFIX.new_state()) is None


def test_template_cache_is_bounded_and_keyed_by_domain():
    cache = TemplateCache()
    msg = ipfix_msg([fset(2, tmpl_record(360, V4_FIELDS))], domain=1)
    IPFIX.decode(msg, CTX, cache)
    assert cache.get(1, 360) is not None and cache.get(2, 360) is None
    for tid in range(256, 256 + MAX_TEMPLATES + 10):
        cache.put(3, make_template(tid, [(8, 4)]))
    assert len(cache.templates) == MAX_TEMPLATES


# ------------------------------------------------------------------------------------ sFlow


def sflow_dgram(samples: list[bytes], agent: bytes = bytes([192, 0, 2, 1]), sub: int = 3):
    atype = 1 if len(agent) == 4 else 2
    head = struct.pack("!II", 5, atype) + agent + struct.pack("!IIII", sub, 99, 5000, len(samples))
    return head + b"".join(samples)


def raw_header(frame: bytes, proto: int = 1, frame_len: int | None = None) -> bytes:
    body = struct.pack("!IIII", proto, frame_len or len(frame) + 4, 4, len(frame)) + pad4(frame)
    return struct.pack("!II", 1, len(body)) + body


def flow_sample(records: list[bytes], rate: int = 512, expanded: bool = False) -> bytes:
    if expanded:
        body = struct.pack("!11I", 1, 0, 7, rate, 10_000, 0, 0, 1, 0, 2, len(records))
    else:
        body = struct.pack("!8I", 1, 7, rate, 10_000, 0, 1, 2, len(records))
    body += b"".join(records)
    return struct.pack("!II", 3 if expanded else 1, len(body)) + body


def counter_sample() -> bytes:
    generic = struct.pack("!II", 1, 88) + b"\0" * 88
    body = struct.pack("!III", 1, 7, 1) + generic
    return struct.pack("!II", 2, len(body)) + body


TCP_FRAME = bytes(
    Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
    / IP(src="10.20.30.40", dst="10.20.30.41")
    / TCP(sport=44321, dport=22)
)


def test_sflow_flow_and_counter_samples():
    dgram = sflow_dgram([flow_sample([raw_header(TCP_FRAME, frame_len=1518)]), counter_sample()])
    d = decode(SFLOW, dgram)
    assert d is not None and d.protocol == "sflow"
    assert d.session == {"agent": "192.0.2.1", "sub_agent_id": 3}
    assert d.facts["sampling_rate"] == 512 and d.facts["sequence"] == 99
    assert d.facts["flow_samples"] == 1 and d.facts["counter_samples"] == 1
    assert [(c.link, c.data, c.orig_len) for c in d.carried] == [("ethernet", TCP_FRAME, 1518)]
    r = d.records[0]
    assert (r.src, r.dst, r.proto, r.sport, r.dport, r.bytes) == (
        "10.20.30.40", "10.20.30.41", 6, 44321, 22, 1518,
    )  # fmt: skip
    assert d.header.startswith("00 00 00 05 00 00 00 01: sFlow version 5")


def test_sflow_expanded_ipv6_agent_ip_header():
    ip6 = bytes(IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=5, dport=6))
    agent = addr("2001:db8::99")
    dgram = sflow_dgram(
        [flow_sample([raw_header(ip6, proto=12)], rate=4096, expanded=True)], agent=agent, sub=0
    )
    d = decode(SFLOW, dgram)
    assert d is not None
    assert d.session["agent"] == "2001:db8::99"
    assert d.facts["sampling_rate"] == 4096
    assert d.carried[0].link == "ip" and d.records[0].src == "2001:db8::a"


def test_sflow_vxlan_inside_sample_is_only_carried_bytes():
    inner = Ether(src="02:00:00:00:00:11") / IP(src="192.168.9.1", dst="192.168.9.2") / ICMP()
    frame = bytes(
        Ether(src="02:00:00:00:00:21")
        / IP(src="172.31.0.1", dst="172.31.0.2")
        / UDP(sport=49152, dport=4789)
        / VXLAN(vni=4242)
        / inner
    )
    d = decode(SFLOW, sflow_dgram([flow_sample([raw_header(frame)])]))
    assert d is not None and d.protocol == "sflow"
    assert len(d.carried) == 1 and d.carried[0].link == "ethernet"
    assert d.carried[0].data == frame
    assert [(r.src, r.dst, r.dport) for r in d.records] == [("172.31.0.1", "172.31.0.2", 4789)]


@pytest.mark.parametrize(
    "payload",
    [
        sflow_dgram([counter_sample()])[:-4],  # sample overruns the datagram
        sflow_dgram([counter_sample()]) + b"\0" * 8,  # bytes after the counted samples
        b"\0\0\0\x05\0\0\0\x03" + sflow_dgram([counter_sample()])[8:],  # address type 3
        b"\0\0\0\x04" + sflow_dgram([counter_sample()])[4:],  # version 4
        sflow_dgram([struct.pack("!II", 2, 90) + b"\0" * 90]),  # XDR lengths are 4-aligned
        sflow_dgram([counter_sample(), counter_sample()])[:24]
        + struct.pack("!I", 1)  # says one sample, holds two
        + sflow_dgram([counter_sample(), counter_sample()])[28:],
    ],
)
def test_sflow_lookalikes_rejected(payload):
    assert SFLOW.decode(payload, CTX, None) is None


# ---------------------------------------------------------------------- ordinary traffic


def ordinary_payloads() -> list[bytes]:
    rng = random.Random(7)
    dns = bytes(DNS(id=9, rd=1, qd=DNSQR(qname="example.com")))
    # QUIC v1 Initial: long header, version 1, connection ids, then random protected bytes.
    quic = bytes([0xC3]) + b"\0\0\0\x01" + b"\x08" + rng.randbytes(8) + b"\0" + rng.randbytes(1180)
    tls = bytes.fromhex("160301020001000200030308") + rng.randbytes(500)
    return [dns, quic, tls, b"", b"\0" * 64] + [
        rng.randbytes(rng.randrange(0, 1500)) for _ in range(300)
    ]


def test_ordinary_traffic_rejected_by_prefilter_and_decode():
    payloads = ordinary_payloads()
    head, length = heads(payloads)
    for dec in ALL:
        assert not dec.prefilter(head, length).any(), dec.name
        assert all(dec.decode(p, CTX, dec.new_state()) is None for p in payloads), dec.name


# ------------------------------------------------------------- robustness (never raise)


def valid_samples() -> list[tuple[Decoder, bytes]]:
    v9_t = v9_msg([fset(0, tmpl_record(300, V4_FIELDS))], count=1)
    v9_d = v9_msg([fset(300, v4_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 1, 1) * 3)], count=3)
    ipfix_t = ipfix_msg([fset(2, tmpl_record(310, IPFIX_FIELDS))])
    ipfix_d = ipfix_msg(
        [fset(310, ipfix_v4_record(b"ge-0/0/1", "1.2.3.4", "5.6.7.8", 1, 2, 6, 1, 1))]
    )
    return [
        (NF, bytes(NetflowHeader(version=5) / NetflowHeaderV5(unixSecs=NOW) / NetflowRecordV5())),
        (NF, v7_packet(2)),
        (V9, v9_t),
        (V9, v9_d),
        (IPFIX, ipfix_t),
        (IPFIX, ipfix_d),
        (SFLOW, sflow_dgram([flow_sample([raw_header(TCP_FRAME)]), counter_sample()])),
    ]


def test_truncations_mutations_and_noise_never_raise():
    rng = random.Random(1234)
    samples = valid_samples()
    inputs: list[bytes] = []
    for _, pkt in samples:
        inputs += [pkt[:n] for n in range(len(pkt))]
        for _ in range(150):
            b = bytearray(pkt)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            inputs.append(bytes(b))
    inputs += [rng.randbytes(rng.randrange(0, 200)) for _ in range(300)]
    for dec in ALL:
        # Templates learnt from the valid samples make the mutated data sets walk records.
        state = dec.new_state()
        for _, pkt in samples:
            dec.decode(pkt, CTX, state)
        for payload in inputs:
            found = dec.decode(payload, CTX, state)
            if found is not None:
                assert passes_prefilter(dec, payload), (dec.name, payload.hex())


def test_registered():
    names = {d.name for d in all_decoders()}
    assert {"netflow", "netflow-v9", "ipfix", "sflow"} <= names


# -------------------------------------------------------------------------- real captures

EXPORTS = {
    "scapy/netflowv9.pcap": V9,
    "scapy/ipfix.pcap": IPFIX,
    "akvorado/data+templates.pcap": V9,
    "akvorado/juniper-cpid-template.pcap": IPFIX,
    "akvorado/ipfixprobe-templates.pcap": IPFIX,
    "akvorado/ipfixprobe-data.pcap": IPFIX,
    "akvorado/data-1140.pcap": SFLOW,
    "tcpdump/sflow_expanded.pcap": SFLOW,
    "ndpi/sflow.pcap": SFLOW,
    "ndpi/netflow-fritz.pcap": IPFIX,
    "pmacct/100-IPFIXv10-CISCO/traffic-00.pcap": IPFIX,
    "pmacct/101-NFv9-CISCO-cust_primitives/traffic-00.pcap": V9,
    "pmacct/112-IPFIXv10-CISCO-options-map-reassignment/traffic-00.pcap": IPFIX,
}


def udp_payloads(name: str) -> list[tuple[tuple, bytes]]:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real capture {path} not present")
    out = []
    for pkt in rdpcap(str(path)):
        if UDP not in pkt:
            continue
        net = pkt[IP] if IP in pkt else pkt[IPv6]
        u = pkt[UDP]
        out.append(((net.src, u.sport, net.dst, u.dport), bytes(u.payload)))
    return out


def decode_stream(
    dec: Decoder, name: str, states: dict | None = None, by_exporter: bool = False
) -> list[Decoded]:
    """Decode every UDP payload with one state per 4-tuple (or per exporter address)."""
    states = {} if states is None else states
    found = []
    for key, payload in udp_payloads(name):
        if by_exporter:
            key = key[0]
        d = decode(dec, payload, states.setdefault(key, dec.new_state()))
        assert d is not None, f"{name}: {payload[:32].hex()} did not decode"
        found.append(d)
    assert found, f"{name}: no UDP payloads"
    return found


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_real_capture_every_export_payload_decodes(name):
    dec = EXPORTS[name]
    decode_stream(dec, name)
    # No other flow-export decoder claims these payloads.
    for other in ALL:
        if other is not dec:
            for _, payload in udp_payloads(name):
                assert other.decode(payload, CTX, other.new_state()) is None


def test_real_netflow_v9_scapy_options_and_data():
    found = decode_stream(V9, "scapy/netflowv9.pcap")
    assert {d.session["source_id"] for d in found} == {8}
    assert found[0].facts["template_ids"] == [424]
    data = found[3]
    assert data.facts["data_records"] == 24 and len(data.records) == 24
    assert data.records[0].src == "20.0.1.174" and data.records[0].dst == "30.0.1.174"
    assert found[4].facts["options_records"] == 1 and found[4].facts["sampling_interval"] == 12


def test_real_netflow_v9_akvorado_data_before_template():
    (d,) = decode_stream(V9, "akvorado/data+templates.pcap")
    # The first data flowset (257) precedes its template in the same datagram.
    assert d.facts["missing_template_ids"] == [257]
    assert d.facts["template_ids"] == [257] and d.facts["options_template_ids"] == [256]
    assert d.facts["data_records"] >= 1 and d.facts["sampling_interval"] == 100
    assert all(r.src and r.dst for r in d.records)


def test_real_ipfix_ipfixprobe_templates_then_data():
    states: dict = {}
    decode_stream(IPFIX, "akvorado/ipfixprobe-templates.pcap", states)
    (d,) = decode_stream(IPFIX, "akvorado/ipfixprobe-data.pcap", states)
    assert d.protocol == "ipfix" and d.session == {"observation_domain": 1}
    assert d.facts["records_without_template"] == 0 and d.facts["data_records"] == 4
    assert ("10.10.1.4", "10.10.1.1", 17, 53) in {
        (r.src, r.dst, r.proto, r.dport) for r in d.records
    }


def test_real_ipfix_cisco_ipv6_flows_and_options():
    found = decode_stream(IPFIX, "pmacct/100-IPFIXv10-CISCO/traffic-00.pcap")
    assert any(":" in r.src for d in found for r in d.records)
    name = "pmacct/112-IPFIXv10-CISCO-options-map-reassignment/traffic-00.pcap"
    found = decode_stream(IPFIX, name)
    assert sum(d.facts["options_records"] for d in found) > 0
    assert sum(d.facts["records_without_template"] for d in found) > 0  # capture starts late
    # The replayed exporter changes source port and collector between its template (347) and
    # the data using it: per-4-tuple streams never see the template, per-exporter state does.
    assert sum(d.facts["data_records"] for d in found) == 0
    found = decode_stream(IPFIX, name, by_exporter=True)
    assert found[-1].facts["data_records"] == 8 and found[-1].records[0].dport == 179


def test_real_sflow_samples():
    (d,) = decode_stream(SFLOW, "akvorado/data-1140.pcap")
    assert d.session == {"agent": "172.16.0.3", "sub_agent_id": 0}
    assert d.facts["sampling_rate"] == 1024 and d.facts["flow_samples"] == 5
    assert all(c.link == "ethernet" for c in d.carried) and d.carried[0].orig_len == 1518
    (d,) = decode_stream(SFLOW, "tcpdump/sflow_expanded.pcap")
    assert d.facts["sampling_rate"] == 1000
    assert (d.records[0].src, d.records[0].dst) == ("52.52.52.52", "53.53.53.53")
    found = decode_stream(SFLOW, "ndpi/sflow.pcap")
    assert sum(d.facts["counter_samples"] for d in found) == 8
    assert sum(d.facts["flow_samples"] for d in found) == 1


@pytest.mark.parametrize(
    "name",
    [
        "tcpdump/dns_udp.pcap",
        "cesnet-ipfixprobe/dns.pcap",
        "cesnet-ipfixprobe/sip.pcap",
        "ndpi/vxlan.pcap",
        "ndpi/wireguard.pcap",
    ],
)
def test_real_ordinary_traffic_not_an_export(name):
    for _, payload in udp_payloads(name):
        for dec in ALL:
            assert not passes_prefilter(dec, payload), (name, dec.name)
            assert dec.decode(payload, CTX, dec.new_state()) is None
