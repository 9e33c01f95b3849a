"""`mirrorwatch watch` without namespaces: pcap streams through pipes, events as they are written,
the escalation rules, and the capture child's start, counters and failures (with stand-in tools)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result
from scapy.all import ICMP, IP, UDP, Ether, Raw, wrpcap

from detector.cli import main
from detector.findings import Endpoint, Finding, WatchedHost
from detector.live import capture
from detector.live.capture import CaptureChild, CaptureStartError, pipe_size
from detector.live.loop import LiveWatch, WatchOptions
from detector.live.output import EventWriter
from detector.live.source import Notice
from detector.live.tracker import Change, FindingTracker

ROOT = Path(__file__).resolve().parents[1]
EVE_SCHEMA = ROOT.parent / "shared" / "schemas" / "suricata-eve.schema.json"
EXPORTER, COLLECTOR = "192.0.2.1", "192.0.2.9"
TZSP_HEADER = bytes([1, 0, 0, 1, 1])  # version 1, received, Ethernet, tag END


def tzsp_packets(n: int = 30, exporter: str = EXPORTER, t0: float = 1_700_000_000) -> list[Ether]:
    """A TZSP mirror of a ping conversation (both directions), with some ordinary traffic."""
    out = []
    for i in range(n):
        a, b = ("10.0.0.1", "10.0.0.2") if i % 2 == 0 else ("10.0.0.2", "10.0.0.1")
        inner = (
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src=a, dst=b)
            / ICMP(type=8 if i % 2 == 0 else 0, id=7, seq=i // 2)
        )
        p = (
            Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:09")
            / IP(src=exporter, dst=COLLECTOR)
            / UDP(sport=40000, dport=37008)
            / Raw(TZSP_HEADER + bytes(inner))
        )
        p.time = t0 + i * 0.01
        out.append(p)
        q = (
            Ether()
            / IP(src="198.51.100.1", dst="198.51.100.2")
            / UDP(sport=5353, dport=53)
            / Raw(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x00\x00\x01\x00\x01")
        )
        q.time = p.time + 0.001
        out.append(q)
    return out


@pytest.fixture(scope="module")
def tzsp_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("watch") / "tzsp.pcap"
    wrpcap(str(path), tzsp_packets())
    return path


def events(text: str) -> list[dict[str, object]]:
    lines = text.splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines)
    return [json.loads(line) for line in lines]


def watch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "detector.cli", "watch", *args]


WATCH_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture
def in_process() -> Iterator[Callable[..., Result]]:
    """Run the command in this process (fast): however it ends, it must leave the signal
    handlers as it found them."""
    saved = {s: signal.getsignal(s) for s in WATCH_SIGNALS}

    def invoke(*args: str) -> Result:
        r = CliRunner().invoke(main, ["watch", *args])
        assert {s: signal.getsignal(s) for s in WATCH_SIGNALS} == saved
        return r

    try:
        yield invoke
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def run_watch(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIRRORWATCH_CONFIG": ""}
    return subprocess.run(
        watch_cmd(*args), input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=300
    )


# ------------------------------------------------------------------ streaming through a pipe


def test_pcap_through_cat_pipe_streams_jsonl(tzsp_pcap: Path) -> None:
    src = CaptureChild("cat", ["cat", str(tzsp_pcap)], ready_marker=None, stats_signal=None,
                       ends_normally=True)  # fmt: skip
    src.start()
    assert pipe_size(src.stream.fileno()) == capture.PIPE_SIZE
    out = io.StringIO()
    live = LiveWatch([src], EventWriter(out, "jsonl"), WatchOptions(summary_every=0))
    findings = live.run()
    evs = events(out.getvalue())
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "finding" and kinds[-1] == "summary"
    first = evs[0]["finding"]
    assert isinstance(first, dict)
    assert (first["protocol"], first["kind"]) == ("tzsp", "mirror")
    assert first["exporter"]["ip"] == EXPORTER and first["collector"]["ip"] == COLLECTOR
    assert {w["ip"] for w in first["watched"]} >= {"10.0.0.1", "10.0.0.2"}
    final = evs[-1]
    assert final["final"] is True
    assert final["stats"]["packets"] == 60
    assert final["captures"] == [{"interface": "cat", "read_packets": 60,
                                  "read_bytes": final["stats"]["bytes"]}]  # fmt: skip
    assert [f.id for f in findings] == [b["id"] for b in final["findings"]]
    # Every event carries its kind and the time it was written.
    assert all("time" in e for e in evs)


def test_cli_reads_stdin_and_exits_per_fail_on(tzsp_pcap: Path) -> None:
    data = tzsp_pcap.read_bytes()
    r = run_watch("-r", "-", "--format", "jsonl", "--summary-every", "0", stdin=data)
    assert r.returncode == 1, r.stderr
    evs = events(r.stdout.decode())
    assert [e["event"] for e in evs].count("summary") == 1
    high = [e for e in evs if e["event"] == "finding" and e["finding"]["severity"] == "high"]
    assert high and high[0]["finding"]["protocol"] == "tzsp"
    r = run_watch("-r", "-", "--format", "jsonl", "--fail-on", "critical", stdin=data)
    assert r.returncode == 0, r.stderr


def test_summary_totals_are_named_and_counted_as_a_scan_names_them(tzsp_pcap: Path) -> None:
    r = run_watch("-r", str(tzsp_pcap), "--format", "jsonl", "--summary-every", "0")
    watched = [e for e in events(r.stdout.decode()) if e["event"] == "summary"][-1]["stats"]
    scanned = json.loads(subprocess.run(
        [sys.executable, "-m", "detector.cli", "scan", str(tzsp_pcap), "--format", "json", "-q"],
        capture_output=True, check=False,
    ).stdout)["stats"]  # fmt: skip
    assert isinstance(watched, dict)
    for key in ("workers", "first_seen", "last_seen"):  # what a scan of files alone has
        scanned.pop(key, None)
    assert {k: watched[k] for k in scanned} == scanned


def test_text_format(tzsp_pcap: Path, in_process: Callable[..., Result]) -> None:
    r = in_process("-r", str(tzsp_pcap), "--summary-every", "0")
    assert r.exit_code == 1
    text = r.stdout
    assert " NEW HIGH\n  tzsp mirror  192.0.2.1" in text
    assert "FINAL SUMMARY: 60 packets" in text and "findings: 1 high" in text


def test_finding_is_written_before_the_input_ends(tzsp_pcap: Path) -> None:
    """The finding line arrives while the pipe is still open: streamed, not at exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = watch_cmd("-r", "-", "--format", "jsonl", "--summary-every", "0")
    pipe = subprocess.PIPE
    p = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, cwd=ROOT, env=env)
    assert p.stdin is not None and p.stdout is not None
    try:
        p.stdin.write(tzsp_pcap.read_bytes()[:2000])
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 120)
        assert ready, "no event while the input was still open"
        line = json.loads(p.stdout.readline())
        assert line["event"] == "finding" and line["finding"]["protocol"] == "tzsp"
        assert p.poll() is None
    finally:
        p.stdin.close()
        rest = p.stdout.read().decode()
        p.wait(120)
    assert events(rest)[-1]["event"] == "summary"


