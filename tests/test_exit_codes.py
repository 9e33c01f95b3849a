"""Failure is loud: exit status 0 / 1 / 2 as the README says, checked before a long scan, and
damaged inputs keep what can be read."""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from craft import T0, pcapng, record, tzsp_mirror
from mwtest import PCAPS

import detector.capture.reader as reader
from detector.capture.reader import InputStats, open_stream, read_batches, reading
from detector.cli import main
from detector.scan import scan_paths

MIRROR = PCAPS / "tzsp.pcap"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a scan starts: these errors must be found before one."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the scan started")

    monkeypatch.setattr("detector.scan.scan_paths", refuse)


def test_empty_directory_exits_2(tmp_path: Path, no_scan: None) -> None:
    out = tmp_path / "out"
    for cmd in (["scan"], ["report", "-o", out], ["baseline", "-o", out], ["explain", "mw-0"]):
        r = run(*cmd, tmp_path)
        assert r.exit_code == 2, (cmd, r.output)
        assert "empty directory" in r.stderr


def test_directory_without_captures_exits_2_naming_what_it_skipped(
    tmp_path: Path, no_scan: None
) -> None:
    (tmp_path / "notes.txt").write_text("not a capture")
    (tmp_path / "report.pcap").write_text("named like one, but text")
    r = run("scan", tmp_path)
    assert r.exit_code == 2
    assert "no capture files" in r.stderr and "notes.txt" in r.stderr
    assert "report.pcap" in r.stderr


def test_captures_are_found_by_their_first_bytes(tmp_path: Path) -> None:
    data = MIRROR.read_bytes()
    (tmp_path / "dump.pcap1").write_bytes(data)  # tcpdump -C rotation
    (tmp_path / "span.dmp").write_bytes((PCAPS / "netflow-v9.pcap").read_bytes())
    (tmp_path / "noextension").write_bytes((PCAPS / "two-links.pcapng").read_bytes())
    (tmp_path / "old.gz").write_bytes(gzip.compress((PCAPS / "ipfix.pcap").read_bytes()))
    (tmp_path / "README").write_text("captures of last week")
    r = run("scan", "--format", "json", tmp_path)
    assert r.exit_code == 1, r.output  # the TZSP mirror is high
    assert "skipped 1 file(s)" in r.stderr and "README" in r.stderr
    assert '"protocol": "tzsp"' in r.stdout and '"protocol": "ipfix"' in r.stdout
    assert '"protocol": "netflow-v9"' in r.stdout
    assert r.stdout.count('"path":') == 4


def test_pcapng_with_a_bad_section_header_exits_2(tmp_path: Path) -> None:
    data = bytearray((PCAPS / "two-links.pcapng").read_bytes())
    data[8:12] = b"\x01\x02\x03\x04"  # byte-order magic
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(bytes(data))
    r = run("scan", "-q", bad)
    assert r.exit_code == 2
    assert "byte-order magic" in r.stdout


def test_input_damaged_from_its_first_record_exits_2(tmp_path: Path) -> None:
    frames = [bytes(f) for f in tzsp_mirror([b"\x00" * 60] * 3)]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    # Every record claims more than the snap length allows.
    bad = head + b"".join(struct.pack("<IIII", T0, 0, 1 << 30, 60) + f for f in frames)
    path = tmp_path / "bad.pcap"
    path.write_bytes(bad)
    assert run("scan", "-q", path).exit_code == 2


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_unwritable_output_exits_2_before_scanning(fmt: str, no_scan: None) -> None:
    r = run("scan", "--format", fmt, MIRROR, "-o", "/nonexistent/x.json")
    assert r.exit_code == 2
    assert "/nonexistent" in r.stderr and "does not exist" in r.stderr


def test_report_to_a_missing_directory_exits_2_before_scanning(no_scan: None) -> None:
    r = run("report", MIRROR, "-o", "/nonexistent/dir/x.html")
    assert r.exit_code == 2
    assert "Traceback" not in r.output and "/nonexistent/dir" in r.stderr


def test_stdin_twice_is_a_usage_error(no_scan: None) -> None:
    r = run("scan", "-", "-")
    assert r.exit_code == 2 and "only once" in r.stderr


