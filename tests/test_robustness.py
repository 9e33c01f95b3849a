"""Damaged input never crashes a scan: mutated and cut copies of real samples."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mwtest import PCAPS

from detector.scan import scan_paths

SAMPLES = [
    "tzsp.pcap", "erspan-2-fragmented.pcap", "netflow-v9.pcap", "ipfix.pcap", "sflow-vxlan.pcap",
    "etsi-102232.pcap", "x2x3-xcc.pcap", "pcap-over-ip.pcap", "two-links.pcapng", "sll2.pcap",
    "pppoe-outer.pcap", "mpls-outer.pcap", "ipv6-ext-header.pcap", "unknown-shim.pcap",
]  # fmt: skip


@pytest.mark.parametrize("name", SAMPLES)
def test_mutated_samples_scan_without_crashing(name: str, tmp_path: Path) -> None:
    data = (PCAPS / name).read_bytes()
    rng = random.Random(name)
    head = 24 if name.endswith(".pcap") else 0
    for i in range(12):
        buf = bytearray(data)
        # Flip about one byte in a hundred past the file header, then maybe cut the file.
        for _ in range(max(1, len(buf) // 100)):
            pos = rng.randrange(head, len(buf))
            buf[pos] = rng.randrange(256)
        if i % 3 == 0:
            buf = buf[: rng.randrange(head + 1, len(buf))]
        path = tmp_path / f"m{i}-{name}"
        path.write_bytes(bytes(buf))
        result = scan_paths([str(path)])
        (inp,) = result.report.inputs
        assert inp.packets >= 0
        for f in result.report.findings:
            assert f.first_seen <= f.last_seen and 0.0 <= f.confidence <= 1.0