def test_usage_errors_exit_2(in_process: Callable[..., Result]) -> None:
    r = in_process()
    assert r.exit_code == 2 and "at least one interface" in r.stderr
    r = in_process("-r", "/nonexistent/capture.pcap")
    assert r.exit_code == 2 and "cannot open" in r.stderr
    r = in_process("-i", "eth0", "-i", "eth0")
    assert r.exit_code == 2 and "twice" in r.stderr


def test_unwritable_output_exits_2(tzsp_pcap: Path, in_process: Callable[..., Result]) -> None:
    r = in_process("-r", str(tzsp_pcap), "-o", "/nonexistent/dir/events.jsonl")
    assert r.exit_code == 2 and "cannot write /nonexistent/dir/events.jsonl" in r.stderr


def test_config_option_is_refused_until_supported(
    tmp_path: Path, in_process: Callable[..., Result]
) -> None:
    cfg = tmp_path / "mirrorwatch.toml"
    cfg.write_text("")
    r = in_process("-r", "/nonexistent/capture.pcap", "--config", str(cfg))
    if importlib.util.find_spec("detector.config") is None:
        assert r.exit_code == 2 and "not supported yet" in r.stderr
    else:
        assert "not supported yet" not in r.stderr


def test_missing_interface_exits_2(in_process: Callable[..., Result]) -> None:
    if shutil.which(capture.TCPDUMP) is None:
        pytest.skip("tcpdump is not installed")
    r = in_process("-i", "mw-no-such-if0", "--duration", "1")
    assert r.exit_code == 2
    assert "capture on mw-no-such-if0 failed" in r.stderr


