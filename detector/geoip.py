"""Collector context: country and autonomous system of each exporter and collector, from
MaxMind-format databases (GeoLite2/GeoIP2 Country, City and ASN, or one database holding both,
as some providers ship).  Reading uses the ``maxminddb`` package; nothing is fetched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from detector.findings import Endpoint, Finding, Geo


class GeoIPError(RuntimeError):
    pass


def _country(record: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        c = record.get(key)
        if isinstance(c, dict) and isinstance(c.get("iso_code"), str):
            return c["iso_code"]
    code = record.get("country_code")  # single-database providers
    return code if isinstance(code, str) else None


def _asn(record: dict[str, Any]) -> tuple[int | None, str | None]:
    number = record.get("autonomous_system_number")
    org = record.get("autonomous_system_organization")
    if number is None and isinstance(record.get("asn"), str | int):
        raw = str(record["asn"]).upper().removeprefix("AS")
        number = int(raw) if raw.isdigit() else None
        org = record.get("as_name") or record.get("as_org") or org
    return (number if isinstance(number, int) else None), (org if isinstance(org, str) else None)


class GeoIP:
    """One or more MaxMind-format databases, asked in order; the first answer of each kind wins."""

    def __init__(self, paths: Sequence[str]) -> None:
        import maxminddb

        self.readers = []
        for p in paths:
            try:
                self.readers.append(maxminddb.open_database(p))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                raise GeoIPError(f"--geoip {p}: not a readable MaxMind database ({exc})") from exc
        self.cache: dict[str, Geo | None] = {}

    def lookup(self, ip: str | None) -> Geo | None:
        if ip is None:
            return None
        if ip in self.cache:
            return self.cache[ip]
        country, number, org = None, None, None
        for reader in self.readers:
            try:
                record = reader.get(ip)
            except ValueError:  # not an address, or IPv6 in an IPv4-only database
                continue
            if not isinstance(record, dict):
                continue
            country = country or _country(record)
            n, o = _asn(record)
            if number is None and n is not None:
                number, org = n, o
        geo = Geo(country=country, asn=number, as_org=org) if country or number else None
        self.cache[ip] = geo
        return geo

    def enrich(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            for end in (f.exporter, f.collector):
                _set(end, self.lookup(end.ip))

    def close(self) -> None:
        for r in self.readers:
            r.close()


def _set(end: Endpoint, geo: Geo | None) -> None:
    if geo is not None:
        end.geo = geo


def enrich(findings: Iterable[Finding], paths: Sequence[str]) -> None:
    """Give each exporter and collector its country and AS from the databases at ``paths``."""
    if not paths:
        return
    db = GeoIP(paths)
    try:
        db.enrich(findings)
    finally:
        db.close()
