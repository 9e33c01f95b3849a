"""Typed records that leave the engine: findings and the scan report.

These records are the product's output contract (schema ``mirrorwatch/1``); docs/schema.json is
generated from them by ``mirrorwatch schema``.  They are dataclasses that convert their fields
and write JSON as the equivalent pydantic models do (detector/records.py): writing a report does
not load pydantic.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from detector.records import Converter, Record, schema

SCHEMA = "mirrorwatch/1"
# Where the JSON Schema of SCHEMA is published (docs/schema.json is the same document).
SCHEMA_ID = "https://mirrorwatch.invalid/schema/mirrorwatch-1.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Severity = Literal["info", "low", "medium", "high", "critical"]
FindingKind = Literal["mirror", "intercept", "flow-export", "tunnel"]

# JSON Schema of an address field: an IPv4 or IPv6 address, or null where there is none (plain
# copies have MACs only). Never "".
_IP_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "ipv4"},
        {"type": "string", "format": "ipv6"},
        {"type": "null"},
    ]
}
_MAC_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "pattern": "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"}, {"type": "null"}]
}
_TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time"}


def _no_empty(v: object) -> object:
    return None if v == "" else v


def _session_as_text(v: object) -> object:
    if isinstance(v, dict):
        return {str(k): x if isinstance(x, str) else str(x) for k, x in v.items()}
    return v


# Addresses and MACs: "" is none.
_NO_EMPTY: dict[str, Converter] = {"ip": _no_empty, "mac": _no_empty}
_BY_ALIAS = {"extra": "forbid", "serialize_by_alias": True, "validate_by_name": True}


@dataclass(kw_only=True)
class Geo(Record):
    """Where an address is, from a MaxMind-format database (``--geoip``)."""

    country: str | None = field(
        default=None, metadata=schema(description="ISO 3166-1 alpha-2 country code")
    )
    asn: int | None = field(default=None, metadata=schema(description="Autonomous system number"))
    as_org: str | None = field(
        default=None, metadata=schema(description="Autonomous system organisation")
    )

    @property
    def label(self) -> str:
        parts = [self.country or ""]
        if self.asn is not None:
            parts.append(f"AS{self.asn}" + (f" {self.as_org}" if self.as_org else ""))
        return ", ".join(p for p in parts if p)


@dataclass(kw_only=True)
class Endpoint(Record):
    before: ClassVar[dict[str, Converter]] = _NO_EMPTY

    ip: str | None = field(default=None, metadata=schema(json_schema_extra=_IP_SCHEMA))
    port: int | None = None
    mac: str | None = field(default=None, metadata=schema(json_schema_extra=_MAC_SCHEMA))
    # Only with --geoip: absent otherwise.
    geo: Geo | None = None

    @property
    def label(self) -> str:
        """``ip``, ``ip:port``, ``[ip6]:port``, or the MAC where there is no address."""
        if self.ip is None:
            return self.mac or "?"
        if self.port is None:
            return self.ip
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(kw_only=True)
class WatchedHost(Record):
    """A host whose traffic is inside the stream (or named in its flow records)."""

    before: ClassVar[dict[str, Converter]] = _NO_EMPTY

    ip: str | None = field(default=None, metadata=schema(json_schema_extra=_IP_SCHEMA))
    mac: str | None = field(default=None, metadata=schema(json_schema_extra=_MAC_SCHEMA))
    packets: int = 0
    bytes: int = 0
    share: float = field(
        default=0.0,
        metadata=schema(description="Fraction of the stream's carried packets involving it"),
    )


@dataclass(kw_only=True)
class Finding(Record):
    # Each JSON Lines line is one finding and names its schema, like the report does.
    schema_config: ClassVar[dict[str, Any]] = _BY_ALIAS
    before: ClassVar[dict[str, Converter]] = {"session": _session_as_text}

    schema_: Literal["mirrorwatch/1"] = field(default=SCHEMA, metadata=schema(alias="schema"))
    id: str = field(
        metadata=schema(description="Stable for the same stream: same exporter, collector, format")
    )
    kind: FindingKind
    protocol: str
    severity: Severity
    confidence: float = field(
        metadata=schema(
            ge=0.0, le=1.0, description="identification × certainty (docs/how-it-works.md)"
        )
    )
    identification: float = field(
        default=0.0,
        metadata=schema(
            ge=0.0,
            le=1.0,
            description="How surely the stream is this format: structure matched, share of "
            "packets validated, their number, usual port",
        ),
    )
    certainty: float = field(
        default=0.0,
        metadata=schema(
            ge=0.0,
            le=1.0,
            description="How surely the verdict is right: copies matched to originals, both-way "
            "inner conversations, copy-only format, targeted pattern, amount of evidence",
        ),
    )
    exporter: Endpoint
    collector: Endpoint
    transport: str = field(
        metadata=schema(description="udp, tcp, gre, ip/<number>, or l2 for plain copies")
    )
    first_seen: str = field(
        metadata=schema(description="ISO 8601 UTC", json_schema_extra=_TIME_SCHEMA)
    )
    last_seen: str = field(
        metadata=schema(description="ISO 8601 UTC", json_schema_extra=_TIME_SCHEMA)
    )
    packets: int
    bytes: int
    # Identifiers as strings: one field keeps one type in every finding (a LIID is a number in
    # one format and text in another), which search engines' field mappings need.
    session: dict[str, str] = field(default_factory=dict)
    watched: list[WatchedHost] = field(default_factory=list)
    reason_codes: list[str] = field(
        default_factory=list,
        metadata=schema(
            description="Stable code of each reason, in the order of `reasons` (docs/reasons.md)"
        ),
    )
    reasons: list[str] = field(
        default_factory=list,
        metadata=schema(description="Each reason in a sentence, worded from its code"),
    )
    # Evidence figures behind the verdict (validated share, inner directions, copy match...).
    evidence: dict[str, int | float | str | bool | list[str] | list[int]] = field(
        default_factory=dict
    )
    allow_listed: bool = False


@dataclass(kw_only=True)
class InputSummary(Record):
    path: str
    packets: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Report(Record):
    schema_config: ClassVar[dict[str, Any]] = {
        **_BY_ALIAS,
        "json_schema_extra": {"$schema": JSON_SCHEMA_DIALECT, "$id": SCHEMA_ID},
    }

    schema_: Literal["mirrorwatch/1"] = field(default=SCHEMA, metadata=schema(alias="schema"))
    version: str
    inputs: list[InputSummary]
    stats: dict[str, int | float | str]
    findings: list[Finding]