# ------------------------------------------------------------------ capture child


def standin(script: Path) -> list[str]:
    """The command that runs a stand-in tool's script with SIGINT at its default, as tcpdump
    sets its own handler: a shell cannot trap a signal ignored when it starts, and a test run
    started in the background of a script (nohup ... &) ignores SIGINT."""
    return ["env", "--default-signal=INT", "bash", str(script)]


def fake_tool(tmp_path: Path, pcap: Path, exit_after: bool = False) -> list[str]:
    """A stand-in for tcpdump: announces itself, writes a pcap, prints counters like tcpdump."""
    script = tmp_path / "fake_tcpdump.sh"
    # `wait` returns at once when a trapped signal arrives; a foreground command (`sleep`, and
    # `cat` still writing its last bytes under load) would hold the trap until it ends, and bash
    # may then take SIGINT as meant for the child alone: the stop then waited for SIGKILL.
    tail = "exit 1" if exit_after else "while :; do sleep 0.05 & wait $!; done"
    # The traps are set before the start line: a counter request may come right after it.
    script.write_text(
        "trap 'echo \"fake: 60 packets captured, 61 packets received by filter, "
        "1 packet dropped by kernel\" >&2' USR1\n"
        'trap \'echo "60 packets captured" >&2; echo "62 packets received by filter" >&2; '
        'echo "2 packets dropped by kernel" >&2; exit 0\' INT\n'
        "echo 'listening on fake0, link-type EN10MB (Ethernet)' >&2\n"
        f"cat {pcap} & c=$!\nwhile kill -0 $c 2>/dev/null; do wait $c; done\n{tail}\n"
    )
    return standin(script)


def test_capture_child_exit_counters_stand_when_an_earlier_answer_prints_after_them(
    tmp_path: Path,
) -> None:
    """A counter request sent just before the stop can be answered after the exit counters
    (the tool handles both signals at once): the older, smaller figures must not replace them."""
    script = tmp_path / "crossing.sh"
    script.write_text(
        'trap \'echo "60 packets captured" >&2; echo "62 packets received by filter" >&2; '
        'echo "2 packets dropped by kernel" >&2; echo "fake: 59 packets captured, 61 packets '
        "received by filter, 1 packet dropped by kernel\" >&2; exit 0' INT\n"
        "echo 'listening on fake0, link-type EN10MB (Ethernet)' >&2\n"
        "while :; do sleep 0.05 & wait $!; done\n"
    )
    child = CaptureChild("fake0", standin(script))
    child.start()
    try:
        child.stop()
    finally:
        child.close()
    tool = child.stats.tool
    assert (tool["captured"], tool["received_by_filter"], tool["dropped_by_kernel"]) == (60, 62, 2)


def test_capture_child_counters_on_request_and_at_stop(tmp_path: Path, tzsp_pcap: Path) -> None:
    child = CaptureChild("fake0", fake_tool(tmp_path, tzsp_pcap))
    child.start()
    out = io.StringIO()
    live = LiveWatch([child], EventWriter(out, "jsonl"), WatchOptions(summary_every=0.3))
    deadline = time.monotonic() + 120
    live.opts.duration = 120
    # Stop once the whole capture was read and a periodic summary carried the counters.
    import threading

    def stopper() -> None:
        while time.monotonic() < deadline:
            if child.stats.input.packets == 60 and "dropped_by_kernel" in child.stats.tool:
                break
            time.sleep(0.05)
        live.stop_event.set()

    threading.Thread(target=stopper, daemon=True).start()
    live.run()
    evs = events(out.getvalue())
    periodic = [e for e in evs if e["event"] == "summary" and not e["final"]]
    assert periodic, "a summary every 0.3 s"
    final = evs[-1]
    cap = final["captures"][0]
    assert cap["read_packets"] == 60
    assert (cap["captured"], cap["received_by_filter"], cap["dropped_by_kernel"]) == (60, 62, 2)
    assert final["drops"] == {"kernel": 2, "interface": 0}
    assert not live.failures


