"""The bundled sample captures are exactly what pcaps/generate.py produces."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest
from mwtest import PCAPS, sample_generator


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    sample_generator().generate(out)
    return out


def test_committed_samples_match_generator(generated: Path) -> None:
    gen = sample_generator()
    differing = [
        name
        for name in gen.SAMPLES
        if not (PCAPS / name).is_file()
        or (PCAPS / name).read_bytes() != (generated / name).read_bytes()
    ]
    assert differing == [], f"regenerate with `python pcaps/generate.py`: {differing}"


def test_generation_is_repeatable(generated: Path, tmp_path: Path) -> None:
    # A subset generated on its own equals the same files from the full run (per-sample seeds).
    names = ["erspan-3.pcap", "etsi-102232.pcap", "two-links.pcapng", "tzsp.pcap.gz"]
    sample_generator().generate(tmp_path, names)
    for name in names:
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes(), name


def test_expected_table_lists_every_sample() -> None:
    with (PCAPS / "expected.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    kinds = {"mirror", "intercept", "flow-export", "tunnel", "none"}
    assert {r["file"] for r in rows} == set(sample_generator().SAMPLES)
    assert all(r["kind"] in kinds and r["protocol"] for r in rows)


def test_samples_start_at_the_fixed_time(generated: Path) -> None:
    magic, *_ = struct.unpack("<I", (generated / "tzsp.pcap").read_bytes()[:4])
    assert magic == 0xA1B2C3D4
    first_ts = struct.unpack("<I", (generated / "tzsp.pcap").read_bytes()[24:28])[0]
    assert 1_768_471_200 <= first_ts < 1_768_471_200 + 60
