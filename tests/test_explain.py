"""``mirrorwatch explain``: Decode As rules, filters, and Wireshark's reading of real samples."""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from mwtest import PCAPS, SAMPLES, EarlyCalls, early, run_command, sample_scan

from detector.cli import main
from detector.explain import (
    DISSECTIONS,
    INSTALL_HINT,
    decode_as_rules,
    display_filter,
    explain,
    preferences,
    read_with_pyshark,
    resolve,
    user_command,
    version_tuple,
)
from detector.findings import Endpoint, Finding
from detector.report.evidence_pcap import write_capture
from detector.scan import ScanResult, scan_paths

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark not installed (apt-get install tshark)"
)
_SCANS: dict[str, ScanResult] = {}


def _scan(name: str) -> ScanResult:
    if name not in _SCANS:
        _SCANS[name] = scan_paths([str(PCAPS / name)])
    return _SCANS[name]


def _only(name: str, protocol: str) -> Finding:
    hits = [f for f in _scan(name).report.findings if f.protocol == protocol]
    assert len(hits) == 1, [f.protocol for f in _scan(name).report.findings]
    return hits[0]


def _rules(name: str, protocol: str) -> list[str]:
    f = _only(name, protocol)
    return decode_as_rules(f, _scan(name).evidence.get(f.id))


@pytest.mark.parametrize(
    ("name", "protocol", "rules"),
    [
        ("tzsp.pcap", "tzsp", []),  # 37008 is Wireshark's own port for TZSP
        ("tzsp-31337.pcap", "tzsp", ["udp.port==31337,tzsp"]),
        ("vxlan-mirror-8472.pcap", "vxlan", ["udp.port==8472,vxlan"]),
        ("netflow-v9-9999.pcap", "netflow-v9", ["udp.port==9999,cflow"]),
        ("psamp.pcap", "psamp", ["udp.port==4740,cflow"]),
        ("sflow-vxlan.pcap", "sflow", []),
        ("jmirror.pcap", "jmirror", ["udp.port==6502,jmirror"]),
        ("pcli.pcap", "pcli", ["udp.port==40123,pcli", "pcli.payload,ip"]),
        # The variant decides the dissector: NTP timestamp (12) and case id (20).
        ("pcli12.pcap", "pcli", ["udp.port==40124,pcli12", "pcli.payload,ip"]),
        ("pcli20.pcap", "pcli", ["udp.port==40125,pcli20", "pcli.payload,ip"]),
        ("cwids.pcap", "cwids", ["udp.port==8999,cwids"]),
        ("erspan-2.pcap", "erspan-2", []),
        ("nokia-li.pcap", "nokia-li", []),
        ("x2x3-xcc.pcap", "etsi-x2x3", ["tcp.port==50443,5gli"]),
    ],
)
def test_decode_as_rules(name: str, protocol: str, rules: list[str]) -> None:
    assert _rules(name, protocol) == rules


def test_filters_and_preferences() -> None:
    f = _only("erspan-3.pcap", "erspan-3")
    assert display_filter(f) == (
        "ipv6.src#1 == 2001:db8:1::1 && ipv6.dst#1 == 2001:db8:9::10 && ipv6.nxt#1 == 47"
    )
    f = _only("tzsp-31337.pcap", "tzsp")
    # Every source port of the exporter belongs to the finding: only the collector's port.
    assert (
        display_filter(f)
        == "ip.src#1 == 10.1.0.1 && ip.dst#1 == 10.9.0.10 && udp.dstport#1 == 31337"
    )
    assert display_filter(f, layered=False) == (
        "ip.src == 10.1.0.1 && ip.dst == 10.9.0.10 && udp.dstport == 31337"
    )
    tee = _only("tee-copies.pcap", "tee-copy")
    assert display_filter(tee) == "eth.src#1 == 00:1b:54:0a:01:01 && eth.dst#1 == 52:54:00:9c:00:0a"
    x2x3 = _only("x2x3-keepalive.pcap", "etsi-x2x3")
    assert display_filter(x2x3) == (
        "(ip.src#1 == 10.1.0.30 && ip.dst#1 == 10.9.0.30 && tcp.srcport#1 == 59138 && "
        "tcp.dstport#1 == 50443) || (ip.src#1 == 10.9.0.30 && ip.dst#1 == 10.1.0.30 && "
        "tcp.srcport#1 == 50443 && tcp.dstport#1 == 59138)"
    )
    data = next(f for f in _scan("rpcap.pcap").report.findings if f.exporter.port == 40777)
    assert preferences(data, _scan("rpcap.pcap").evidence[data.id]) == ["rpcap.linktype:1"]
    ipip = Finding(
        id="mw-1", kind="tunnel", protocol="ipip", severity="info", confidence=1.0,
        exporter=Endpoint(ip="192.0.2.1"), collector=Endpoint(ip="192.0.2.2"),
        transport="ip/4", first_seen="2026-01-15T10:00:00Z", last_seen="2026-01-15T10:00:00Z",
        packets=1, bytes=1,
    )  # fmt: skip
    assert display_filter(ipip).endswith("ip.proto#1 == 4")


