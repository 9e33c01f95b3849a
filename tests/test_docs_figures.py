"""The figures the documentation quotes are the ones the code uses: every ``[thresholds]``,
``[limits]`` and ``[detection]`` key in its table with its default, and the sampling, windows
and budgets that docs/how-it-works.md and the plain-copy page give in prose."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from detector.decode.slowpath import PIECE_OVERHEAD
from detector.detection import Detection
from detector.evidence import SAMPLES_BY_KIND
from detector.flows import copies
from detector.flows.fingerprint import RANK_BITS
from detector.flows.tcp import SEGMENT_OVERHEAD
from detector.limits import Limits
from detector.policy.verdict import MAX_WATCHED, Thresholds
from detector.protocols import registry
from detector.protocols.base import PREFILTER_BYTES
from detector.scan import scan_paths

ROOT = Path(__file__).resolve().parents[1]
DOCS, PCAPS = ROOT / "docs", ROOT / "pcaps"
# Figures the prose spells out in words.
WORDS = {
    "a quarter": 0.25,
    "half": 0.5,
    "half a second": 0.5,
    "ten seconds": 10.0,
    "an hour": 3600,
    "six": 6,
}


def table_rows(text: str, first_key: str) -> dict[str, str]:
    """Key → default of the table holding the row of ``first_key`` (a row naming two keys with
    two comma-separated defaults gives each its own)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"| `{first_key}` |"))
    while at > 0 and lines[at - 1].startswith("|"):
        at -= 1
    out: dict[str, str] = {}
    for line in lines[at + 2 :]:
        if not line.lstrip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        keys = re.findall(r"`(\w+)`", cells[0])
        values = [v.strip() for v in cells[1].split(",")]
        if len(values) == 1:
            values *= len(keys)
        out.update(zip(keys, values, strict=True))
    return out


def test_table_rows_reads_paired_keys() -> None:
    text = "| key | default |\n|---|---|\n| `a` | 1 |\n| `b`, `c` | 2, 3 |\n\nafter\n| `d` | 4 |"
    assert table_rows(text, "a") == {"a": "1", "b": "2", "c": "3"}


@pytest.mark.parametrize(
    ("page", "defaults"),
    [("config.md", Thresholds()), ("config.md", Limits()), ("how-it-works.md", Detection())],
    ids=["thresholds", "limits", "detection"],
)
def test_every_key_is_in_its_table_with_its_default(page: str, defaults: object) -> None:
    names = [f.name for f in fields(defaults)]  # type: ignore[arg-type]
    rows = table_rows((DOCS / page).read_text().replace("\n  |", "\n|"), names[0])
    missing = [n for n in names if n not in rows]
    assert not missing, f"docs/{page}: no row for {missing} in the table of {names[0]}"
    wrong = {
        n: (rows[n], getattr(defaults, n))
        for n in names
        if float(rows[n]) != float(getattr(defaults, n))
    }
    assert not wrong, f"docs/{page}: (documented, in the code) defaults differ: {wrong}"