def test_capture_child_that_dies_is_a_failure(tmp_path: Path, tzsp_pcap: Path) -> None:
    child = CaptureChild("fake0", fake_tool(tmp_path, tzsp_pcap, exit_after=True))
    child.start()
    out = io.StringIO()
    live = LiveWatch([child], EventWriter(out, "jsonl"), WatchOptions(summary_every=0))
    live.run()
    assert live.failures and "capture on fake0 ended (exit 1)" in live.failures[0]
    assert events(out.getvalue())[-1]["failures"]


def test_capture_start_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureStartError, match="not found"):
        CaptureChild("x", capture.tcpdump_argv("x", tool="/nonexistent/tcpdump")).start()
    failing = ["bash", "-c", "echo 'tcpdump: x: No such device exists' >&2; exit 1"]
    with pytest.raises(CaptureStartError, match=r"No such device.*ip link"):
        CaptureChild("x", failing).start()
    denied = ["bash", "-c", "echo 'tcpdump: x: You dont have permission to capture' >&2; exit 1"]
    with pytest.raises(CaptureStartError, match="CAP_NET_RAW"):
        CaptureChild("x", denied).start()


def test_tcpdump_argv_immediate_and_filter() -> None:
    argv = capture.tcpdump_argv("eth1", "not port 22", 4096)
    assert argv[:3] == ["tcpdump", "-i", "eth1"]
    assert "--immediate-mode" in argv and "-U" in argv and argv[argv.index("-w") + 1] == "-"
    assert argv[argv.index("-B") + 1] == "4096" and argv[-1] == "not port 22"


# ------------------------------------------------------------------ escalation rules


def finding(severity: str = "medium", proven: bool | None = None,
            hosts: tuple[str, ...] = ("10.0.0.1",), kind: str = "mirror") -> Finding:  # fmt: skip
    evidence: dict[str, int | float | str | bool | list[str] | list[int]] = {}
    if proven is not None:
        evidence["mirror_proven"] = proven
    return Finding(
        id="mw-0000000000000001", kind=kind, protocol="vxlan", severity=severity,  # type: ignore[arg-type]
        confidence=0.5, exporter=Endpoint(ip=EXPORTER), collector=Endpoint(ip=COLLECTOR, port=4789),
        transport="udp", first_seen="2024-01-01T00:00:00Z", last_seen="2024-01-01T00:00:01Z",
        packets=1, bytes=100, watched=[WatchedHost(ip=h) for h in hosts], evidence=evidence,
    )  # fmt: skip


def test_tracker_new_then_quiet_until_it_escalates() -> None:
    t = FindingTracker()
    assert [c.event for c in t.update([finding()], 0.0)] == ["finding"]
    assert t.update([finding()], 0.1) == []
    up = t.update([finding("high", proven=True)], 0.2)
    assert [c.event for c in up] == ["escalation"]
    assert up[0].changes == ["severity medium -> high", "mirror_proven none -> true"]
    # Falling back is not news, and rising to a level already written is not either.
    assert t.update([finding("medium", proven=True)], 0.3) == []
    assert t.update([finding("high", proven=True)], 0.4) == []
    flip = t.update([finding("high", proven=False)], 0.5)
    assert flip[0].changes == ["mirror_proven true -> false"]


def test_tracker_new_hosts_are_spaced_out() -> None:
    t = FindingTracker()
    t.update([finding(hosts=("10.0.0.1",))], 0.0)
    # Within the first gap: held back; after it: written, naming the new hosts.
    assert t.update([finding(hosts=("10.0.0.1", "10.0.0.2"))], 0.5) == []
    got = t.update([finding(hosts=("10.0.0.1", "10.0.0.2"))], 1.0)
    assert got[0].changes == ["watched + 10.0.0.2"]
    # The gap doubles: a third host 1.5 s later waits, 2 s later it is written.
    assert t.update([finding(hosts=("10.0.0.1", "10.0.0.2", "10.0.0.3"))], 2.5) == []
    assert t.update([finding(hosts=("10.0.0.1", "10.0.0.2", "10.0.0.3"))], 3.0)
    # A host beyond the top of the list is not news.
    many = tuple(f"10.0.0.{i}" for i in range(1, 9))
    later = t.update([finding(hosts=many)], 100.0)
    assert later[0].changes == ["watched + 10.0.0.4, 10.0.0.5"]


