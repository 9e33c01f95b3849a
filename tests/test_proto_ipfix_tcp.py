"""IPFIX over TCP (messages framed by their length in one connection) and IPFIX files (RFC 5655),
on the bundled samples' bytes."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner
from mwtest import PCAPS, heads, scan
from scapy.all import TCP, UDP, rdpcap

from detector.cli import main
from detector.protocols.base import PacketContext
from detector.protocols.ipfix import IpfixDecoder, IpfixTcpDecoder, TemplateCache, file_note

TCP_IPFIX = IpfixTcpDecoder()
CTX = PacketContext(src="10.1.0.6", dst="10.9.0.10", sport=55901, dport=4739)


def udp_messages(name: str) -> list[bytes]:
    return [bytes(p[UDP].payload) for p in rdpcap(str(PCAPS / name))]


def tcp_stream_bytes() -> bytes:
    """The exporter's side of the sample connection, in sequence order."""
    segments = {}
    for p in rdpcap(str(PCAPS / "ipfix-tcp.pcap")):
        if p[TCP].dport == 4739 and len(p[TCP].payload):
            segments[p[TCP].seq] = bytes(p[TCP].payload)
    return b"".join(segments[k] for k in sorted(segments))


def feed_in_pieces(data: bytes, sizes: list[int]) -> list:
    state = TCP_IPFIX.new_state()
    found, pos = [], 0
    rng = random.Random(len(sizes))
    while pos < len(data):
        n = sizes[len(found) % len(sizes)] if sizes else rng.randrange(1, 1500)
        found += TCP_IPFIX.feed(data[pos : pos + n], CTX, state)
        pos += n
    return found


def split_messages(stream: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(stream):
        n = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        out.append(stream[pos : pos + n])
        pos += n
    return out


def test_connection_messages_decode_as_their_datagrams_would() -> None:
    stream = tcp_stream_bytes()
    messages = split_messages(stream)
    cache = TemplateCache()
    over_udp = [IpfixDecoder().decode(m, CTX, cache) for m in messages]
    over_tcp = feed_in_pieces(stream, [])
    assert len(over_tcp) == len(messages) == 20
    for u, t in zip(over_udp, over_tcp, strict=True):
        assert u is not None and (t.protocol, t.kind) == ("ipfix", "flow-export")
        assert t.facts == u.facts and len(t.records) == len(u.records)
    # Data records are decoded by the templates of earlier messages in the connection.
    assert sum(len(t.records) for t in over_tcp) > 100


@pytest.mark.parametrize("sizes", [[1], [7, 3], [19], [600], [100_000]])
def test_framing_does_not_depend_on_segment_sizes(sizes: list[int]) -> None:
    stream = tcp_stream_bytes()
    found = feed_in_pieces(stream, sizes)
    assert [f.facts["sequence"] for f in found] == [
        f.facts["sequence"] for f in feed_in_pieces(stream, [100_000])
    ]
    assert len(found) == 20


def test_a_connection_is_recognised_by_a_whole_message() -> None:
    stream = tcp_stream_bytes()
    first = stream[: int.from_bytes(stream[2:4], "big")]
    found = TCP_IPFIX.decode(first + stream[len(first) : len(first) + 100], CTX, None)
    assert found is not None and found.session == {"observation_domain": 1}
    assert TCP_IPFIX.prefilter(*heads([first]))[0]
    # The start of a message is not enough: any bytes frame themselves in a stream.
    assert TCP_IPFIX.decode(first[:200], CTX, None) is None


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n" + bytes(64),
        bytes.fromhex("000a0010") + bytes(120),  # a message too short to hold a set
        bytes.fromhex("0009") + bytes(200),  # NetFlow v9 has no message length
    ],
    ids=["http", "short-length", "v9"],
)
def test_stream_that_is_not_ipfix_is_dropped(data: bytes) -> None:
    state = TCP_IPFIX.new_state()
    assert TCP_IPFIX.feed(data, CTX, state) == []
    assert state.dead
    # Nothing more is read from a stream that was given up, however good its later bytes.
    assert TCP_IPFIX.feed(tcp_stream_bytes(), CTX, state) == []


def test_psamp_messages_over_tcp_make_a_psamp_stream() -> None:
    found = feed_in_pieces(b"".join(udp_messages("psamp.pcap")), [333])
    assert found and {f.protocol for f in found} == {"psamp"}
    assert any(f.carried for f in found)
    assert TCP_IPFIX.stream_protocol("ipfix", found[0]) == "psamp"


def test_truncations_and_noise_never_raise() -> None:
    rng = random.Random(10)
    stream = tcp_stream_bytes()[:3000]
    for _ in range(200):
        noisy = bytearray(stream)
        for _ in range(4):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        feed_in_pieces(bytes(noisy), [rng.randrange(1, 700)])


def test_sample_is_one_ipfix_export_over_tcp() -> None:
    (f,) = scan(PCAPS / "ipfix-tcp.pcap").findings
    assert (f.protocol, f.kind, f.severity, f.transport) == (
        "ipfix",
        "flow-export",
        "medium",
        "tcp",
    )
    assert (f.exporter.ip, f.collector.ip, f.collector.port) == ("10.1.0.6", "10.9.0.10", 4739)
    assert f.evidence["validated"] == 20


def test_ipfix_file_is_named_not_read() -> None:
    head = (PCAPS / "ipfix-file.ipfix").read_bytes()[:16]
    note = file_note(head)
    assert note is not None and "IPFIX file (RFC 5655" in note and "domain 1" in note
    assert file_note(bytes.fromhex("000a0010") + bytes(12)) is None  # a clock of 1970
    assert file_note((PCAPS / "tzsp.pcap").read_bytes()[:16]) is None
    res = CliRunner().invoke(main, ["scan", "-q", str(PCAPS / "ipfix-file.ipfix")])
    assert res.exit_code == 2
    assert "an IPFIX file (RFC 5655" in res.output and "not a packet capture" in res.output