TH, DET = Thresholds(), Detection()
PROSE = [
    # how-it-works.md
    ("how-it-works.md", r"looks at the first (\d+) payload bytes", PREFILTER_BYTES),
    ("how-it-works.md", r"Its first (\d+) packets are decoded in full", DET.full_decode),
    ("how-it-works.md", r"then a sample \(1 in (\d+),", DET.sample_stride),
    ("how-it-works.md", r"from (\d+) decoded on 1 in \d+;", DET.late_sample_after),
    ("how-it-works.md", r"from \d+ decoded on 1 in (\d+);", DET.late_sample_stride),
    ("how-it-works.md", r"a flow export 1 in (\d+);", DET.flow_export_stride),
    ("how-it-works.md", r"fail validation (six) times", DET.reject_after),
    (
        "how-it-works.md",
        r"only one of its packets in (\d+) is still tried",
        DET.reject_probe_stride,
    ),
    ("how-it-works.md", r"`guess_min_packets` \((\d+)\)", TH.guess_min_packets),
    ("how-it-works.md", r"`guess_min_hosts` \((\d+)\)", TH.guess_min_hosts),
    ("how-it-works.md", r"`guess_min_conversations` \((\d+)\)", TH.guess_min_conversations),
    ("how-it-works.md", r"`capture_time_slack` \(([^)]+)\)", TH.capture_time_slack),
    ("how-it-works.md", r"at least (a quarter) of them \(`both_way_share`\)", TH.both_way_share),
    (
        "how-it-works.md",
        r"fewer than (\d+) carried packets\s+\(`min_decide_packets`\)",
        TH.min_decide_packets,
    ),
    ("how-it-works.md", r"is remembered for (ten seconds)", copies.WINDOW),
    ("how-it-works.md", r"down to one\s+packet in (\d+)\)", 1 << RANK_BITS),
    ("how-it-works.md", r"at least (\d+) checked \(`min_copy_checks`\)", TH.min_copy_checks),
    (
        "how-it-works.md",
        r"and (half) of them\s+matching \(`copy_match_share`\)",
        TH.copy_match_share,
    ),
    ("how-it-works.md", r"seen twice within ([\d.]+) s", copies.TEE_WINDOW),
    ("how-it-works.md", r"up\s+to (\d+) hosts \(`targeted_hosts`\)", TH.targeted_hosts),
    ("how-it-works.md", r"at least (\d+) % \(`targeted_share`\)", TH.targeted_share * 100),
    (
        "how-it-works.md",
        r"at least (\d+) hosts\s+\(`targeted_link_hosts`\)",
        TH.targeted_link_hosts,
    ),
    ("how-it-works.md", r"from\s+the first (\d+) packets and then a sample", DET.full_decode),
    ("how-it-works.md", r"in full for their first (\d+)\s+packets", DET.full_decode),
    ("how-it-works.md", r"then one packet in (\d+), each", DET.flow_export_stride),
    ("how-it-works.md", r"records weighted\s+by (\d+)", DET.flow_export_stride),
    ("how-it-works.md", r"enough carried packets \((\d+) by default\)", TH.min_decide_packets),
    # the plain-copy page
    ("formats/tee-copy.md", r"down to one\s+in (\d+) on a busy one", 1 << RANK_BITS),
    ("formats/tee-copy.md", r"is remembered for (ten seconds)", copies.WINDOW),
    ("formats/tee-copy.md", r"within (half a second)", copies.TEE_WINDOW),
    (
        "formats/tee-copy.md",
        r"sighting of a remembered packet within ([\d.]+) s",
        copies.TEE_WINDOW,
    ),
    # budgets and evidence sizes
    ("config.md", r"each waiting segment is charged (\d+) bytes more", SEGMENT_OVERHEAD),
    ("config.md", r"each fragment charged (\d+) bytes more", PIECE_OVERHEAD),
    ("config.md", r"tunnels keep (\d+),", SAMPLES_BY_KIND["tunnel"]),
    ("config.md", r"flow exports (\d+)\)", SAMPLES_BY_KIND["flow-export"]),
    ("schema.md", r"largest first, at most (\d+):", MAX_WATCHED),
]


def figure(text: str) -> float:
    return WORDS[text] if text in WORDS else float(text)


@pytest.mark.parametrize(("page", "pattern", "value"), PROSE, ids=[p[1] for p in PROSE])
def test_prose_figures_are_the_code_s(page: str, pattern: str, value: float) -> None:
    found = re.search(pattern, (DOCS / page).read_text())
    assert found, f"docs/{page} no longer says {pattern!r}: update it and this test together"
    assert figure(found.group(1)) == pytest.approx(value), (
        f"docs/{page}: {found.group(0)!r}, but the code uses {value}"
    )


def test_schema_names_every_stat_a_scan_reports() -> None:
    stats = scan_paths([str(PCAPS / "tzsp.pcap")], jobs=1).report.stats
    rows = (DOCS / "schema.md").read_text().splitlines()
    row = next(r for r in rows if r.startswith("| `stats`"))
    assert stats, "the scan reported no stats"
    missing = [k for k in stats if f"`{k}`" not in row]
    assert not missing, f"docs/schema.md's stats row does not name {missing}"


SPECS = registry.protocol_specs()


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.ports))
def test_every_usual_port_is_on_the_format_page(name: str) -> None:
    spec = SPECS[name]
    text = (DOCS / "formats" / spec.doc).read_text()
    missing = [p for p in spec.ports or () if not re.search(rf"(?<!\d){p}(?!\d)", text)]
    assert not missing, f"docs/formats/{spec.doc} does not give {name}'s usual ports {missing}"