def test_tracker_first_hosts_of_an_empty_list_are_written_at_once() -> None:
    t = FindingTracker()
    t.update([finding(hosts=())], 0.0)
    assert t.update([finding(hosts=("10.0.0.7",))], 0.01)[0].changes == ["watched + 10.0.0.7"]


# ------------------------------------------------------------------ operations


def pcap_bytes(packets: list[Ether], tmp_path: Path, name: str) -> bytes:
    path = tmp_path / name
    wrpcap(str(path), packets)
    return path.read_bytes()


def stream_parts(tmp_path: Path, exporters: list[str]) -> list[bytes]:
    """One pcap stream cut in parts: the file header with the first exporter's mirror, then one
    part per further exporter (each part a whole number of records)."""
    parts = []
    for i, exporter in enumerate(exporters):
        data = pcap_bytes(tzsp_packets(exporter=exporter, t0=1_700_000_000 + i), tmp_path, "p")
        parts.append(data if i == 0 else data[24:])
    return parts


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Wait for a condition (a line, a file), not for a fixed time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def finding_exporters(path: Path) -> list[str]:
    """The exporters of the findings in a JSONL file so far (complete lines only)."""
    text = path.read_text() if path.exists() else ""
    whole = text[: text.rfind("\n") + 1]
    return [e["finding"]["exporter"]["ip"] for e in map(json.loads, whole.splitlines())
            if e["event"] == "finding"]  # fmt: skip