def test_resolve_by_prefix() -> None:
    findings = _scan("rpcap.pcap").report.findings
    f = findings[0]
    assert resolve(f.id, findings) is f
    assert resolve(f.id[3:12], findings) is f  # without "mw-", a unique prefix
    assert resolve("mw-", findings) is None  # ambiguous
    assert resolve("nothing", findings) is None


def test_without_tshark_scapy_dissects(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _only("tzsp-31337.pcap", "tzsp")
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    res = CliRunner().invoke(main, ["explain", "-c", "3", f.id, str(PCAPS / "tzsp-31337.pcap")])
    assert res.exit_code == 0, res.output
    assert "apt-get install tshark" in res.output and INSTALL_HINT in res.output
    out = res.output
    # scapy's reading of the outer packets, of the TZSP header, and of the carried frames.
    assert "scapy's reading of the first packets" in out
    assert "Ether / IP / UDP 10.1.0.1:45232 > 10.9.0.10:31337" in out
    assert "###[ TZSP ]###" in out and "version   = 1" in out
    assert "frames it carried" in out and "Ether / IP / TCP 192.168.10." in out
    # The command to run elsewhere is still printed.
    assert "-d udp.port==31337,tzsp" in out


@needs_tshark
def test_unknown_finding_exits_2() -> None:
    res = CliRunner().invoke(main, ["explain", "mw-ffffffff", str(PCAPS / "tzsp.pcap")])
    assert res.exit_code == 2 and "mw-720cd52f0ae22aa9" in res.output


@needs_tshark
def test_cli_shows_wireshark_detail_and_command() -> None:
    f = _only("tzsp-31337.pcap", "tzsp")
    res = CliRunner().invoke(main, ["explain", "-c", "2", f.id, str(PCAPS / "tzsp-31337.pcap")])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Encapsulation: Ethernet (1)" in out and "Version: 1" in out  # Wireshark's tree
    assert "(layers: eth / ip / udp / tzsp / eth / ip / tcp)" in out
    assert "Decode As: udp.port==31337,tzsp" in out
    assert "-d udp.port==31337,tzsp -Y 'ip.src#1 == 10.1.0.1" in out
    assert "Wireshark: Analyze > Decode As...: udp.port==31337 -> TZSP" in out


VIEWS = [
    # Wireshark reads these with explain's rules alone: the user needs no Decode As.
    ("tzsp-31337.pcap", "tzsp", True, "TZSP:"),
    ("pcli12.pcap", "pcli", True, "PCLI:"),
    ("jmirror.pcap", "jmirror", True, "JMIRROR:"),
    ("psamp.pcap", "psamp", True, "CFLOW:"),
    ("x2x3-xcc.pcap", "etsi-x2x3", True, "5GLI:"),
    # These it cannot: said so, with the header bytes mirrorwatch decoded.
    ("nokia-li.pcap", "nokia-li", False, "Nokia"),
    ("bcm-li.pcap", "bcm-li", False, "Broadcom"),
    ("pcap-over-ip.pcap", "pcap-over-ip", False, "pcap stream"),
]
# What a test of explain's text reads: the text, Wireshark dissected, the finding's transport,
# mirrorwatch's header sentence, frames carried.
View = tuple[str, bool, str, str, bool]


def _view(name: str, protocol: str) -> View:
    f = _only(name, protocol)
    ev = _scan(name).evidence[f.id]
    ex = explain(f, ev, [str(PCAPS / name)], packets=3)
    return ex.text, ex.dissected, f.transport, ev.header_example, bool(ev.inner_samples)


# explain's tshark and pyshark runs, in the background (a worker process, then the waiting test
# alongside) from the moment the unit tests begin.
@early("wireshark_views")
def _viewing() -> EarlyCalls[View]:
    views = VIEWS if shutil.which("tshark") else []
    return EarlyCalls([functools.partial(_view, name, protocol) for name, protocol, *_ in views],
                      python=True)  # fmt: skip


@pytest.fixture
def wireshark_views() -> dict[tuple[str, str], View]:
    return dict(zip([(n, p) for n, p, *_ in VIEWS], _viewing().results(), strict=True))


@needs_tshark
@pytest.mark.parametrize(("name", "protocol", "dissected", "words"), VIEWS)
def test_wireshark_view(
    name: str,
    protocol: str,
    dissected: bool,
    words: str,
    wireshark_views: dict[tuple[str, str], View],
) -> None:
    text, read, transport, header_example, carried = wireshark_views[name, protocol]
    assert read is dissected, text
    assert words in text
    assert ("Wireshark cannot read this format" in text) is not dissected
    assert ("Wireshark reads " in text) is dissected
    if dissected and transport == "udp":
        assert "Wireshark reads 3 of these 3 packet(s)" in text
    if not dissected:
        # The leading bytes as mirrorwatch's header sentence names them, in the hex dump.
        leading = header_example.split(":")[0]
        assert f"0000  {leading}" in text, text
        if carried:
            assert "frames it carried" in text


@needs_tshark
def test_rpcap_data_connection_gets_its_link_type() -> None:
    data = next(f for f in _scan("rpcap.pcap").report.findings if f.exporter.port == 40777)
    ex = explain(data, _scan("rpcap.pcap").evidence[data.id], ["rpcap.pcap"], packets=2)
    assert ex.dissected and "RPCAP:" in ex.text and "Message type: Packet (0x07)" in ex.text
    assert "Unknown link-layer type" not in ex.text
    # The captured frame inside, dissected as Ethernet thanks to the link type preference.
    assert "(layers: eth / ip / tcp / rpcap / eth / ip / tcp)" in ex.text
    assert ex.command[-2:] == ["-Y", ex.display_filter] and "rpcap.linktype:1" in ex.command


@needs_tshark
def test_pyshark_applies_decode_as(tmp_path: Path) -> None:
    f = _only("tzsp-31337.pcap", "tzsp")
    ev = _scan("tzsp-31337.pcap").evidence[f.id]
    pcap = write_capture(tmp_path / "s", ev.outer_samples[:4])
    tshark = shutil.which("tshark")
    assert tshark is not None
    diss = DISSECTIONS["tzsp"]
    seen = read_with_pyshark(tshark, pcap, ["udp.port==31337,tzsp"], [], diss)
    assert seen.recognised == 4 and "tzsp" in seen.layers
    assert "    Version: 1" in seen.tree
    # Without the rule Wireshark does not see TZSP on 31337: the rule is what pyshark passed.
    assert read_with_pyshark(tshark, pcap, [], [], diss).recognised == 0


@needs_tshark
def test_old_tshark_gets_the_fallback_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.explain as mod

    assert version_tuple("TShark (Wireshark) 4.0.17.") == (4, 0, 17)
    assert version_tuple("TShark (Wireshark) 3.6.2 (Git v3.6.2)") == (3, 6, 2)
    monkeypatch.setattr(mod, "tshark_version", lambda _t: "TShark (Wireshark) 3.6.2")
    f = _only("tzsp-31337.pcap", "tzsp")
    ex = explain(f, _scan("tzsp-31337.pcap").evidence[f.id], ["x.pcap"], packets=1, detail=False)
    assert "#1" not in ex.display_filter and "older than 4.0" in ex.text


def _printed_command(text: str) -> list[str]:
    line = text.split("To open it yourself", 1)[1].splitlines()[1]
    return shlex.split(line)


FINDINGS = [(p, f) for p in SAMPLES for f in sample_scan(p).report.findings]


@early("printed_command_runs")
def _printed_command_runs() -> EarlyCalls[subprocess.CompletedProcess[str]]:
    """Every finding's tshark command, as explain prints it, run on its sample (listing the
    frames it selects), in the order of FINDINGS."""
    calls = []
    for path, f in FINDINGS if shutil.which("tshark") else []:
        ev = sample_scan(path).evidence.get(f.id)
        cmd = user_command(
            [str(path)], decode_as_rules(f, ev), preferences(f, ev), display_filter(f)
        )
        argv = _printed_command("To open it yourself\n  " + shlex.join(cmd))
        calls.append(run_command([*argv, "-T", "fields", "-e", "frame.number"]))
    return EarlyCalls(calls)


@pytest.fixture
def printed_command_runs() -> list[subprocess.CompletedProcess[str]]:
    return _printed_command_runs().results()


@needs_tshark
def test_printed_command_selects_exactly_the_findings_packets(
    printed_command_runs: list[subprocess.CompletedProcess[str]],
) -> None:
    """Run every printed tshark command, as printed, on its sample: it selects the finding's
    packets, no more, no fewer (both TCP directions, every source port, MACs for plain
    copies, IP fragments)."""
    assert len(FINDINGS) > 50
    results = [
        (f"{path.name} {f.protocol}", f.packets, len(proc.stdout.split()), proc.stderr)
        for (path, f), proc in zip(FINDINGS, printed_command_runs, strict=True)
    ]
    wrong = [r for r in results if r[1] != r[2]]
    assert not wrong, wrong


@needs_tshark
def test_explain_prints_that_command() -> None:
    for name, protocol in (("tee-copies.pcap", "tee-copy"), ("rpcap.pcap", "rpcap")):
        f = next(f for f in _scan(name).report.findings if f.protocol == protocol)
        ex = explain(f, _scan(name).evidence[f.id], [str(PCAPS / name)], packets=2, detail=False)
        assert _printed_command(ex.text) == ex.command
        assert ex.command[-1] == display_filter(f) and "==  " not in ex.command[-1]
