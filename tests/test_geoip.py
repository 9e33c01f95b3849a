"""Collector context: country and AS of exporters and collectors from MaxMind-format databases,
built here with mmdb-writer and read back by the maxminddb package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from mwtest import PCAPS

pytest.importorskip("mmdb_writer", reason="mmdb-writer (test extra) not installed")
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from detector.cli import main
from detector.geoip import GeoIP, GeoIPError


def _db(path: Path, kind: str, entries: dict[str, dict]) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind)
    for net, record in entries.items():
        w.insert_network(IPSet([net]), record)
    w.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("geoip")
    country = _db(d / "country.mmdb", "GeoLite2-Country", {
        "10.1.0.0/24": {"country": {"iso_code": "NZ", "names": {"en": "New Zealand"}}},
        "10.9.0.0/24": {"country": {"iso_code": "DE", "names": {"en": "Germany"}}},
        "2001:db8:9::/48": {"country": {"iso_code": "NL"}},
    })  # fmt: skip
    asn = _db(d / "asn.mmdb", "GeoLite2-ASN", {
        "10.9.0.0/24": {"autonomous_system_number": 64500,
                        "autonomous_system_organization": "Example Collector Ltd"},
    })  # fmt: skip
    return country, asn


def test_lookup_both_databases(dbs: tuple[Path, Path]) -> None:
    db = GeoIP([str(p) for p in dbs])
    geo = db.lookup("10.9.0.10")
    assert geo is not None and (geo.country, geo.asn, geo.as_org) == (
        "DE", 64500, "Example Collector Ltd",
    )  # fmt: skip
    exp = db.lookup("10.1.0.1")
    assert exp is not None and (exp.country, exp.asn) == ("NZ", None)
    assert db.lookup("192.0.2.1") is None and db.lookup(None) is None
    assert db.lookup("2001:db8:9::10") is not None
    db.close()


def test_scan_json_and_eve_carry_it(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    args = ["scan", "-q", "--geoip", str(dbs[0]), "--geoip", str(dbs[1])]
    res = CliRunner().invoke(main, [*args, "--format", "json", str(PCAPS / "tzsp.pcap")])
    (f,) = json.loads(res.output)["findings"]
    assert f["exporter"]["geo"] == {"country": "NZ", "asn": None, "as_org": None}
    assert f["collector"]["geo"] == {"country": "DE", "asn": 64500,
                                     "as_org": "Example Collector Ltd"}  # fmt: skip
    res = CliRunner().invoke(main, [*args, "--format", "eve", str(PCAPS / "tzsp.pcap")])
    md = json.loads(res.output)["alert"]["metadata"]
    assert md["collector_geo"] == ["DE", "AS64500", "Example Collector Ltd"]
    assert md["exporter_geo"] == ["NZ"]
    res = CliRunner().invoke(main, [*args, "--format", "html", str(PCAPS / "tzsp.pcap")])
    assert "DE, AS64500 Example Collector Ltd" in res.output
    page = tmp_path / "r.html"
    res = CliRunner().invoke(
        main, ["report", "-q", "--geoip", str(dbs[1]), "-o", str(page), str(PCAPS / "tzsp.pcap")]
    )
    assert res.exit_code == 0 and "AS64500 Example Collector Ltd" in page.read_text()


def test_config_key(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "mirrorwatch.toml"
    cfg.write_text(f'geoip = ["{dbs[0]}"]\n')
    res = CliRunner().invoke(
        main, ["scan", "-q", "--config", str(cfg), "--format", "jsonl", str(PCAPS / "tzsp.pcap")]
    )
    assert json.loads(res.output)["collector"]["geo"]["country"] == "DE"


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(GeoIPError):
        GeoIP([str(bad)])
    res = CliRunner().invoke(main, ["scan", "-q", "--geoip", str(bad), str(PCAPS / "tzsp.pcap")])
    assert res.exit_code == 2 and "not a readable MaxMind database" in res.output
