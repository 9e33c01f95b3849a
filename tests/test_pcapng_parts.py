"""pcapng files cut into parts for several workers read as one reader reads them whole."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from mwtest import PCAPS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from test_formats import stable

from detector import parts
from detector.capture import reader, sections
from detector.capture.reader import InputStats, open_stream, read_batches
from detector.scan import scan_paths

Packet = tuple[bytes, float, int]  # bytes, time, link type


def block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body += bytes(-len(body) % 4)
    n = len(body) + 12
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def section(endian: str) -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def interface(link: int, endian: str, nanoseconds: bool = False) -> bytes:
    options = struct.pack(endian + "HHB3x", 9, 1, 9) if nanoseconds else b""
    options += struct.pack(endian + "HH", 0, 0)
    return block(1, struct.pack(endian + "HHI", link, 0, 262144) + options, endian)


def packet(frame: bytes, ts: float, iface: int, endian: str, per_second: int = 10**6) -> bytes:
    t = round(ts * per_second)
    head = struct.pack(endian + "IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame))
    return block(6, head + frame, endian)


def sample_packets(name: str) -> list[Packet]:
    out: list[Packet] = []
    for b in read_batches(open_stream(str(PCAPS / name)), InputStats(name)):
        out += [(b.packet(i), float(b.ts[i]), int(b.linktype[i])) for i in range(len(b))]
    return out


def look_alike() -> bytes:
    """A UDP packet whose payload is a chain of plausible pcapng blocks (an interface, then
    packets): a cut that trusted what it sees would start a part inside it."""
    fake = interface(147, "<") + b"".join(packet(bytes([i]) * 40, 1.0, 0, "<") for i in range(3))
    outer = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1")
    return bytes(outer / UDP(dport=9) / fake)


def two_sections() -> tuple[bytes, dict[str, int]]:
    """Section 1, little-endian: an Ethernet interface, then a second one (nanosecond ticks)
    added mid-file, a look-alike packet; section 2, big-endian, with interfaces of its own.
    Returns the file and the offsets of its landmarks."""
    mark: dict[str, int] = {}
    out = section("<") + interface(1, "<")
    for p, ts, _ in sample_packets("tzsp.pcap") + sample_packets("netflow-v9.pcap"):
        out += packet(p, ts, 0, "<")
    mark["interface added"] = len(out)
    out += interface(1, "<", nanoseconds=True)
    for n, (p, ts, _) in enumerate(sample_packets("erspan-2.pcap")):
        out += packet(p, ts, 1 - n % 2, "<", 10**9 if n % 2 == 0 else 10**6)
    mark["look-alike"] = len(out)
    out += packet(look_alike(), 1_700_000_100.0, 0, "<")
    mark["second section"] = len(out)
    out += section(">") + interface(101, ">") + interface(1, ">")
    for p, ts, _ in sample_packets("vxlan-mirror-8472.pcap"):
        out += packet(p, ts, 1, ">")
    for p, ts, _ in sample_packets("ipfix.pcap"):
        out += packet(p[14:], ts, 0, ">")  # as raw IP
    mark["end"] = len(out)
    return out, mark


def read_parts(path: Path, cuts: list[int]) -> tuple[list[Packet], list[str]]:
    got: list[Packet] = []
    errors: list[str] = []
    pieces = parts.pcapng_parts(str(path), cuts)
    assert len(pieces) <= len(cuts) + 1
    for part in pieces:
        stream, window = parts.open_part(part)
        stats = InputStats(str(path))
        for b in read_batches(stream, stats, window=window):
            got += [(b.packet(i), float(b.ts[i]), int(b.linktype[i])) for i in range(len(b))]
        stream.close()
        errors += stats.errors
    return got, errors


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    data, mark = two_sections()
    path = tmp_path_factory.mktemp("ng") / "two-sections.pcapng"
    path.write_bytes(data)
    return path, mark


def test_every_cut_gives_each_packet_once_as_the_whole_file_reads_it(
    capture: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, mark = capture
    monkeypatch.setattr(sections, "CHUNK", 997)  # the header walk reads across its chunks
    whole, errors = read_parts(path, [])
    assert not errors and {link for _, _, link in whole} == {1, 101}
    look = mark["look-alike"]
    targets = [
        *range(look - 4, look + 260, 3),  # in and around the block that looks like blocks
        *range(mark["interface added"] - 8, mark["interface added"] + 120, 5),
        *range(mark["second section"] - 8, mark["second section"] + 160, 7),
        1,
        mark["end"] // 3,
        mark["end"] - 1,
        mark["end"] + 10,
    ]
    for t in targets:
        assert read_parts(path, [t]) == (whole, []), t
    assert read_parts(path, [mark["end"] // 4, look + 1, mark["second section"] + 50]) == (
        whole,
        [],
    )


def test_a_part_after_a_broken_chain_reads_nothing(
    capture: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    path, mark = capture
    data = bytearray(path.read_bytes())
    # An impossible length in the block after the interface added mid-file.
    at = mark["interface added"] + struct.unpack_from("<I", data, mark["interface added"] + 4)[0]
    struct.pack_into("<I", data, at + 4, 7)
    broken = tmp_path / "broken.pcapng"
    broken.write_bytes(bytes(data))
    whole, errors = read_parts(broken, [])
    assert errors == [f"pcapng block at byte {at}: impossible length 7; the rest of the file is "
                      "unreadable"]  # fmt: skip
    for cuts in ([at - 100], [at], [at + 1], [at - 100, mark["end"] // 2 + at // 2]):
        assert read_parts(broken, cuts) == (whole, errors), cuts


@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_report_what_one_process_does(
    capture: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    path, _ = capture
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 10)
    assert len(parts.plan([str(path)], jobs)) == jobs
    one = scan_paths([str(path)], jobs=1).report
    many = scan_paths([str(path)], jobs=jobs).report
    assert many.stats.pop("workers") == jobs and one.stats.pop("workers") == 1
    # Flow counts are per engine: a flow seen by two workers counts in both.
    for key in ("flows", "peak_flows"):
        assert many.stats.pop(key) >= one.stats.pop(key) // jobs
    assert one.stats == many.stats
    # Watched hosts are the most seen of a bounded tally per engine: as many, not the same.
    assert [len(f.watched) for f in one.findings] == [len(f.watched) for f in many.findings]
    assert [stable(f) | {"watched": []} for f in one.findings] == [
        stable(f) | {"watched": []} for f in many.findings
    ]
    assert len(one.findings) >= 4
    assert [(i.packets, i.bytes, i.errors) for i in one.inputs] == [
        (i.packets, i.bytes, i.errors) for i in many.inputs
    ]


def test_blocks_of_every_packet_kind_read_alike_in_batches_of_any_size(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Simple packet blocks (no time: the last one before them), obsolete packet blocks, damaged
    ones, an unknown block type: the same packets, times and errors however batches fall."""
    out = section("<") + interface(1, "<")
    for n, (p, ts, _) in enumerate(sample_packets("tzsp.pcap")):
        t = round(ts * 1e6)
        if n % 5 == 1:
            out += block(3, struct.pack("<I", len(p)) + p)  # simple packet block
        elif n % 5 == 2:
            out += block(
                2, struct.pack("<HHIIII", 0, 0, t >> 32, t & 0xFFFFFFFF, len(p), len(p)) + p
            )
        elif n % 7 == 3:
            out += block(2, struct.pack("<HHIIII", 5, 0, 0, 0, len(p), len(p)) + p)
        elif n % 11 == 4:
            out += block(6, struct.pack("<IIIII", 0, 0, 0, 0, 0) + p)  # no captured bytes
        else:
            out += packet(p, ts, 0, "<")
        if n == 40:
            out += interface(101, "<", nanoseconds=True) + block(0x0BAD, b"xyz")
    path = tmp_path / "kinds.pcapng"
    path.write_bytes(out)
    whole, errors = read_parts(path, [])
    assert errors and all("unknown interface 5" in e or "length 0" in e for e in errors)
    assert all(ts > 1e9 for _, ts, _ in whole)  # every simple packet took a time
    for per_batch in (1, 2, 7):
        monkeypatch.setattr(reader, "MAX_BATCH_RECORDS", per_batch)
        assert read_parts(path, []) == (whole, errors)


STABLE_JSON = ("kind", "protocol", "severity", "reason_codes", "exporter", "collector",
               "packets", "bytes", "first_seen", "last_seen", "session")  # fmt: skip


@pytest.mark.parametrize("name", ["two-sections.pcapng", "tzsp.pcap"])
def test_standard_input_reports_alike_with_any_number_of_workers(
    capture: tuple[Path, dict[str, int]], name: str
) -> None:
    # A pipe is read by one process (spreading it over workers measured slower): -j 2 must
    # still report what -j 1 does.
    path = capture[0] if name.endswith(".pcapng") else PCAPS / name
    runs = []
    for jobs in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "detector.cli", "scan", "-q", "--format", "json", "-j", jobs,
             "-"],
            input=path.read_bytes(), capture_output=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        report = json.loads(proc.stdout)
        assert report["stats"]["workers"] == 1
        runs.append(
            (report["inputs"], [{k: f.get(k) for k in STABLE_JSON} for f in report["findings"]])
        )
    assert runs[0] == runs[1] and runs[0][1]
