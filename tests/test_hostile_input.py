"""Packets an attacker can send onto the watched network: none may crash, stop or blind a scan.

Each capture is crafted byte by byte; each case once crashed the verdict, the reader or the
report, or silently ended the reading of its file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from craft import T0, ipfix_with_field, pcap, pcapng, record, tzsp_mirror, udp
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from detector.capture.reader import BLOCK_SIZE, InputStats, reading
from detector.cli import main
from detector.decode.slowpath import Reassembler
from detector.evidence import FACT_TEXT_MAX, fact_text
from detector.findings import Report
from detector.report.html import render_html
from detector.report.text import render_text
from detector.scan import scan_paths


def conversation(ip: type[IP] | type[IPv6], src: str, dst: str) -> list[bytes]:
    """Twelve carried DNS-like datagrams between two hosts."""
    eth = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
    return [bytes(eth / ip(src=src, dst=dst) / UDP(sport=5000 + i, dport=53) / Raw(b"q" * 20))
            for i in range(12)]  # fmt: skip


V4_INNER = conversation(IP, "10.1.1.1", "10.1.1.2")


def scan_bytes(tmp_path: Path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return scan_paths([str(path)])


def protocols(result) -> list[str]:
    return sorted(f.protocol for f in result.report.findings)


def test_huge_ipfix_field_neither_stops_reading_nor_hides_a_later_mirror(tmp_path: Path) -> None:
    # samplingInterval (IE 34) of 2,000 bytes: a 4,800-digit number if read as one.
    export = udp("10.0.0.1", "10.0.0.2", 40000, 4739, ipfix_with_field(34, b"\x07" * 2000))
    result = scan_bytes(tmp_path, "ipfix.pcap", pcap([export, *tzsp_mirror(V4_INNER)]))
    (inp,) = result.report.inputs
    assert inp.errors == [] and inp.packets == 13
    assert protocols(result) == ["ipfix", "tzsp"]
    assert "reading stopped" not in render_text(result.report)


def test_wide_numbers_of_many_values_render(tmp_path: Path) -> None:
    # Several distinct 200-byte values: the verdict shows a numeric fact's range when it has
    # more than three values.
    exports = [
        udp("10.0.0.1", "10.0.0.2", 40000, 4739, ipfix_with_field(34, bytes([i]) * 200, seq=i))
        for i in range(1, 7)
    ]
    result = scan_bytes(tmp_path, "wide.pcap", pcap(exports))
    (f,) = result.report.findings
    assert f.protocol == "ipfix"
    text = render_text(result.report) + render_html(result.report)
    assert "sampling_interval" not in text  # wider than unsigned64: not a number at all


def test_fact_text_is_bounded() -> None:
    assert fact_text(2**64 - 1) == str(2**64 - 1)
    huge = fact_text(int.from_bytes(b"\xab" * 2000, "big"))
    assert huge.startswith("0xabababab") and "16000 bits" in huge and len(huge) < 64
    assert len(fact_text("x" * 100_000)) == FACT_TEXT_MAX + 1


def test_tzsp_carrying_ipv6_whose_address_looks_like_a_mac(tmp_path: Path) -> None:
    # "1::22:3:4abc:5678" has 17 characters and 5 colons, as a MAC written out does.
    inner = conversation(IPv6, "1::22:3:4abc:5678", "2001:db8::1")
    result = scan_bytes(tmp_path, "tzsp6.pcap", pcap(tzsp_mirror(inner)))
    (f,) = result.report.findings
    assert f.protocol == "tzsp"
    watched = {w.ip: w.mac for w in f.watched}
    assert watched["1::22:3:4abc:5678"] == "02:00:00:00:00:0a"
    assert "1::22:3:4abc:5678" in render_text(result.report)


def ping_of_death(ident: int) -> list[bytes]:
    """IPv4 fragments whose payload reassembles to 65,602 bytes (more than a datagram holds)."""
    payload = b"\x08\x00" + b"A" * 65600
    frames = []
    for off in range(0, len(payload), 1480):
        more = off + 1480 < len(payload)
        ip = IP(src="10.9.9.9", dst="10.0.0.2", proto=17, id=ident, flags="MF" if more else 0,
                frag=off // 8) / Raw(payload[off : off + 1480])  # fmt: skip
        frames.append(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip))
    return frames


def test_ping_of_death_is_dropped_and_scanning_goes_on(tmp_path: Path) -> None:
    data = pcap([*ping_of_death(7), *tzsp_mirror(V4_INNER)], step=0)
    result = scan_bytes(tmp_path, "pod.pcap", data)
    assert protocols(result) == ["tzsp"]
    reasm = Reassembler()
    got = [reasm.add(f, 14, 0.0, len(f)) for f in ping_of_death(8)]
    assert got == [None] * len(got) and reasm.oversized == 1 and not reasm.pending


def test_timestamp_far_past_year_9999_renders(tmp_path: Path) -> None:
    us = 293_506 * 365 * 86400 * 10**6  # microseconds since 1970: the year 293,506
    frames = tzsp_mirror(V4_INNER)
    result = scan_bytes(tmp_path, "far.pcapng", pcapng(frames, [us + i for i in range(12)]))
    assert protocols(result) == ["tzsp"]
    page = render_html(result.report, result.timeline, result.evidence)
    assert "9999-12-31" in page
    assert "9999-12-31" in render_text(result.report)


def test_record_larger_than_the_block_is_read(tmp_path: Path) -> None:
    # A snap length just under 16 MiB makes a record of that size legal; it no longer fits the
    # reader's block, whose previous batch is still held by the consumer when it grows.
    snap = (1 << 24) - 1
    assert snap + 16 > BLOCK_SIZE
    frames = [bytes(f) for f in tzsp_mirror(V4_INNER)]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snap, 1)
    data = (
        head
        + b"".join(record(f, T0) for f in frames[:6])
        + record(bytes(snap), T0)
        + b"".join(record(f, T0 + 1) for f in frames[6:])
    )
    result = scan_bytes(tmp_path, "big.pcap", data)
    (inp,) = result.report.inputs
    assert inp.packets == 13 and inp.errors == []
    assert protocols(result) == ["tzsp"]


def test_reading_does_not_take_a_consumer_fault_for_the_end_of_input() -> None:
    stats = InputStats("x")

    def batches():
        yield 1
        yield 2

    with pytest.raises(ValueError, match="engine"):
        for _ in reading(batches(), stats):  # type: ignore[arg-type]
            raise ValueError("engine")
    assert stats.errors == []

    def failing():
        yield 1
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    assert list(reading(failing(), stats)) == [1]  # type: ignore[arg-type]
    assert stats.errors == [
        "reading stopped: Compressed file ended before the end-of-stream marker was reached"
    ]


def test_engine_fault_exits_2_with_one_line_naming_the_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mirror.pcap"
    path.write_bytes(pcap(tzsp_mirror(V4_INNER)))

    def broken(self: object, batch: object) -> None:
        raise ValueError("invalid literal for int() with base 16: '1:'")

    monkeypatch.setattr("detector.engine.Engine.process", broken)
    for cmd in (["scan", "-q"], ["report", "-q", "-o", str(tmp_path / "r.html")]):
        r = CliRunner().invoke(main, [*cmd, str(path)])
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr
        assert str(path) in lines[0] and "bug" in lines[0] and "ValueError" in lines[0]


def test_any_session_or_fact_a_decoder_returns_is_judged_and_shown_bounded() -> None:
    from detector.evidence import StreamEvidence
    from detector.policy.verdict import PolicyContext, judge
    from detector.protocols.base import Decoded

    s = StreamEvidence(key=1, flow_key=1, direction=0, protocol="ipfix", kind="flow-export",
                       transport="udp", src="192.0.2.1", dst="192.0.2.2", sport=1, dport=4739,
                       first_seen=T0, last_seen=T0 + 9)  # fmt: skip
    for i in range(8):
        huge = int.from_bytes(bytes([i + 1]) * 300, "big")
        session: dict[str, int | str] = {"liid": "\x1b[2J" * 10_000, "domain": huge}
        facts: dict[str, object] = {"sequence": huge, "rate": 10**400 + i, "label": "y" * 10**4}
        d = Decoded("ipfix", "flow-export", "0a 00", session=session, facts=facts)
        s.add(d, 1.0, T0 + i)
    ((finding, _),) = judge([s], PolicyContext())
    text = render_text_of(finding)
    assert len(text) < 20_000 and "\x1b" not in text
    assert all(len(str(v)) <= 260 for v in finding.session.values())


def render_text_of(finding) -> str:
    report = Report(version="0", inputs=[], stats={}, findings=[finding])
    return render_text(report) + render_html(report)
