"""The JSON report and JSON Lines against docs/schema.json (JSON Schema 2020-12), formats checked:
addresses are IPv4/IPv6 or null (never ""), times are RFC 3339, every line names its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from mwtest import ROOT, SAMPLES, sample_scan

from detector.findings import SCHEMA, SCHEMA_ID, Endpoint
from detector.report import renderer

SCHEMA_DOC = json.loads((ROOT / "docs" / "schema.json").read_text())


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# A JSON Lines line is one Finding: the report's definition, with the shared $defs.
FINDING_SCHEMA = {**SCHEMA_DOC["$defs"]["Finding"], "$defs": SCHEMA_DOC["$defs"]}
VALIDATORS = {"report": _validator(SCHEMA_DOC), "finding": _validator(FINDING_SCHEMA)}


def _errors(which: str, doc: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATORS[which].iter_errors(doc)]


def test_schema_names_itself() -> None:
    assert SCHEMA_DOC["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA_DOC["$id"] == SCHEMA_ID
    ip = SCHEMA_DOC["$defs"]["Endpoint"]["properties"]["ip"]
    assert {"format": "ipv4", "type": "string"} in ip["anyOf"] and {"type": "null"} in ip["anyOf"]
    first = SCHEMA_DOC["$defs"]["Finding"]["properties"]["first_seen"]
    assert first["format"] == "date-time"


def test_formats_are_checked() -> None:
    # Guards the tests below: the format checker must reject what the schema forbids.
    line = {
        "schema": SCHEMA, "id": "mw-1", "kind": "mirror", "protocol": "tzsp", "severity": "high",
        "confidence": 1.0, "exporter": {"ip": ""}, "collector": {"ip": "10.0.0.1"},
        "transport": "udp", "first_seen": "yesterday", "last_seen": "2026-01-15T10:00:00Z",
        "packets": 1, "bytes": 1,
    }  # fmt: skip
    errors = _errors("finding", line)
    assert any("exporter" in e for e in errors), errors
    assert any("first_seen" in e for e in errors), errors


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_report_and_lines_validate(sample: Path) -> None:
    report = sample_scan(sample).report
    doc = json.loads(renderer("json")(report))
    assert not _errors("report", doc)
    lines = [json.loads(line) for line in renderer("jsonl")(report).splitlines()]
    assert len(lines) == len(doc["findings"])
    for line in lines:
        assert line["schema"] == SCHEMA
        assert not _errors("finding", line)
        for end in (line["exporter"], line["collector"]):
            assert end["ip"] != "" and (end["ip"] or end["mac"])


def test_empty_address_becomes_null() -> None:
    e = Endpoint(ip="", mac="00:1b:54:0a:01:01")
    assert e.ip is None and e.label == "00:1b:54:0a:01:01"
    assert Endpoint(ip="2001:db8::1", port=5).label == "[2001:db8::1]:5"