def test_text_file_given_to_read_exits_2(tmp_path: Path, in_process: Callable[..., Result]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a capture\n")
    r = in_process("-r", str(notes), "--summary-every", "0")
    assert r.exit_code == 2
    assert "not a pcap or pcapng file" in r.stderr


def test_sighup_reopens_output_and_loses_no_line(tmp_path: Path) -> None:
    """logrotate renames the file and sends SIGHUP: every finding lands once, in the old file
    or the new one, and the watch goes on."""
    exporters = [f"192.0.2.{i}" for i in range(11, 17)]
    parts = stream_parts(tmp_path, exporters)
    out = tmp_path / "findings.jsonl"
    rotated = tmp_path / "findings.jsonl.1"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIRRORWATCH_CONFIG": ""}
    cmd = watch_cmd("-r", "-", "--format", "jsonl", "-o", str(out), "--summary-every", "0.2")
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert p.stdin is not None
    try:

        def send(i: int) -> None:
            assert p.stdin is not None
            p.stdin.write(parts[i])
            p.stdin.flush()

        send(0)
        send(1)
        wait_for(lambda: len(finding_exporters(out)) == 2, "the first findings")
        out.rename(rotated)
        # Written after the rename, before the signal: these go to the renamed file.
        send(2)
        send(3)
        wait_for(lambda: len(finding_exporters(rotated)) == 4, "findings in the renamed file")
        p.send_signal(signal.SIGHUP)
        wait_for(out.exists, "the output reopened")
        send(4)
        send(5)
        wait_for(lambda: len(finding_exporters(out)) == 2, "findings in the new file")
    finally:
        p.stdin.close()
        p.wait(120)
    assert p.returncode == 1, p.stderr.read() if p.stderr else ""  # high findings stand
    old, new = events(rotated.read_text()), events(out.read_text())
    seen = finding_exporters(rotated) + finding_exporters(out)
    assert sorted(seen) == sorted(exporters)  # each finding once, none lost
    assert new[-1]["event"] == "summary" and new[-1]["final"] is True
    assert not any(e.get("final") for e in old)


def test_eve_format_from_watch(tzsp_pcap: Path, in_process: Callable[..., Result]) -> None:
    r = in_process("-r", str(tzsp_pcap), "--format", "eve", "--sensor-name", "span-7",
                   "--summary-every", "0")  # fmt: skip
    assert r.exit_code == 1
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    alerts = [e for e in lines if e["event_type"] == "alert"]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a["src_ip"], a["dest_ip"], a["dest_port"]) == (EXPORTER, COLLECTOR, 37008)
    assert a["host"] == "span-7" and a["alert"]["severity"] == 1
    stats = lines[-1]
    assert stats["event_type"] == "stats" and stats["host"] == "span-7"
    assert stats["stats"]["decoder"]["pkts"] == 60
    # Suricata's timestamp form.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000", stats["timestamp"])
    # A capture notice is an engine event.
    notice = io.StringIO()
    EventWriter(notice, "eve", sensor="span-7").notice(Notice("span0", "gone", "span0 vanished"))
    engine = json.loads(notice.getvalue())
    assert engine["event_type"] == "engine" and engine["engine"]["message"] == "span0 vanished"
    if not EVE_SCHEMA.exists():
        pytest.skip(f"{EVE_SCHEMA} not present: lines not checked against Suricata's schema")
    schema = json.loads(EVE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for ev in [*lines, engine]:
        errors = [e.message for e in validator.iter_errors(ev)]
        assert not errors, (ev["event_type"], errors[:3])


def test_evidence_directory_written_and_capped(
    tmp_path: Path, in_process: Callable[..., Result]
) -> None:
    evidence = tmp_path / "evidence"
    capture_file = tmp_path / "four.pcap"
    capture_file.write_bytes(
        b"".join(stream_parts(tmp_path, [f"192.0.2.{i}" for i in range(21, 25)]))
    )
    r = in_process("-r", str(capture_file), "--evidence", str(evidence), "--summary-every", "0")
    assert r.exit_code == 1, r.stderr
    outer = sorted(evidence.glob("*-outer.pcapng"))
    assert len(outer) == 4
    with outer[0].open("rb") as f:
        assert f.read(4) == b"\x0a\x0d\x0d\x0a"  # pcapng, with its Decode As comment
    # Beyond the cap the oldest captures go: the newest stay.
    from detector.live.evidence import EvidenceStore

    sizes = sorted(p.stat().st_size for p in evidence.iterdir())
    store = EvidenceStore(str(evidence), max_bytes=sizes[-1] + sizes[-2])
    keep = max(evidence.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    store._rotate()
    assert store.size() <= store.max_bytes and store.removed >= len(sizes) - 2
    assert keep.exists()


def test_evidence_directory_that_cannot_be_made_exits_2(
    tmp_path: Path, tzsp_pcap: Path, in_process: Callable[..., Result]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = in_process("-r", str(tzsp_pcap), "--evidence", str(blocker / "sub"))
    assert r.exit_code == 2 and "--evidence" in r.stderr


def test_prometheus_metrics_endpoint_and_textfile(tzsp_pcap: Path, tmp_path: Path) -> None:
    textfile = tmp_path / "mirrorwatch.prom"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIRRORWATCH_CONFIG": ""}
    cmd = watch_cmd("-r", "-", "--format", "jsonl", "--summary-every", "0",
                    "--metrics-port", "0", "--metrics-textfile", str(textfile))  # fmt: skip
    pipe = subprocess.PIPE
    p = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=pipe, cwd=ROOT, env=env)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    try:
        said = ""
        for line in iter(p.stderr.readline, b""):  # the line naming the port, when it is ready
            said += line.decode()
            if "metrics on" in said:
                break
        url = re.search(r"http://\S+/metrics", said)
        assert url, said
        p.stdin.write(tzsp_pcap.read_bytes())
        p.stdin.flush()
        assert json.loads(p.stdout.readline())["event"] == "finding"

        def scrape() -> dict[str, float]:
            with urllib.request.urlopen(url.group(0), timeout=10) as resp:
                return parse_metrics(resp.read().decode())

        # A snapshot a second: wait for one taken after the last packet and its verdict.
        def complete() -> bool:
            now = scrape()
            return now.get("mirrorwatch_packets_total") == 60 and bool(
                now.get('mirrorwatch_findings{severity="high"}')
            )

        wait_for(complete, "the packet count and the finding")
        got = scrape()
        assert got['mirrorwatch_findings{severity="high"}'] == 1
        assert got['mirrorwatch_findings{severity="critical"}'] == 0
        assert got['mirrorwatch_capture_packets_total{interface="stdin"}'] == 60
        assert got['mirrorwatch_capture_drops_total{interface="stdin",where="kernel"}'] == 0
        assert got["mirrorwatch_streams"] >= 1
    finally:
        p.stdin.close()
        p.wait(120)
    final = parse_metrics(textfile.read_text())
    assert final["mirrorwatch_packets_total"] == 60
    assert final['mirrorwatch_findings{severity="high"}'] == 1


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_port_in_use_exits_2(tzsp_pcap: Path, in_process: Callable[..., Result]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = in_process("-r", str(tzsp_pcap), "--metrics-port", str(port))
    assert r.exit_code == 2 and "metrics on 127.0.0.1" in r.stderr


def test_default_config_from_environment_and_etc(
    tmp_path: Path, tzsp_pcap: Path, monkeypatch: pytest.MonkeyPatch,
    in_process: Callable[..., Result],
) -> None:  # fmt: skip
    from detector import config_file as config

    allow = tmp_path / "mirrorwatch.toml"
    allow.write_text(f'[[expected]]\nprotocol = "tzsp"\ncollector = "{COLLECTOR}"\n')
    monkeypatch.setattr(config, "SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    assert in_process("-r", str(tzsp_pcap), "--summary-every", "0").exit_code == 1
    # The allow-listed stream is low: nothing high stands.
    monkeypatch.setenv(config.CONFIG_ENV, str(allow))
    assert in_process("-r", str(tzsp_pcap), "--summary-every", "0").exit_code == 0
    scan = CliRunner().invoke(main, ["scan", "-q", str(tzsp_pcap)])
    assert scan.exit_code == 0, scan.output
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "missing.toml"))
    r = in_process("-r", str(tzsp_pcap))
    assert r.exit_code == 2 and "missing.toml" in r.stderr
    # Without the variable, the system file applies when it exists.
    monkeypatch.delenv(config.CONFIG_ENV)
    monkeypatch.setattr(config, "SYSTEM_CONFIG", str(allow))
    assert in_process("-r", str(tzsp_pcap), "--summary-every", "0").exit_code == 0


def test_tcpdump_argv_no_promisc() -> None:
    assert "-p" not in capture.tcpdump_argv("eth1")
    assert "-p" in capture.tcpdump_argv("eth1", promisc=False)


# ------------------------------------------------------------------ the service unit

UNIT = ROOT / "packaging" / "mirrorwatch-watch.service"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    text = UNIT.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_keeps_only_net_raw_and_is_confined() -> None:
    got = unit_settings()
    assert got["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert got["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert got["SystemCallFilter"] == ["@system-service"]
    assert set(got["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_PACKET", "AF_NETLINK"}
    assert got["UMask"] == ["0027"] and got["ProtectProc"] == ["invisible"]
    # Exit 2 (capture failed, interface gone) restarts; exit 1 (a finding stood) does not.
    assert got["Restart"] == ["on-failure"] and got["SuccessExitStatus"] == ["1"]
    assert "HUP" in got["ExecReload"][0]
    # Every setting of the unit is explained in the deploy guide.
    guide = (ROOT / "docs" / "deploy.md").read_text()
    missing = [k for k in got if f"`{k}=" not in guide]
    assert not missing, f"docs/deploy.md does not explain {missing}"


def test_install_script_provides_what_the_unit_names(tmp_path: Path) -> None:
    r = subprocess.run(
        ["sh", str(ROOT / "packaging" / "install.sh")],
        env={**os.environ, "DESTDIR": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = unit_settings()["Documentation"][0].removeprefix("file://")
    assert (tmp_path / doc.lstrip("/")).read_text() == (ROOT / "docs" / "deploy.md").read_text()
    assert (tmp_path / "etc/logrotate.d/mirrorwatch").read_text().count("postrotate") == 1
    unit = tmp_path / "etc/systemd/system/mirrorwatch-watch.service"
    assert unit.read_text() == UNIT.read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit's syntax is not verified")
    # verify also wants ExecStart's program: a stand-in where the unit expects mirrorwatch.
    stub = tmp_path / "mirrorwatch"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    checked = tmp_path / "check" / UNIT.name
    checked.parent.mkdir()
    checked.write_text(UNIT.read_text().replace("/usr/local/bin/mirrorwatch", str(stub)))
    v = subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert v.returncode == 0 and UNIT.name not in v.stderr, v.stderr


def test_eve_leaves_info_findings_out_unless_asked() -> None:
    tunnel = Change("finding", finding("info", kind="tunnel"), [])
    quiet, loud = io.StringIO(), io.StringIO()
    EventWriter(quiet, "eve").change(tunnel)
    w = EventWriter(loud, "eve")
    w.eve_info = True
    w.change(tunnel)
    assert quiet.getvalue() == ""
    assert json.loads(loud.getvalue())["alert"]["metadata"]["mirrorwatch_kind"] == ["tunnel"]
