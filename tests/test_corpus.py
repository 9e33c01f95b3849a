"""Every public capture in ../shared/pcaps/corpus and ../shared/pcaps/real is judged as its
MANIFEST.tsv role says:

- benign (and real's benign-tunnel / benign-other): no high or critical mirror or intercept
  finding, and no flow-export finding;
- mirror: a high or critical mirror or intercept finding of the named protocol;
- metadata-export: a flow-export finding of the named protocol.

The files are scanned in-process, in chunks, by a worker process from the moment the unit tests
begin, and by the test's own process for the chunks left when it runs; a file that raises
counts as wrong.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from pathlib import Path

import pytest
from mwtest import REAL, EarlyCalls, early, scan

from detector.severity import SEVERITY_ORDER

CORPUS = REAL.parent / "corpus"
CHUNK = 64  # files a call scans
# Real captures whose origin is undocumented ("could be overlay or mirror"): a mirror proven by
# its evidence (both directions inside one outer direction, nothing back) is right there too.
UNDOCUMENTED_ORIGIN = "could be overlay or mirror"
ROMAN = {"i": "1", "ii": "2", "iii": "3"}
# A summary of one finding: kind, protocol, severity, mirror proven, return packets.
Summary = tuple[str, str, str, bool, int]


def _protocol_names(field: str) -> set[str]:
    """Manifest protocol names as mirrorwatch names them ("ERSPAN(II)" → erspan-2,
    "NetFlow-v9" → netflow-v9, "IPFIX" → ipfix and psamp)."""
    names: set[str] = set()
    for raw in re.split(r"[,;]", field.lower()):
        name = raw.strip()
        m = re.fullmatch(r"erspan\((i+)\)", name)
        if m:
            name = f"erspan-{ROMAN[m.group(1)]}"
        if name and name != "-":
            names.add(name)
    if "ipfix" in names:
        names.add("psamp")
    return names


def _rows() -> list[tuple[str, Path, str, set[str], str]]:
    """(test id, path, role, protocols, note) for every manifest row present."""
    rows = []
    for root, name in ((CORPUS, "corpus"), (REAL, "real")):
        manifest = root / "MANIFEST.tsv"
        if not manifest.is_file():
            continue
        with open(manifest, newline="") as f:
            lines = [ln for ln in f if not ln.startswith("# role")]
        header = lines[0].lstrip("# ").rstrip("\n").split("\t")
        for rec in csv.DictReader(lines[1:], fieldnames=header, delimiter="\t"):
            protocols = rec.get("protocols") or rec.get("protocols_of_interest") or ""
            note = rec.get("note") or rec.get("notes") or ""
            rows.append(
                (f"{name}/{rec['file']}", root / rec["file"], rec["role"],
                 _protocol_names(protocols), note)
            )  # fmt: skip
    return rows


ROWS = _rows()


def _scan_one(path: Path) -> tuple[str, list[Summary], str]:
    """One file's findings, or the exception it raised (no finding is lost to a crash)."""
    try:
        report = scan(path)
    except Exception as exc:  # a crash is a wrong verdict, reported with the file
        return str(path), [], f"{type(exc).__name__}: {exc}"
    found = [
        (f.kind, f.protocol, f.severity, f.evidence.get("mirror_proven") is True,
         int(f.evidence.get("return_packets", 0) or 0))  # type: ignore[call-overload]
        for f in report.findings
    ]  # fmt: skip
    return str(path), found, ""


def _scan_chunk(paths: list[Path]) -> list[tuple[str, list[Summary], str]]:
    return [_scan_one(p) for p in paths]


@early("verdicts")
def _scanning() -> EarlyCalls[list[tuple[str, list[Summary], str]]]:
    paths = [p for _, p, *_ in ROWS]
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    return EarlyCalls([functools.partial(_scan_chunk, c) for c in chunks], python=True)


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[list[Summary], str]]:
    done = [one for chunk in _scanning().results() for one in chunk]
    return {path: (found, err) for path, found, err in done}


def wrong_because(role: str, protocols: set[str], note: str, found: list[Summary]) -> str | None:
    """Why a file's findings contradict its role, or None when they agree."""
    alarms = [
        f for f in found
        if f[0] in ("mirror", "intercept") and SEVERITY_ORDER[f[2]] >= SEVERITY_ORDER["high"]
    ]  # fmt: skip
    exports = [f for f in found if f[0] == "flow-export"]
    if role == "mirror":
        if not any(f[1] in protocols for f in alarms):
            return f"no high/critical {sorted(protocols)} finding"
    elif role == "metadata-export":
        if not any(f[1] in protocols for f in exports):
            return f"no flow-export of {sorted(protocols)}"
    else:
        if UNDOCUMENTED_ORIGIN in note:
            alarms = [f for f in alarms if not (f[3] and f[4] == 0)]
        if alarms:
            return "alarm on a benign file"
        if exports:
            return "flow-export on a benign file"
    return None


@pytest.mark.skipif(not ROWS, reason=f"public captures not present at {CORPUS} or {REAL}")
def test_every_capture_is_judged_as_its_role(
    verdicts: dict[str, tuple[list[Summary], str]],
) -> None:
    wrong = []
    for name, path, role, protocols, note in ROWS:
        found, err = verdicts[str(path)]
        why = err or wrong_because(role, protocols, note, found)
        if why:
            wrong.append(f"{name} ({role}): {why}: {[f[:3] for f in found]}")
    counts = Counter(f[:3] for found, _ in verdicts.values() for f in found)
    assert not wrong, (
        f"{len(wrong)} of {len(ROWS)} files judged wrong:\n"
        + "\n".join(wrong)
        + f"\nfindings by kind/protocol/severity: {dict(counts)}"
    )


def test_role_check_catches_each_kind_of_wrong_verdict() -> None:
    """The judge itself: each role rejects what contradicts it and accepts what fits."""
    pcli_alarm: Summary = ("intercept", "pcli", "critical", False, 0)
    tunnel: Summary = ("tunnel", "lisp", "info", False, 4)
    assert wrong_because("benign", set(), "", [pcli_alarm, tunnel])
    assert wrong_because("benign", set(), "", [("flow-export", "netflow-v1", "medium", False, 0)])
    assert wrong_because("benign", set(), "", [tunnel]) is None
    assert wrong_because("benign", set(), "", [("mirror", "tee-copy", "low", False, 0)]) is None
    erspan: Summary = ("mirror", "erspan-2", "high", False, 0)
    assert wrong_because("mirror", {"erspan-2"}, "", [erspan]) is None
    assert wrong_because("mirror", {"erspan-1"}, "", [erspan])
    assert wrong_because("mirror", {"erspan-2"}, "", [("mirror", "erspan-2", "medium", False, 0)])
    v9: Summary = ("flow-export", "netflow-v9", "medium", False, 0)
    assert wrong_because("metadata-export", {"netflow-v9"}, "", [v9]) is None
    assert wrong_because("metadata-export", {"ipfix", "psamp"}, "", [v9])
    proven: Summary = ("mirror", "vxlan", "high", True, 0)
    assert wrong_because("benign-tunnel", {"vxlan"}, UNDOCUMENTED_ORIGIN, [proven]) is None
    assert wrong_because("benign-tunnel", {"vxlan"}, "", [proven])


def test_manifest_names_map_to_protocols() -> None:
    assert _protocol_names("ERSPAN(II)") == {"erspan-2"}
    assert _protocol_names("IPFIX") == {"ipfix", "psamp"}
    assert _protocol_names("NetFlow-v9") == {"netflow-v9"}
    assert _protocol_names("-") == set()
