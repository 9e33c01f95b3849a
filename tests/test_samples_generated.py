"""The bundled sample captures are exactly what pcaps/generate.py produces."""

from __future__ import annotations

import csv
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from mwtest import PCAPS, generating_samples, sample_generator


@pytest.fixture(scope="module")
def generated_samples() -> Iterator[Path]:
    """The samples as pcaps/generate.py writes them (started with the first unit test)."""
    out, runs = generating_samples()
    try:
        for run in runs.results():
            assert run.returncode == 0, run.stderr
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_committed_samples_match_generator(generated_samples: Path) -> None:
    gen = sample_generator()
    differing = [
        name
        for name in gen.SAMPLES
        if not (PCAPS / name).is_file()
        or (PCAPS / name).read_bytes() != (generated_samples / name).read_bytes()
    ]
    assert differing == [], f"regenerate with `python pcaps/generate.py`: {differing}"


def test_generation_is_repeatable(generated_samples: Path, tmp_path: Path) -> None:
    # A subset generated on its own, in this process, equals the same files written by
    # generate.py runs of other subsets (per-sample seeds).
    names = ["erspan-3.pcap", "etsi-102232.pcap", "two-links.pcapng", "tzsp.pcap.gz"]
    sample_generator().generate(tmp_path, names)
    for name in names:
        assert (tmp_path / name).read_bytes() == (generated_samples / name).read_bytes(), name


def test_expected_table_lists_every_sample() -> None:
    with (PCAPS / "expected.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    kinds = {"mirror", "intercept", "flow-export", "tunnel", "none"}
    assert {r["file"] for r in rows} == set(sample_generator().SAMPLES)
    assert all(r["kind"] in kinds and r["protocol"] for r in rows)


def test_samples_start_at_the_fixed_time(generated_samples: Path) -> None:
    magic, *_ = struct.unpack("<I", (generated_samples / "tzsp.pcap").read_bytes()[:4])
    assert magic == 0xA1B2C3D4
    first_ts = struct.unpack("<I", (generated_samples / "tzsp.pcap").read_bytes()[24:28])[0]
    assert 1_768_471_200 <= first_ts < 1_768_471_200 + 60
