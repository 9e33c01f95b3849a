"""Typed records that leave the engine: findings and the scan report.

These models are the product's output contract (schema ``mirrorwatch/1``); docs/schema.json is
generated from them by ``mirrorwatch schema``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA = "mirrorwatch/1"
# Where the JSON Schema of SCHEMA is published (docs/schema.json is the same document).
SCHEMA_ID = "https://mirrorwatch.invalid/schema/mirrorwatch-1.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
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


class Geo(BaseModel):
    """Where an address is, from a MaxMind-format database (``--geoip``)."""

    model_config = ConfigDict(extra="forbid")

    country: str | None = Field(None, description="ISO 3166-1 alpha-2 country code")
    asn: int | None = Field(None, description="Autonomous system number")
    as_org: str | None = Field(None, description="Autonomous system organisation")

    @property
    def label(self) -> str:
        parts = [self.country or ""]
        if self.asn is not None:
            parts.append(f"AS{self.asn}" + (f" {self.as_org}" if self.as_org else ""))
        return ", ".join(p for p in parts if p)


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip: str | None = Field(None, json_schema_extra=_IP_SCHEMA)
    port: int | None = None
    mac: str | None = Field(None, json_schema_extra=_MAC_SCHEMA)
    # Only with --geoip: absent otherwise.
    geo: Geo | None = None

    _ip = field_validator("ip", "mac", mode="before")(_no_empty)

    @property
    def label(self) -> str:
        """``ip``, ``ip:port``, ``[ip6]:port``, or the MAC where there is no address."""
        if self.ip is None:
            return self.mac or "?"
        if self.port is None:
            return self.ip
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


class WatchedHost(BaseModel):
    """A host whose traffic is inside the stream (or named in its flow records)."""

    model_config = ConfigDict(extra="forbid")

    ip: str | None = Field(None, json_schema_extra=_IP_SCHEMA)
    mac: str | None = Field(None, json_schema_extra=_MAC_SCHEMA)
    packets: int = 0
    bytes: int = 0
    share: float = Field(0.0, description="Fraction of the stream's carried packets involving it")

    _ip = field_validator("ip", "mac", mode="before")(_no_empty)


class Finding(BaseModel):
    # Each JSON Lines line is one finding and names its schema, like the report does.
    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=True)

    schema_: Literal["mirrorwatch/1"] = Field(SCHEMA, alias="schema")
    id: str = Field(description="Stable for the same stream: same exporter, collector, format")
    kind: FindingKind
    protocol: str
    severity: Severity
    confidence: float = Field(
        ge=0.0, le=1.0, description="identification × certainty (docs/how-it-works.md)"
    )
    identification: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How surely the stream is this format: structure matched, share of packets "
        "validated, their number, usual port",
    )
    certainty: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How surely the verdict is right: copies matched to originals, both-way "
        "inner conversations, copy-only format, targeted pattern, amount of evidence",
    )
    exporter: Endpoint
    collector: Endpoint
    transport: str = Field(description="udp, tcp, gre, ip/<number>, or l2 for plain copies")
    first_seen: str = Field(description="ISO 8601 UTC", json_schema_extra=_TIME_SCHEMA)
    last_seen: str = Field(description="ISO 8601 UTC", json_schema_extra=_TIME_SCHEMA)
    packets: int
    bytes: int
    # Identifiers as strings: one field keeps one type in every finding (a LIID is a number in
    # one format and text in another), which search engines' field mappings need.
    session: dict[str, str] = Field(default_factory=dict)
    watched: list[WatchedHost] = Field(default_factory=list)
    reason_codes: list[str] = Field(
        default_factory=list,
        description="Stable code of each reason, in the order of `reasons` (docs/reasons.md)",
    )
    reasons: list[str] = Field(
        default_factory=list, description="Each reason in a sentence, worded from its code"
    )
    # Evidence figures behind the verdict (validated share, inner directions, copy match...).
    evidence: dict[str, int | float | str | bool | list[str] | list[int]] = Field(
        default_factory=dict
    )
    allow_listed: bool = False

    @field_validator("session", mode="before")
    @classmethod
    def _session_as_text(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k): x if isinstance(x, str) else str(x) for k, x in v.items()}
        return v


class InputSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    packets: int = 0
    bytes: int = 0
    errors: list[str] = Field(default_factory=list)


class Report(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        serialize_by_alias=True,
        validate_by_name=True,
        json_schema_extra={"$schema": JSON_SCHEMA_DIALECT, "$id": SCHEMA_ID},
    )

    schema_: Literal["mirrorwatch/1"] = Field(SCHEMA, alias="schema")
    version: str
    inputs: list[InputSummary]
    stats: dict[str, int | float | str]
    findings: list[Finding]
