"""Severity policy: targeted intercepts, allow-lists, baselines, config errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from mwtest import PCAPS

from detector.cli import main
from detector.config import load_config
from detector.findings import Report
from detector.scan import scan_paths


def scan_with(paths: list[Path], config: Path | None = None) -> Report:
    policy = load_config(config).policy() if config else None
    return scan_paths([str(p) for p in paths], policy).report


def test_targeted_mirror_is_critical() -> None:
    (f,) = scan_with([PCAPS / "targeted-mirror.pcap"]).findings
    assert f.severity == "critical"
    assert f.evidence["targeted"] is True
    assert float(f.evidence["top_hosts_share"]) >= 0.8
    assert "targeted" in f.reason_codes


def test_home_networks_pick_the_targets(tmp_path: Path) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text('home_networks = ["192.168.20.0/24"]\n')
    (f,) = scan_with([PCAPS / "targeted-mirror.pcap"], cfg).findings
    targets = f.evidence["targets"]
    assert isinstance(targets, list) and targets
    assert all(str(t).startswith("192.168.20.") for t in targets)


def test_broad_mirror_is_not_targeted() -> None:
    (f,) = scan_with([PCAPS / "mirror-with-natives.pcap"]).findings
    assert f.severity == "high"
    assert not f.evidence.get("targeted")


def test_intercepts_are_critical() -> None:
    for name in ("pcli.pcap", "jmirror.pcap", "etsi-102232.pcap", "x2x3-keepalive.pcap"):
        findings = scan_with([PCAPS / name]).findings
        assert findings and all(f.severity == "critical" for f in findings), name


def test_allow_list_lowers_to_low(tmp_path: Path) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(
        '[[expected]]\nprotocol = "tzsp"\ncollector = "10.9.0.0/24"\nport = 37008\n'
        'note = "lab sniffer"\n'
    )
    (f,) = scan_with([PCAPS / "tzsp.pcap"], cfg).findings
    assert f.severity == "low" and f.allow_listed
    why = f.reasons[f.reason_codes.index("allow-listed")]
    assert "lab sniffer" in why and str(cfg) in why
    # The same stream on another port is not expected.
    (g,) = scan_with([PCAPS / "tzsp-31337.pcap"], cfg).findings
    assert g.severity == "high" and not g.allow_listed


def test_baseline_round_trip(tmp_path: Path) -> None:
    samples = [PCAPS / n for n in ("tzsp.pcap", "netflow-v9.pcap", "pcli.pcap", "tee-copies.pcap",
                                   "vxlan-overlay.pcap", "sflow-vxlan.pcap")]  # fmt: skip
    out = tmp_path / "baseline.toml"
    r = CliRunner().invoke(main, ["baseline", *map(str, samples), "-o", str(out)])
    assert r.exit_code == 0, r.output
    listed = out.read_text().count("[[expected]]")
    before = scan_with(samples).findings
    assert listed == len([f for f in before if f.kind != "tunnel"]) >= 5
    after = scan_with(samples, out).findings
    for f in after:
        if f.kind == "tunnel":
            assert f.severity == "info"
        else:
            assert f.severity == "low" and f.allow_listed, (f.protocol, f.severity)


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[expected]]\ncollector = "10.0.0.1"\nport = 70000\n')
    r = CliRunner().invoke(main, ["scan", "--config", str(cfg), str(PCAPS / "tzsp.pcap")])
    assert r.exit_code == 2
    assert str(cfg) in r.stderr and "expected[1].port" in r.stderr
    cfg.write_text("this is = = not toml")
    r = CliRunner().invoke(main, ["scan", "--config", str(cfg), str(PCAPS / "tzsp.pcap")])
    assert r.exit_code == 2 and "not valid TOML" in r.stderr
    cfg.write_text("unknown_key = 1\n")
    r = CliRunner().invoke(main, ["scan", "--config", str(cfg), str(PCAPS / "tzsp.pcap")])
    assert r.exit_code == 2 and "unknown_key" in r.stderr


def test_keepalive_only_channel_is_one_armed_finding() -> None:
    (f,) = scan_with([PCAPS / "x2x3-keepalive.pcap"]).findings
    assert f.kind == "intercept" and f.severity == "critical"
    assert f.evidence["keepalive_only"] is True
    assert "keepalive-only" in f.reason_codes
    # Both directions of the connection are in it: keep-alives one way, acks the other.
    assert {f.exporter.port, f.collector.port} >= {50443}
    (g,) = scan_with([PCAPS / "x2x3-xcc.pcap"]).findings
    assert not g.evidence.get("keepalive_only") and g.watched
