"""dnstap over Frame Streams: control handshake, data frames walked as protobuf, names and
clients as evidence, and bytes that only look like frames rejected."""

from __future__ import annotations

from mwtest import PCAPS, heads, sample_generator, scan

from detector.protocols.base import PacketContext
from detector.protocols.dnstap import DnstapDecoder, protobuf_fields, question_name

GEN = sample_generator()  # its protobuf and Frame Streams writers
QUERY = bytes.fromhex("1234010000010000000000000676696374696d03636f6d0000010001")  # victim.com A
CTX = PacketContext(src="10.1.0.53", dst="10.9.0.30", sport=43210, dport=6000)


def test_handshake_then_data_frames() -> None:
    dec = DnstapDecoder()
    state = dec.new_state()
    ready, start = GEN.fstrm_control(4), GEN.fstrm_control(2)
    frames = [
        GEN.dnstap_frame(5, "192.168.1.7", 40000 + i, "10.1.0.53", QUERY, 0) for i in range(3)
    ]
    data = ready + start + b"".join(frames)
    out = []
    for i in range(0, len(data), 29):  # PDUs straddle segments
        out += dec.feed(data[i : i + 29], CTX, state)
    assert [d.facts["frame"] for d in out] == [
        "control-ready",
        "control-start",
        "data",
        "data",
        "data",
    ]
    d = out[2]
    assert (d.protocol, d.kind, d.strength) == ("dnstap", "flow-export", 1.0)
    assert d.facts["query_name"] == "victim.com." and d.facts["message_type"] == "CLIENT_QUERY"
    assert d.session["identity"] == "resolver1"
    (r,) = d.records
    assert (r.src, r.dst, r.proto, r.sport, r.dport) == ("192.168.1.7", "10.1.0.53", 17, 40000, 53)


def test_joined_mid_stream_a_data_frame_stands_alone() -> None:
    frame = GEN.dnstap_frame(6, "2001:db8::7", 5353, "2001:db8::53", QUERY, 0)
    d = DnstapDecoder().decode(frame, CTX, None)
    assert d is not None and d.strength < 1.0 and d.records[0].src == "2001:db8::7"


def test_other_content_types_and_garbage_are_rejected() -> None:
    dec = DnstapDecoder()
    assert dec.decode(GEN.fstrm_control(2, b"protobuf:other.Thing"), CTX, None) is None
    assert dec.decode(GEN.fstrm_control(4, None), CTX, None) is None  # READY must name a type
    assert dec.decode(GEN.fstrm_control(9), CTX, None) is None
    # A length and bytes that start like a protobuf field but do not walk to the end.
    assert dec.decode(b"\x00\x00\x00\x20\x0a\x05hello" + bytes(25), CTX, None) is None
    # The start of a frame that continues in a later segment is not enough to name a stream.
    assert dec.decode(b"\x00\x00\x01\x00\x0a\x05hello" + bytes(64), CTX, None) is None
    # A valid protobuf that is not a dnstap message (type field missing).
    body = GEN.pb_field(1, b"x") + GEN.pb_field(14, GEN.pb_field(1, 5))
    assert dec.decode(len(body).to_bytes(4, "big") + body, CTX, None) is None


def test_protobuf_walk_and_question() -> None:
    assert protobuf_fields(GEN.pb_field(3, 300) + GEN.pb_field(4, b"ab")) == {3: [300], 4: [b"ab"]}
    assert protobuf_fields(b"\x0a\x05ab") is None  # length past the end
    assert protobuf_fields(b"\x0b") is None  # wire type 3 (groups) is not used
    assert question_name(QUERY) == "victim.com."
    assert question_name(QUERY[:14]) is None


def test_prefilter() -> None:
    frame = GEN.dnstap_frame(5, "192.168.1.7", 40000, "10.1.0.53", QUERY, 0)
    head, length = heads([GEN.fstrm_control(4), frame, b"GET / HTTP/1.1\r\n", bytes(64)])
    assert DnstapDecoder().prefilter(head, length).tolist() == [True, True, False, False]


def test_sample() -> None:
    (f,) = scan(PCAPS / "dnstap.pcap").findings
    assert (f.kind, f.protocol, f.severity) == ("flow-export", "dnstap", "medium")
    assert (f.exporter.ip, f.collector.port) == ("10.1.0.53", 6000)
    assert f.session["identity"] == "resolver1"
    assert any(w.ip and w.ip.startswith("192.168.10.") for w in f.watched)
    fields = f.reasons[f.reason_codes.index("decoded-fields")]
    assert "query_name" in fields and "example" in fields