def test_missing_input_is_a_usage_error(tmp_path: Path, no_scan: None) -> None:
    r = run("scan", tmp_path / "typo.pcap")
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_scan_output_is_written_whole(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text("previous report")
    os.chmod(out, 0o640)
    r = run("scan", "-q", "--format", "json", MIRROR, "-o", out)
    assert r.exit_code == 1
    assert '"protocol": "tzsp"' in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left


def test_baseline_never_replaces_its_output_with_nothing(tmp_path: Path) -> None:
    keep = tmp_path / "keep.toml"
    reviewed = "# reviewed by hand\n[[expected]]\nprotocol = 'tzsp'\n"
    keep.write_text(reviewed)
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture")
    for inputs in ([tmp_path / "typo"], [junk], [junk, MIRROR]):
        r = run("baseline", *inputs, "-o", keep)
        assert r.exit_code == 2, (inputs, r.output)
        assert keep.read_text() == reviewed
    assert "junk.pcap" in r.stderr and "not written" in r.stderr
    r = run("baseline", MIRROR, "-o", keep)
    assert r.exit_code == 0
    assert keep.read_text().count("[[expected]]") == 1 and "reviewed" not in keep.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pcap", "keep.toml"]


def test_errors_name_the_record_where_they_are(tmp_path: Path) -> None:
    frames = [bytes(f) for f in tzsp_mirror([b"\x00" * 60] * 10)]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    empty = struct.pack("<IIII", T0 + 1, 5, 0, 0)  # a zero-length record
    records = [empty if i in (1, 4, 8) else record(f, T0) for i, f in enumerate(frames)]
    path = tmp_path / "holes.pcap"
    path.write_bytes(head + b"".join(records))
    (inp,) = scan_paths([str(path)]).report.inputs
    assert inp.errors == [f"record {n}: zero-length record skipped" for n in (2, 5, 9)]
    assert inp.packets == 7
    # pcapng: packets of an interface that was never described
    ng = bytearray(pcapng(frames[:5], [T0 * 10**6 + i for i in range(5)]))
    blocks = 28 + 20  # section header, interface description
    for n in (1, 3):
        at = blocks + sum(32 + len(f) + (-len(f) % 4) for f in frames[:n])
        ng[at + 8 : at + 12] = struct.pack("<I", 7)
    path.write_bytes(bytes(ng))
    (inp,) = scan_paths([str(path)]).report.inputs
    assert inp.errors == ["packet 2: unknown interface 7", "packet 4: unknown interface 7"]


def complete_records(data: bytes) -> int:
    """Whole records in the bytes of a little-endian pcap (all that inflates before damage)."""
    pos, n = 24, 0
    while pos + 16 <= len(data) and pos + 16 + struct.unpack_from("<I", data, pos + 8)[0] <= len(
        data
    ):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    return n


def gz_sample(tmp_path: Path, damage: str) -> Path:
    packed = gzip.compress(MIRROR.read_bytes(), mtime=0)
    if damage == "truncated":
        packed = packed[: len(packed) * 2 // 3]
    else:  # the CRC of the trailer
        packed = packed[:-8] + bytes([packed[-8] ^ 1]) + packed[-7:]
    path = tmp_path / f"{damage}.pcap.gz"
    path.write_bytes(packed)
    return path


@pytest.mark.parametrize("damage", ["truncated", "crc"])
def test_damaged_gzip_keeps_every_record_before_the_damage(tmp_path: Path, damage: str) -> None:
    path = gz_sample(tmp_path, damage)
    stats = InputStats(str(path))
    with open_stream(str(path)) as stream:
        got = sum(len(b) for b in reading(read_batches(stream, stats), stats))
    inflated = zlib.decompressobj(-15).decompress(path.read_bytes()[10:])  # trailer unchecked
    assert got == complete_records(inflated)
    assert stats.errors and stats.errors[-1].startswith("reading stopped:")
    result = scan_paths([str(path)])
    assert [f.protocol for f in result.report.findings] == ["tzsp"]
    assert result.report.inputs[0].errors == stats.errors


def test_gzip_that_inflates_like_a_bomb_ends_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "GZIP_RATIO_FROM", 1 << 20)
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path = tmp_path / "zeros.pcap.gz"
    path.write_bytes(gzip.compress(head + bytes(64 << 20), compresslevel=9))
    (inp,) = scan_paths([str(path)]).report.inputs
    assert any("inflates more than" in e for e in inp.errors)
    r = run("scan", "-q", path)
    assert r.exit_code == 2  # nothing could be read


def test_a_run_of_zero_bytes_is_skipped_whole(tmp_path: Path) -> None:
    frames = [bytes(f) for f in tzsp_mirror([b"\x00" * 60] * 4)]
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    data = head + record(frames[0], T0) + bytes(1 << 20) + b"".join(record(f, T0) for f in frames)
    path = tmp_path / "hole.pcap"
    path.write_bytes(data)
    (inp,) = scan_paths([str(path)]).report.inputs
    assert inp.packets == 5
    assert inp.errors == [f"records 2-65537 at byte {24 + 16 + len(frames[0])}: 1048576 zero "
                          "bytes skipped"]  # fmt: skip
