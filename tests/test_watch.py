"""`mirrorwatch watch` without namespaces: pcap streams through pipes, events as they are written,
the escalation rules, and the capture child's start, counters and failures (with stand-in tools)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from scapy.all import ICMP, IP, UDP, Ether, Raw, wrpcap

from detector.cli import main
from detector.findings import Endpoint, Finding, WatchedHost
from detector.live import capture
from detector.live.capture import CaptureChild, CaptureStartError, pipe_size
from detector.live.loop import LiveWatch, WatchOptions
from detector.live.output import EventWriter
from detector.live.tracker import FindingTracker

ROOT = Path(__file__).resolve().parents[1]
EXPORTER, COLLECTOR = "192.0.2.1", "192.0.2.9"
TZSP_HEADER = bytes([1, 0, 0, 1, 1])  # version 1, received, Ethernet, tag END


def tzsp_packets(n: int = 30) -> list[Ether]:
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
            / IP(src=EXPORTER, dst=COLLECTOR)
            / UDP(sport=40000, dport=37008)
            / Raw(TZSP_HEADER + bytes(inner))
        )
        p.time = 1_700_000_000 + i * 0.01
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


@pytest.fixture
def in_process() -> Iterator[Callable[..., Result]]:
    """Run the command in this process (fast), restoring the signal handlers it installs."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["watch", *args])

    try:
        yield invoke
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def run_watch(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        watch_cmd(*args), input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=60
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
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready, "no event while the input was still open"
        line = json.loads(p.stdout.readline())
        assert line["event"] == "finding" and line["finding"]["protocol"] == "tzsp"
        assert p.poll() is None
    finally:
        p.stdin.close()
        rest = p.stdout.read().decode()
        p.wait(30)
    assert events(rest)[-1]["event"] == "summary"


def test_usage_errors_exit_2(in_process: Callable[..., Result]) -> None:
    r = in_process()
    assert r.exit_code == 2 and "at least one interface" in r.stderr
    r = in_process("-r", "/nonexistent/capture.pcap")
    assert r.exit_code == 2 and "cannot open" in r.stderr
    r = in_process("-i", "eth0", "-i", "eth0")
    assert r.exit_code == 2 and "twice" in r.stderr


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


def fake_tool(tmp_path: Path, pcap: Path, exit_after: bool = False) -> list[str]:
    """A stand-in for tcpdump: announces itself, writes a pcap, prints counters like tcpdump."""
    script = tmp_path / "fake_tcpdump.sh"
    tail = "exit 1" if exit_after else "while :; do sleep 0.05; done"
    script.write_text(
        "echo 'listening on fake0, link-type EN10MB (Ethernet)' >&2\n"
        "trap 'echo \"fake: 60 packets captured, 61 packets received by filter, "
        "1 packet dropped by kernel\" >&2' USR1\n"
        'trap \'echo "60 packets captured" >&2; echo "62 packets received by filter" >&2; '
        'echo "2 packets dropped by kernel" >&2; exit 0\' INT\n'
        f"cat {pcap}\n{tail}\n"
    )
    return ["bash", str(script)]


def test_capture_child_counters_on_request_and_at_stop(tmp_path: Path, tzsp_pcap: Path) -> None:
    child = CaptureChild("fake0", fake_tool(tmp_path, tzsp_pcap))
    child.start()
    out = io.StringIO()
    live = LiveWatch([child], EventWriter(out, "jsonl"), WatchOptions(summary_every=0.3))
    deadline = time.monotonic() + 30
    live.opts.duration = 30
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
