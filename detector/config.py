"""The configuration file (``--config mirrorwatch.toml``): expected collectors, home networks,
router addresses and thresholds, validated by pydantic.

Example::

    home_networks = ["192.168.0.0/16"]
    routers = ["192.168.88.1"]

    [[expected]]
    protocol = "netflow-v9"
    collector = "10.0.0.5"
    port = 2055
    note = "our own flow collector"

    [thresholds]
    targeted_share = 0.8

    [detection]
    reject_probe_stride = 8
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import fields
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.networks import IPvAnyAddress, IPvAnyNetwork

from detector.detection import FIELDS, Detection
from detector.findings import Finding
from detector.limits import Limits
from detector.policy.verdict import PolicyContext, Thresholds


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the field."""


class Expected(BaseModel):
    """One expected stream: a finding that matches every field given is allow-listed (low)."""

    model_config = ConfigDict(extra="forbid")

    collector: str | None = Field(
        None, description="Collector address or prefix (10.0.0.5, 10.0.0.0/24)"
    )
    collector_mac: str | None = Field(
        None, pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", description="For plain copies (TEE)"
    )
    port: int | None = Field(None, ge=0, le=65535)
    protocol: str | None = Field(None, description="e.g. tzsp, netflow-v9; omit for any")
    exporter: str | None = Field(None, description="Exporter address or prefix; omit for any")
    note: str = ""

    @field_validator("collector", "exporter")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.ip_network(v, strict=False)  # raises ValueError with a clear message
        return v

    @model_validator(mode="after")
    def _some_collector(self) -> Expected:
        if self.collector is None and self.collector_mac is None:
            raise ValueError("give collector (an address or prefix) or collector_mac")
        return self

    def matches(self, f: Finding) -> bool:
        if self.protocol is not None and self.protocol != f.protocol:
            return False
        if self.port is not None and self.port != f.collector.port:
            return False
        if self.collector is not None and not _in(f.collector.ip, self.collector):
            return False
        if self.collector_mac is not None and self.collector_mac != f.collector.mac:
            return False
        return self.exporter is None or _in(f.exporter.ip, self.exporter)


class ThresholdsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    both_way_share: float | None = Field(None, ge=0, le=1)
    min_decide_packets: int | None = Field(None, ge=1)
    targeted_share: float | None = Field(None, ge=0, le=1)
    targeted_hosts: int | None = Field(None, ge=1, le=20)
    targeted_link_hosts: int | None = Field(None, ge=1)
    fixed_offset_share: float | None = Field(None, ge=0, le=1)
    min_unknown_packets: int | None = Field(None, ge=1)
    min_copy_checks: int | None = Field(None, ge=1)
    copy_match_share: float | None = Field(None, ge=0, le=1)
    encrypted_medium_correlation: float | None = Field(None, ge=0, le=1)
    encrypted_high_correlation: float | None = Field(None, ge=0, le=1)
    encrypted_min_ratio: float | None = Field(None, ge=0)
    encrypted_max_ratio: float | None = Field(None, ge=0)
    encrypted_max_back_share: float | None = Field(None, ge=0)
    connlog_share: float | None = Field(None, ge=0, le=1)
    min_connlog_lines: int | None = Field(None, ge=1)
    guess_min_packets: int | None = Field(None, ge=1)
    guess_min_hosts: int | None = Field(None, ge=1)
    guess_min_conversations: int | None = Field(None, ge=1)
    capture_time_slack: float | None = Field(None, gt=0)


class DetectionModel(BaseModel):
    """``[detection]``: what the engine looks at (detector.detection; each value is a blind spot
    listed in docs/how-it-works.md)."""

    model_config = ConfigDict(extra="forbid")

    full_decode: int | None = Field(None, ge=1)
    sample_stride: int | None = Field(None, ge=1)
    late_sample_after: int | None = Field(None, ge=1)
    late_sample_stride: int | None = Field(None, ge=1)
    flow_export_stride: int | None = Field(None, ge=1)
    reject_after: int | None = Field(None, ge=1)
    reject_probe_stride: int | None = Field(None, ge=1)
    quiet_after_udp: int | None = Field(None, ge=1, le=255)
    quiet_after_tcp: int | None = Field(None, ge=1, le=255)
    quiet_probe_stride: int | None = Field(None, ge=1)
    min_validated_share: float | None = Field(None, ge=0, le=1)


