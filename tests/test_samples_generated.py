"""The bundled sample captures are exactly what pcaps/generate.py produces."""

from __future__ import annotations

import csv
import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pcaps_generate", PCAPS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    load_generator().generate(out)
    return out


def test_committed_samples_match_generator(generated: Path) -> None:
    gen = load_generator()
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
    load_generator().generate(tmp_path, names)
    for name in names:
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes(), name


def test_expected_table_lists_every_sample() -> None:
    with (PCAPS / "expected.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    kinds = {"mirror", "intercept", "flow-export", "tunnel", "none"}
    assert {r["file"] for r in rows} == set(load_generator().SAMPLES)
    assert all(r["kind"] in kinds and r["protocol"] for r in rows)


def test_samples_start_at_the_fixed_time(generated: Path) -> None:
    magic, *_ = struct.unpack("<I", (generated / "tzsp.pcap").read_bytes()[:4])
    assert magic == 0xA1B2C3D4
    first_ts = struct.unpack("<I", (generated / "tzsp.pcap").read_bytes()[24:28])[0]
    assert 1_768_471_200 <= first_ts < 1_768_471_200 + 60
