"""Typed records that leave the engine: findings and the scan report.

These models are the product's output contract (schema ``mirrorwatch/1``); docs/schema.json is
generated from them by ``mirrorwatch schema``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "mirrorwatch/1"

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
FindingKind = Literal["mirror", "intercept", "flow-export", "tunnel"]


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip: str
    port: int | None = None
    mac: str | None = None


class WatchedHost(BaseModel):
    """A host whose traffic is inside the stream (or named in its flow records)."""

    model_config = ConfigDict(extra="forbid")

    ip: str | None = None
    mac: str | None = None
    packets: int = 0
    bytes: int = 0
    share: float = Field(0.0, description="Fraction of the stream's carried packets involving it")


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Stable for the same stream: same exporter, collector, format")
    kind: FindingKind
    protocol: str
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    exporter: Endpoint
    collector: Endpoint
    transport: str = Field(description="udp, tcp, gre or ip/<number>")
    first_seen: str = Field(description="ISO 8601 UTC")
    last_seen: str = Field(description="ISO 8601 UTC")
    packets: int
    bytes: int
    session: dict[str, int | str] = Field(default_factory=dict)
    watched: list[WatchedHost] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    # Evidence figures behind the verdict (validated share, inner directions, copy match...).
    evidence: dict[str, int | float | str | bool | list[str] | list[int]] = Field(
        default_factory=dict
    )
    allow_listed: bool = False


class InputSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    packets: int = 0
    bytes: int = 0
    errors: list[str] = Field(default_factory=list)


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(SCHEMA, alias="schema")
    version: str
    inputs: list[InputSummary]
    stats: dict[str, int | float | str]
    findings: list[Finding]
