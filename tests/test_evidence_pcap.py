"""Evidence captures: outer and decapsulated packets per finding, readable by tshark and scapy."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, rdpcap
from scapy.utils import PcapNgReader

from detector.report.evidence_pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    inner_as_samples,
    write_capture,
    write_evidence,
)
from detector.scan import scan_paths

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark not installed (apt-get install tshark)"
)


def _tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    assert TSHARK is not None
    cmd = [TSHARK, "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, Path]]:
    names = ("tzsp-80211.pcap", "pcli.pcap", "erspan-2.pcap", "vxlan-overlay.pcap", "psamp.pcap")
    result = scan_paths([str(PCAPS / n) for n in names])
    out = tmp_path_factory.mktemp("evidence")
    paths = write_evidence(result, out, max_packets=7)
    return result, {p.name: p for p in paths}


def _one(files: dict[str, Path], protocol: str, side: str) -> Path:
    hits = [p for n, p in files.items() if n.endswith(f"-{protocol}-{side}.pcapng")]
    assert len(hits) == 1, (protocol, side, sorted(files))
    return hits[0]


def test_files_per_finding(written: tuple[object, dict[str, Path]]) -> None:
    result, files = written
    for f in result.report.findings:  # type: ignore[attr-defined]
        outer = [n for n in files if n.startswith(f.id) and n.endswith("-outer.pcapng")]
        inner = [n for n in files if n.startswith(f.id) and n.endswith("-inner.pcapng")]
        kept = result.evidence[f.id].outer_samples  # type: ignore[attr-defined]
        assert len(outer) == (1 if kept else 0)
        assert kept or f.kind == "tunnel", f.protocol
        # Tunnels carry their users' own traffic, not copies: no inner capture for them.
        assert len(inner) == (0 if f.kind == "tunnel" else 1), f.protocol
    assert len(files) >= 8


def test_bounded_and_timestamps_kept(written: tuple[object, dict[str, Path]]) -> None:
    result, files = written
    pcli = next(f for f in result.report.findings if f.protocol == "pcli")  # type: ignore[attr-defined]
    ev = result.evidence[pcli.id]  # type: ignore[attr-defined]
    outer = rdpcap(str(_one(files, "pcli", "outer")))
    inner = rdpcap(str(_one(files, "pcli", "inner")))
    assert len(outer) == len(inner) == 7
    for pkt, (ts, _, data) in zip(outer, ev.outer_samples, strict=False):
        assert bytes(pkt) == data
        assert abs(float(pkt.time) - ts) < 1e-6
    # PCLI carries bare IP packets: the inner file is raw IP, stamped with the outer times.
    assert all(IP in p and p[IP].src.startswith(("100.64.", "9.", "23.", "93.", "104.", "151."))
               for p in inner)  # fmt: skip
    assert [float(p.time) for p in inner] == [float(p.time) for p in outer]


@needs_tshark
@pytest.mark.parametrize(
    ("protocol", "outer_layer", "inner_chain"),
    [
        ("tzsp", "tzsp", "wlan:llc:ip"),
        ("pcli", "udp", "raw:ip"),
        ("erspan-2", "erspan", "eth:ethertype:ip"),
        ("psamp", "udp", "eth:ethertype:ip"),
    ],
)
def test_tshark_reads_them(
    written: tuple[object, dict[str, Path]], protocol: str, outer_layer: str, inner_chain: str
) -> None:
    _, files = written
    outer = _tshark_fields(_one(files, protocol, "outer"), "frame.protocols")
    assert len(outer) == 7 and all(outer_layer in row[0].split(":") for row in outer)
    inner = _tshark_fields(_one(files, protocol, "inner"), "frame.protocols")
    assert len(inner) == 7 and all(row[0].startswith(inner_chain) for row in inner)


def _samples() -> list[tuple[float, int, bytes]]:
    eth = bytes(Ether(dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="192.0.2.2") / UDP())
    raw = bytes(IP(src="198.51.100.1", dst="198.51.100.2") / TCP(dport=443))
    return [
        (1768471200.25, LINKTYPE_ETHERNET, eth),
        (1768471200.5, LINKTYPE_RAW, raw),
        (1768471201.75, LINKTYPE_ETHERNET, eth),
    ]


def test_mixed_link_types_make_pcapng(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "mixed.pcap", _samples(), "a comment")
    assert path.suffix == ".pcapng"
    assert struct.unpack_from("<I", path.read_bytes(), 8)[0] == 0x1A2B3C4D
    pkts = list(PcapNgReader(str(path)))
    assert [float(p.time) for p in pkts] == [1768471200.25, 1768471200.5, 1768471201.75]
    assert IP in pkts[1] and pkts[1][IP].dst == "198.51.100.2"
    assert Ether in pkts[0] and Ether in pkts[2]


@needs_tshark
def test_tshark_reads_pcapng_interfaces(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "mixed", _samples())
    rows = _tshark_fields(path, "frame.interface_id", "frame.protocols")
    assert rows == [
        ["0", "eth:ethertype:ip:udp"],
        ["1", "raw:ip:tcp"],
        ["0", "eth:ethertype:ip:udp"],
    ]


def test_inner_link_names_and_limits(tmp_path: Path) -> None:
    mapped = inner_as_samples([(1.0, "ieee80211", b"x"), (2.0, "ppp", b"y"), (3.0, "odd", b"z")])
    assert [lt for _, lt, _ in mapped] == [105, 9, 147]
    result = scan_paths([str(PCAPS / "tzsp.pcap")])
    assert write_evidence(result, tmp_path / "none", max_packets=0) == []
    one = write_evidence(result, tmp_path / "one", max_packets=1)
    assert sorted(p.name.rsplit("-", 1)[1] for p in one) == ["inner.pcapng", "outer.pcapng"]
    assert all(len(rdpcap(str(p))) == 1 for p in one)


@needs_tshark
def test_pcapng_names_the_decode_as_and_keeps_nanoseconds(
    written: tuple[object, dict[str, Path]], tmp_path: Path
) -> None:
    result, files = written
    assert all(p.suffix == ".pcapng" for p in files.values())
    pcli = next(f for f in result.report.findings if f.protocol == "pcli")  # type: ignore[attr-defined]
    path = _one(files, "pcli", "outer")
    assert TSHARK is not None
    info = subprocess.run(
        [str(Path(TSHARK).with_name("capinfos")), str(path)], capture_output=True, text=True
    ).stdout
    assert f"mirrorwatch finding {pcli.id}" in info
    assert "Decode As: tshark -d udp.port==40123,pcli, tshark -d pcli.payload,ip" in info
    assert "nanoseconds" in info
    # A nanosecond time stamp (not a microsecond one) goes through exactly.
    eth = bytes(Ether() / IP() / UDP())
    one = write_capture(tmp_path / "ns", [(1768471200.123456789, LINKTYPE_ETHERNET, eth)])
    (row,) = _tshark_fields(one, "frame.time_epoch")
    assert row[0].startswith("1768471200.1234567")  # float seconds keep ~0.24 µs here
    # Microsecond times are written as whole microseconds, without made-up digits.
    two = write_capture(tmp_path / "us", [(1768471200.364127, LINKTYPE_ETHERNET, eth)])
    assert _tshark_fields(two, "frame.time_epoch") == [["1768471200.364127000"]]
