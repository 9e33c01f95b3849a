"""``mirrorwatch explain``: Decode As rules, filters, and Wireshark's reading of real samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.explain import (
    INSTALL_HINT,
    decode_as_rules,
    display_filter,
    explain,
    preferences,
    resolve,
)
from detector.findings import Endpoint, Finding
from detector.scan import ScanResult, scan_paths

PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
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
        "ipv6.src#1 == 2001:db8:1::1 && ipv6.dst#1 == 2001:db8:9::10 && gre"
    )
    f = _only("tzsp-31337.pcap", "tzsp")
    assert display_filter(f).endswith("udp.srcport#1 == 45232 && udp.dstport#1 == 31337")
    data = next(f for f in _scan("rpcap.pcap").report.findings if f.exporter.port == 40777)
    assert preferences(data, _scan("rpcap.pcap").evidence[data.id]) == ["rpcap.linktype:1"]
    ipip = Finding(
        id="mw-1", kind="tunnel", protocol="ipip", severity="info", confidence=1.0,
        exporter=Endpoint(ip="192.0.2.1"), collector=Endpoint(ip="192.0.2.2"),
        transport="ip/4", first_seen="", last_seen="", packets=1, bytes=1,
    )  # fmt: skip
    assert display_filter(ipip).endswith("ip.proto#1 == 4")


def test_resolve_by_prefix() -> None:
    findings = _scan("rpcap.pcap").report.findings
    f = findings[0]
    assert resolve(f.id, findings) is f
    assert resolve(f.id[3:12], findings) is f  # without "mw-", a unique prefix
    assert resolve("mw-", findings) is None  # ambiguous
    assert resolve("nothing", findings) is None


def test_missing_tshark_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    res = CliRunner().invoke(main, ["explain", "mw-0", str(PCAPS / "tzsp.pcap")])
    assert res.exit_code == 2
    assert "apt-get install tshark" in res.output and INSTALL_HINT in res.output


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
    assert "TZSP: Ethernet" in out and "Version: 1" in out  # tshark's own tree
    assert "Decode As: udp.port==31337,tzsp" in out
    assert "-d udp.port==31337,tzsp -Y 'ip.src#1 == 10.1.0.1" in out
    assert "Wireshark: Analyze > Decode As...: udp.port==31337 -> TZSP" in out


@needs_tshark
@pytest.mark.parametrize(
    ("name", "protocol", "dissected", "words"),
    [
        # Wireshark reads these with explain's rules alone: the user needs no Decode As.
        ("tzsp-31337.pcap", "tzsp", True, "TZSP"),
        ("pcli12.pcap", "pcli", True, "Packet Cable Lawful Intercept"),
        ("jmirror.pcap", "jmirror", True, "Juniper Packet Mirror"),
        ("psamp.pcap", "psamp", True, "Cisco NetFlow/IPFIX"),
        ("x2x3-xcc.pcap", "etsi-x2x3", True, "5G Lawful Interception"),
        # These it cannot: said so, with the header bytes mirrorwatch decoded.
        ("nokia-li.pcap", "nokia-li", False, "Nokia"),
        ("bcm-li.pcap", "bcm-li", False, "Broadcom"),
        ("pcap-over-ip.pcap", "pcap-over-ip", False, "pcap stream"),
    ],
)
def test_wireshark_view(name: str, protocol: str, dissected: bool, words: str) -> None:
    f = _only(name, protocol)
    ev = _scan(name).evidence[f.id]
    ex = explain(f, ev, [str(PCAPS / name)], packets=3)
    assert ex.dissected is dissected, ex.text
    assert words in ex.text
    assert ("Wireshark cannot read this format" in ex.text) is not dissected
    assert ("Wireshark reads " in ex.text) is dissected
    if dissected and f.transport == "udp":
        assert "Wireshark reads 3 of these 3 packet(s)" in ex.text
    if not dissected:
        # The leading bytes as mirrorwatch's header sentence names them, in the hex dump.
        leading = ev.header_example.split(":")[0]
        assert f"0000  {leading}" in ex.text, ex.text
        if ev.inner_samples:
            assert "frames it carried" in ex.text


@needs_tshark
def test_rpcap_data_connection_gets_its_link_type() -> None:
    data = next(f for f in _scan("rpcap.pcap").report.findings if f.exporter.port == 40777)
    ex = explain(data, _scan("rpcap.pcap").evidence[data.id], ["rpcap.pcap"], packets=2)
    assert ex.dissected and "Remote Packet Capture" in ex.text
    assert "Unknown link-layer type" not in ex.text
    assert "Ethernet II, Src: 3c:22:fb" in ex.text  # the captured frame inside, dissected
    assert ex.command[-2:] == ["-Y", ex.display_filter] and "rpcap.linktype:1" in ex.command