class LimitsModel(BaseModel):
    """``[limits]``: memory budgets per engine (docs/config.md gives the defaults)."""

    model_config = ConfigDict(extra="forbid")

    streams: int | None = Field(None, ge=16)
    streams_per_collector: int | None = Field(None, ge=1)
    tunnel_streams_per_pair: int | None = Field(None, ge=1)
    flows: int | None = Field(None, ge=1024)
    hosts: int | None = Field(None, ge=1024)
    templates_per_stream: int | None = Field(None, ge=1)
    template_fields: int | None = Field(None, ge=1, le=65535)
    template_fields_total: int | None = Field(None, ge=1)
    tcp_stream_bytes: int | None = Field(None, ge=4096)
    tcp_total_bytes: int | None = Field(None, ge=4096)
    fragment_packets: int | None = Field(None, ge=16)
    fragment_bytes: int | None = Field(None, ge=65536)
    samples_per_stream: int | None = Field(None, ge=0, le=200)
    sample_bytes: int | None = Field(None, ge=0)
    timeline_seconds: int | None = Field(None, ge=60)
    timeline_cells: int | None = Field(None, ge=1024)
    copy_natives: int | None = Field(None, ge=1024)
    copy_pending: int | None = Field(None, ge=0)
    plain_copies: int | None = Field(None, ge=16)
    live_findings: int | None = Field(None, ge=16)

    def limits(self) -> Limits:
        out = Limits()
        for name in (f.name for f in fields(Limits)):
            value = getattr(self, name, None)
            if value is not None:
                setattr(out, name, value)
        return out


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected: list[Expected] = Field(default_factory=list)
    home_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    routers: list[IPvAnyAddress] = Field(default_factory=list)
    thresholds: ThresholdsModel = Field(default_factory=ThresholdsModel)
    detection: DetectionModel = Field(default_factory=DetectionModel)
    limits: LimitsModel = Field(default_factory=LimitsModel)
    # MaxMind-format databases (country/city, ASN) for the exporters' and collectors' context.
    geoip: list[str] = Field(default_factory=list)
    source: str = Field("", exclude=True)

    def allowed(self, f: Finding) -> str | None:
        """Why ``f`` is expected (which entry of which file), or None."""
        for i, e in enumerate(self.expected, 1):
            if e.matches(f):
                note = f" ({e.note})" if e.note else ""
                return f"Allow-listed by {self.source or 'the config'}, expected entry {i}{note}."
        return None

    def policy(self) -> PolicyContext:
        th = Thresholds()
        for name in (f.name for f in fields(Thresholds)):
            value = getattr(self.thresholds, name, None)
            if value is not None:
                setattr(th, name, value)
        det = Detection()
        for name in FIELDS:
            value = getattr(self.detection, name, None)
            if value is not None:
                setattr(det, name, value)
        return PolicyContext(
            thresholds=th,
            detection=det,
            allow=self.allowed,
            home_networks=[ipaddress.ip_network(str(n)) for n in self.home_networks],
            routers={str(r) for r in self.routers},
            limits=self.limits.limits(),
        )


def _in(ip: str, prefix: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return False


def _where(loc: tuple[int | str, ...]) -> str:
    """``('expected', 0, 'port')`` → ``expected[1].port`` (entries counted from 1, as in the
    file)."""
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; ConfigError names the file and the offending field."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{p}: {problems}") from exc
    cfg.source = str(p)
    return cfg


def baseline_toml(findings: list[Finding], sources: list[str]) -> str:
    """An allow-list of the copy and export streams in ``findings``, for a person to review."""
    lines = [
        f"# mirrorwatch baseline of {len(sources)} capture(s): {', '.join(sources)[:200]}",
        "# Each entry allow-lists a stream that copies traffic or exports records about it:",
        "# scans with --config report it at severity low. Keep only what you set up yourself.",
        "",
    ]
    for f in findings:
        if f.kind == "tunnel":
            continue
        lines.append("[[expected]]")
        lines.append(f'protocol = "{f.protocol}"')
        if f.exporter.ip:
            lines.append(f'exporter = "{f.exporter.ip}"')
        if f.collector.ip:
            lines.append(f'collector = "{f.collector.ip}"')
        elif f.collector.mac:
            lines.append(f'collector_mac = "{f.collector.mac}"')
        if f.collector.port is not None:
            lines.append(f"port = {f.collector.port}")
        note = f"{f.kind}, {f.packets} packets from {f.first_seen} ({f.id})"
        lines.append(f'note = "{note}"')
        lines.append("")
    return "\n".join(lines)
