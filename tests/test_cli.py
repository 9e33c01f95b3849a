"""The command line: formats, exit codes, damaged input, stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from mwtest import PCAPS

from detector.cli import main


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_json_report_shape() -> None:
    code, out, _ = run("scan", "-q", "--format", "json", str(PCAPS / "tzsp-31337.pcap"))
    assert code == 1  # a high finding with the default --fail-on high
    doc = json.loads(out)
    assert doc["schema"] == "mirrorwatch/1"
    (inp,) = doc["inputs"]
    assert inp["packets"] > 0 and inp["bytes"] > 0 and inp["errors"] == []
    (f,) = doc["findings"]
    for key in (
        "id", "kind", "protocol", "severity", "confidence", "exporter", "collector", "transport",
        "first_seen", "last_seen", "packets", "bytes", "session", "watched", "reasons",
    ):  # fmt: skip
        assert key in f
    assert f["protocol"] == "tzsp" and f["collector"]["port"] == 31337
    assert f["first_seen"].endswith("Z")


def test_jsonl_and_text() -> None:
    code, out, _ = run("scan", "-q", "--format", "jsonl", str(PCAPS / "netflow-v9.pcap"))
    lines = out.splitlines()
    assert code == 0  # a flow export is medium, below the default --fail-on
    assert lines and all(json.loads(line)["kind"] == "flow-export" for line in lines)
    code, out, _ = run("scan", "-q", str(PCAPS / "netflow-v9.pcap"))
    assert "MEDIUM" in out and "netflow-v9" in out


def test_fail_on_threshold() -> None:
    path = str(PCAPS / "netflow-v5.pcap")
    assert run("scan", "-q", "--fail-on", "medium", path)[0] == 1
    assert run("scan", "-q", "--fail-on", "critical", path)[0] == 0


def test_unreadable_input_exits_2_but_reports_the_rest(tmp_path: Path) -> None:
    junk = tmp_path / "notes.pcap"
    junk.write_text("this is not a capture")
    code, out, err = run("scan", "--format", "json", str(junk), str(PCAPS / "tzsp.pcap"))
    assert code == 2
    doc = json.loads(out)
    assert [f["protocol"] for f in doc["findings"]] == ["tzsp"]
    assert "not a pcap" in err


def test_damaged_files_never_crash() -> None:
    for name in ("truncated.pcap", "garbage.pcap", "unknown-linktype.pcap"):
        code, out, err = run("scan", "--format", "json", str(PCAPS / "bad" / name))
        assert code in (0, 1), (name, err)
        doc = json.loads(out)
        assert doc["inputs"][0]["errors"], name
        assert err.strip(), name
    # What was read before the damage is still reported.
    code, out, _ = run("scan", "-q", "--format", "json", str(PCAPS / "bad" / "truncated.pcap"))
    assert [f["protocol"] for f in json.loads(out)["findings"]] == ["tzsp"]


def test_directory_and_stdin() -> None:
    _, out, _ = run("scan", "-q", "--format", "json", str(PCAPS / "bad"))
    assert len(json.loads(out)["inputs"]) == 3
    data = (PCAPS / "erspan-1.pcap").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "detector.cli", "scan", "-q", "--format", "json", "-"],
        input=data, capture_output=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["findings"][0]["protocol"] == "erspan-1"


def test_schema_is_published() -> None:
    code, out, _ = run("schema")
    assert code == 0
    published = json.loads((PCAPS.parent / "docs" / "schema.json").read_text())
    assert json.loads(out) == published


def test_colour_only_when_asked() -> None:
    from mwtest import scan

    from detector.report.text import render_text

    report = scan(PCAPS / "tzsp.pcap")
    assert "\x1b[" in render_text(report, color=True)
    plain = render_text(report)
    assert "\x1b[" not in plain and "HIGH (1)" in plain
    # Through the command (not a terminal here) the output stays plain.
    _, out, _ = run("scan", "-q", str(PCAPS / "tzsp.pcap"))
    assert "\x1b[" not in out


def _modules_loaded_by(*args: str) -> set[str]:
    """Top-level packages imported by a fresh `mirrorwatch ARGS` process."""
    code = (
        "import sys\n"
        "from detector.cli import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(proc.stderr.split())


def test_version_and_help_load_no_engine_or_reports() -> None:
    heavy = {"numpy", "pydantic", "scapy", "pyshark"}
    assert not _modules_loaded_by("--version") & heavy
    assert not _modules_loaded_by("--help") & heavy
    # A command's help needs its options, not the engine they steer.
    assert not _modules_loaded_by("scan", "--help") & heavy
    # A scan with no configuration file writes its report without pydantic (the JSON it writes
    # is pinned by the golden files).
    tzsp = str(PCAPS / "tzsp.pcap")
    loaded = _modules_loaded_by("scan", "-q", "--format", "json", "-o", os.devnull, tzsp)
    assert "numpy" in loaded and "pydantic" not in loaded


def test_help_lists_every_command_by_its_module_summary() -> None:
    import importlib

    from detector.cli import command_names, command_summary

    code, out, _ = run("--help")
    assert code == 0
    names = command_names()
    assert {"scan", "watch", "report", "explain", "baseline", "schema"} <= set(names)
    for name in names:
        command = importlib.import_module(f"detector.commands.{name}").COMMAND
        assert command.name == name  # commands are found by their module's name
        summary = command_summary(name)
        assert summary and f"{name}  " in out and summary[:40] in out
    assert run("no-such-command")[0] == 2


def test_the_program_leaves_with_every_output_written(tmp_path: Path) -> None:
    # Run as the program, a scan exits without tearing its modules down: what it wrote to
    # standard output, to -o and to --evidence must all be there, with the exit status.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    sample = str(PCAPS / "tzsp-31337.pcap")
    cmd = [sys.executable, "-m", "detector.cli", "scan", "-q", "--format", "json"]
    out = subprocess.run([*cmd, sample], capture_output=True, env=env, timeout=120, check=False)
    assert out.returncode == 1 and json.loads(out.stdout)["findings"]
    report, evidence = tmp_path / "r.json", tmp_path / "ev"
    to_file = subprocess.run(
        [*cmd, "-o", str(report), "--evidence", str(evidence), sample],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert to_file.returncode == 1 and to_file.stdout == b""
    assert json.loads(report.read_text()) == json.loads(out.stdout)
    assert len(written := list(evidence.glob("*.pcap*"))) == 2
    assert all(p.stat().st_size > 100 for p in written)
