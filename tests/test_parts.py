"""Scanning on two cores gives the report one engine gives."""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from mwtest import PCAPS, uplink_capture

from detector import parts, scan
from detector.capture import reader
from detector.cli import main
from detector.scan import auto_jobs, scan_paths


@pytest.fixture(scope="module")
def uplink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uplink_capture(tmp_path_factory.mktemp("bench") / "uplink.pcap", 40000)


def test_cut_falls_on_a_record_boundary(uplink: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 20)
    groups = parts.plan([str(uplink)], 2)
    assert len(groups) == 2
    (a,), (b,) = groups
    assert a.end == b.start and a.start == 0 and b.end is None
    # Reading the two parts gives every packet once.
    seen = []
    for part in (a, b):
        _, inputs, bad = parts.run_parts([part])
        assert not bad and not inputs[0].errors
        seen.append(inputs[0].packets)
    whole = scan_paths([str(uplink)]).report.stats["packets"]
    assert sum(seen) == whole and min(seen) > 0.3 * whole


def test_a_part_tells_how_far_it_has_been_read(
    uplink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress of a part read in this process (the first of a file cut for -j 2) moves with
    its blocks and ends at the part's size, not at zero until the end."""
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(reader, "BLOCK_SIZE", 1 << 20)
    reader.release_blocks()  # a spare block of another size must not serve this read
    ((first,), _) = parts.plan([str(uplink)], 2)
    told: list[int] = []
    parts.run_parts([first], told.append)
    size = first.end - first.start
    assert len(told) > 3 and told == sorted(told)
    assert 0 < told[0] < size // 2 and size <= told[-1] <= size + 24


def test_two_workers_report_what_one_engine_does(
    uplink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 20)
    one = scan_paths([str(uplink)], jobs=1).report
    two = scan_paths([str(uplink)], jobs=2).report
    assert two.stats["workers"] == 2 and one.stats["workers"] == 1
    for key in ("packets", "bytes", "ip_packets"):
        assert one.stats[key] == two.stats[key], key
    assert [(f.id, f.protocol, f.severity) for f in one.findings] == [
        (f.id, f.protocol, f.severity) for f in two.findings
    ]
    for f, g in zip(one.findings, two.findings, strict=True):
        assert (f.packets, f.bytes, f.first_seen, f.last_seen) == (
            g.packets, g.bytes, g.first_seen, g.last_seen,
        )  # fmt: skip
        # Watched hosts come from a sample of each stream: the same in size, not host by host.
        assert bool(f.watched) == bool(g.watched)
        c1, c2 = f.evidence.get("carried_packets", 0), g.evidence.get("carried_packets", 0)
        assert abs(float(c1) - float(c2)) <= 0.25 * max(float(c1), 1.0)
    assert [i.packets for i in one.inputs] == [i.packets for i in two.inputs]


def _failing_in_workers(how: str) -> Callable[..., object]:
    """``parts.read_runs`` that fails in a forked worker only (``how``: "raise" or "die")."""
    parent, real = os.getpid(), parts.read_runs

    def run(*args: object, **kwargs: object) -> object:
        if os.getpid() != parent:
            if how == "die":
                os._exit(3)
            raise parts.ScanFault("worker fault")
        return real(*args, **kwargs)

    return run


@pytest.mark.parametrize(("how", "said"), [("raise", "worker fault"), ("die", "exit status 3")])
def test_a_worker_that_fails_or_dies_fails_the_scan(
    how: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its error reaches the caller; a worker that ends without a result does not leave the
    scan waiting for one."""
    monkeypatch.setattr(parts, "read_runs", _failing_in_workers(how))
    tzsp = parts.Part(str(PCAPS / "tzsp.pcap"))
    with pytest.raises(parts.ScanFault, match=said):
        parts.scan_parts([[tzsp], [tzsp]])


def test_compressed_inputs_are_read_whole_and_pcapng_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 100)
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress((PCAPS / "tzsp.pcap").read_bytes()))
    ng = str(PCAPS / "two-links.pcapng")
    assert parts._midpoint(str(gz)) is None and parts._midpoint(ng) is None
    assert parts.pcapng_cuts(str(gz), 2) == []
    # Whole inputs are still spread over the workers, in order; pcapng is cut in two, at the
    # first block past its middle.
    groups = parts.plan([str(gz), ng], 2)
    assert len(groups) == 2
    (cut,) = parts.pcapng_cuts(ng, 2)
    (_, second) = parts.pcapng_parts(ng, [cut])
    assert cut <= second.start < cut + 2000 and second.head[:4] == b"\x0a\x0d\x0d\x0a"
    assert [(p.path, p.start, p.end) for g in groups for p in g] == [
        (str(gz), 0, None), (ng, 0, second.start), (ng, second.start, None),
    ]  # fmt: skip
    # Below the size worth a second process, one group.
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 30)
    assert len(parts.plan([str(gz), ng], 2)) == 1


def test_auto_jobs_fits_the_input_and_the_cores(tmp_path: Path) -> None:
    small = str(PCAPS / "tzsp.pcap")
    big = tmp_path / "big.pcap"
    with big.open("wb") as f:
        f.write((PCAPS / "tzsp.pcap").read_bytes())
        f.truncate(200 << 20)  # sparse: only its size and its first bytes are looked at
    assert auto_jobs([small], cores=2) == 1  # not worth a second process
    assert auto_jobs([str(big)], cores=1) == 1
    assert auto_jobs([str(big)], cores=2) == 2
    assert auto_jobs([str(big)], cores=64) == 3  # one per 64 MiB
    assert auto_jobs([small, "-"], cores=4) == 1
    # Inputs that cannot be cut: one worker each at most.
    packed = tmp_path / "big.pcap.gz"
    packed.write_bytes(gzip.compress(small_bytes := (PCAPS / "tzsp.pcap").read_bytes()))
    with packed.open("ab") as f:
        f.truncate(200 << 20)
    assert small_bytes and auto_jobs([str(packed)], cores=2) == 1
    assert auto_jobs([str(packed), str(packed)], cores=4) == 2
    assert auto_jobs([str(packed), str(big)], cores=4) == 4


def test_auto_jobs_takes_every_usable_core_however_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A core that other work keeps busy still reads its share: the pieces its process has not
    begun go to the others."""
    big = tmp_path / "big.pcap"
    with big.open("wb") as f:
        f.write((PCAPS / "tzsp.pcap").read_bytes())
        f.truncate(200 << 20)
    monkeypatch.setattr(os, "getloadavg", lambda: (4.8, 4.8, 4.8))
    for usable, jobs in ((2, 2), (1, 1)):
        monkeypatch.setattr(scan, "usable_cores", lambda usable=usable: usable)
        assert auto_jobs([str(big)]) == jobs


def test_jobs_option_takes_a_number_or_auto() -> None:
    runner = CliRunner()
    sample = str(PCAPS / "tzsp.pcap")
    for jobs in ("auto", "1", "2"):
        r = runner.invoke(main, ["scan", sample, "--format", "json", "-q", "-j", jobs])
        assert r.exit_code in (0, 1), r.output
        assert json.loads(r.stdout)["stats"]["workers"] == 1  # a small input: one process
    r = runner.invoke(main, ["scan", sample, "-j", "0"])
    assert r.exit_code == 2 and "1-64" in r.output


def test_files_of_large_records_are_cut_on_record_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records of 9,000 bytes: the records that must chain from a cut point run past the short
    first read, so the long one finds it."""
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 20)
    path = tmp_path / "jumbo.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    starts, out = [], [header]
    at = len(header)
    for i in range(400):
        frame = bytes([i % 256]) * 9000
        starts.append(at)
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
        at += 16 + len(frame)
    path.write_bytes(b"".join(out))
    cuts = parts.cut_points(str(path), 4)
    # Each the first record at or after its quarter of the file.
    assert cuts == [min(s for s in starts if s >= at * k // 4) for k in (1, 2, 3)]
