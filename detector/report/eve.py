"""Findings as Suricata EVE alerts, one JSON object per line (mapping: docs/eve.md).

Public entry points: ``eve_event(finding, ...)`` renders one Finding to one EVE dict and
``eve_line(finding, ...)`` to one JSON line (for ``watch --format eve``); ``render_eve`` renders a
report.  Every line validates against Suricata's own EVE schema (no field of its own at the top
level), so a SIEM's Suricata pipeline takes it as it is.

docs/eve.md is checked against the tables here (tests/test_report_eve.py): SIDS, FIELDS and
METADATA are the documentation's source.
"""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from detector.decode.layers import vlan_ids
from detector.findings import Finding, Report
from detector.protocols import registry
from detector.protocols.base import ip_protocol
from detector.report.safe import json_line_safe

if TYPE_CHECKING:
    from detector.evidence import StreamEvidence

# signature_id = KIND_BASE[kind] + PROTOCOL_SID[protocol]; both tables only ever grow, so an id
# once issued keeps its meaning.
KIND_BASE: dict[str, int] = {
    "mirror": 9_100_000,
    "intercept": 9_200_000,
    "flow-export": 9_300_000,
    "tunnel": 9_400_000,
}
# Declared by each protocol's spec (detector.protocols): ProtocolSpec.sid.
PROTOCOL_SID: dict[str, int] = registry.signature_numbers()
UNLISTED_BASE = 500  # protocols not in the table: 500 + crc32(name) % 500
CATEGORY: dict[str, str] = {
    "mirror": "Traffic Mirror Export",
    "intercept": "Lawful Intercept Export",
    "flow-export": "Flow Metadata Export",
    "tunnel": "Tunnel",
}
KIND_WORDS: dict[str, str] = {
    "mirror": "copies of traffic sent to a collector",
    "intercept": "intercepted traffic sent to a collector",
    "flow-export": "flow records sent to a collector",
    "tunnel": "tunnelled traffic",
}
EVE_SEVERITY: dict[str, int] = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 3}
# IP protocol numbers as Suricata names them in "proto".
IP_PROTO_NAMES: dict[int, str] = {
    1: "ICMP",
    4: "IP-in-IP",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "IPv6-ICMP",
    132: "SCTP",
}
# Suricata masks its flow hash to 51 bits so that JavaScript front ends read it exactly.
FLOW_ID_BITS = 51

# Top-level fields: (field, when written, value). The table in docs/eve.md is this one.
# fmt: off
FIELDS: list[tuple[str, str, str]] = [
    ("timestamp", "always", "`first_seen` in Suricata's format, UTC (`...T10:00:00.022144+0000`)"),
    ("flow_id", "always", "51-bit integer from the finding id: stable per stream"),
    ("host", "always", "the sensor name (`--sensor-name`, default the host name)"),
    ("in_iface", "live", "the capture interface the stream was seen on"),
    ("event_type", "always", '`"alert"`'),
    ("vlan", "when tagged", "outer VLAN ids of the stream's packets, outermost first"),
    ("src_ip", "IP streams", "`exporter.ip`"),
    ("src_port", "UDP and TCP", "`exporter.port`"),
    ("dest_ip", "IP streams", "`collector.ip`"),
    ("dest_port", "UDP and TCP", "`collector.port`"),
    ("proto", "IP streams", "Suricata's name of the outer IP protocol: `UDP`, `TCP`, `GRE`, "
     "`IP-in-IP`, `IPv6`, `ESP`, `AH`, `SCTP`, else the number"),
    ("ether", "when MACs are known", "`src_mac`, `dest_mac`: the stream's outer MACs (the only "
     "endpoints of plain copies, which have no IP fields)"),
    ("community_id", "IP streams", "Community ID v1 of the outer flow (exporter to collector)"),
    ("app_proto", "always", "mirrorwatch's protocol name, e.g. `tzsp`, `erspan-2`, `netflow-v9`"),
    ("alert", "always", "below"),
    ("flow", "always", "`pkts_toserver`, `bytes_toserver` (exporter to collector), "
     "`pkts_toclient` (and `bytes_toclient` for TCP: back), `start`, `end`"),
]
# fmt: on
# alert.metadata keys, each a list of strings (Suricata's rule metadata shape).
METADATA: list[tuple[str, str]] = [
    ("mirrorwatch_id", "the finding id (`mirrorwatch explain` takes it)"),
    ("mirrorwatch_kind", "`mirror`, `intercept`, `flow-export` or `tunnel`"),
    ("mirrorwatch_severity", "`info` to `critical` (finer than `alert.severity`)"),
    ("confidence", "0.00 to 1.00"),
    ("exporter", "exporter address and port, or its MAC for plain copies"),
    ("collector", "collector address and port, or its MAC for plain copies"),
    ("transport", "`udp`, `tcp`, `gre`, `ip/<number>` or `l2`"),
    ("session_<key>", "each session identifier (VNI, CCCID, LIID, ...)"),
    ("watched", "up to 10 hosts whose traffic is inside, largest first"),
    ("reason_codes", "the stable code of each reason, in order (docs/reasons.md)"),
    ("reasons", "the finding's reasons, one sentence each"),
    ("allow_listed", "`true` when a config `[[expected]]` entry matched"),
    ("canary", "`true` for a `mirrorwatch canary` test stream"),
    ("exporter_geo, collector_geo", "country and AS of each end (`--geoip`)"),
]
WATCHED_IN_METADATA = 10


def signature_id(kind: str, protocol: str) -> int:
    sid = PROTOCOL_SID.get(protocol)
    if sid is None:
        sid = UNLISTED_BASE + zlib.crc32(protocol.encode()) % 500
    return KIND_BASE.get(kind, 9_900_000) + sid


def signature(kind: str, protocol: str) -> str:
    """One text per signature id: counts by signature group by format and kind, not stream."""
    return f"MIRRORWATCH {protocol} {kind}: {KIND_WORDS.get(kind, kind)}"


def eve_timestamp(iso: str) -> str:
    """ISO 8601 "2026-01-15T10:00:00.022144Z" → Suricata's "2026-01-15T10:00:00.022144+0000"."""
    iso = iso.removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = iso.partition(".")
    return f"{whole}.{frac.ljust(6, '0')[:6]}+0000"


def flow_id(finding_id: str) -> int:
    digits = finding_id.removeprefix("mw-")
    try:
        value = int(digits, 16)
    except ValueError:
        value = zlib.crc32(finding_id.encode())
    return (value & ((1 << FLOW_ID_BITS) - 1)) or 1


def proto_name(transport: str) -> str | None:
    number = ip_protocol(transport)
    if number is None:
        return None
    return IP_PROTO_NAMES.get(number, str(number))


def community_id(f: Finding) -> str | None:
    """Community ID v1 (as Suricata, Zeek and Elastic compute it) of the outer flow."""
    number = ip_protocol(f.transport)
    if number is None or f.exporter.ip is None or f.collector.ip is None:
        return None
    from communityid import CommunityID, FlowTuple

    try:
        if number in (6, 17) and f.exporter.port is not None and f.collector.port is not None:
            ports = (f.exporter.port, f.collector.port)
            tpl = FlowTuple(number, f.exporter.ip, f.collector.ip, *ports)
        else:
            tpl = FlowTuple(number, f.exporter.ip, f.collector.ip)
        return str(CommunityID().calc(tpl))
    except Exception:  # an address the library does not take: leave the field out
        return None


def outer_vlans(ev: StreamEvidence | None) -> list[int]:
    """VLAN ids of the stream's first kept Ethernet frame, outermost first."""
    if ev is None:
        return []
    for _, linktype, frame in ev.outer_samples[:1]:
        return list(vlan_ids(frame, linktype)[:4])
    return []


def default_sensor_name() -> str:
    return socket.gethostname() or "mirrorwatch"


def _metadata(f: Finding, extra: Mapping[str, list[str]] | None) -> dict[str, list[str]]:
    md: dict[str, list[str]] = {
        "mirrorwatch_id": [f.id],
        "mirrorwatch_kind": [f.kind],
        "mirrorwatch_severity": [f.severity],
        "confidence": [f"{f.confidence:.2f}"],
        "exporter": [f.exporter.label],
        "collector": [f.collector.label],
        "transport": [f.transport],
    }
    md.update({f"session_{key}": [value] for key, value in f.session.items()})
    watched = [w.ip or w.mac for w in f.watched[:WATCHED_IN_METADATA] if w.ip or w.mac]
    lists = {
        "watched": [str(w) for w in watched],
        "reason_codes": list(f.reason_codes),
        "reasons": list(f.reasons),
        "allow_listed": ["true"] if f.allow_listed else [],
        "canary": ["true"] if f.evidence.get("canary") is True else [],
    }
    md.update({key: values for key, values in lists.items() if values})
    md.update(_geo(f))
    md.update({key: [str(v) for v in values] for key, values in (extra or {}).items() if values})
    return md


def _geo(f: Finding) -> dict[str, list[str]]:
    """Country, AS number and AS organisation of each end (``--geoip``)."""
    out: dict[str, list[str]] = {}
    for key, end in (("exporter_geo", f.exporter), ("collector_geo", f.collector)):
        if end.geo is not None:
            geo = end.geo
            out[key] = [str(x) for x in (geo.country, geo.asn and f"AS{geo.asn}", geo.as_org) if x]
    return out


def _flow(f: Finding) -> dict[str, Any]:
    back = f.evidence.get("packets_back")
    flow: dict[str, Any] = {}
    if isinstance(back, int) and not isinstance(back, bool):
        # Both directions of a TCP connection are one finding: split them again.
        back_bytes = f.evidence.get("bytes_back", 0)
        back_bytes = back_bytes if isinstance(back_bytes, int) else 0
        flow["pkts_toserver"] = max(0, f.packets - back)
        flow["pkts_toclient"] = back
        flow["bytes_toserver"] = max(0, f.bytes - back_bytes)
        flow["bytes_toclient"] = back_bytes
    else:
        returning = f.evidence.get("return_packets", 0)
        flow["pkts_toserver"] = f.packets
        flow["pkts_toclient"] = returning if isinstance(returning, int) else 0
        flow["bytes_toserver"] = f.bytes
    flow["start"] = eve_timestamp(f.first_seen)
    flow["end"] = eve_timestamp(f.last_seen)
    return flow


def eve_event(
    f: Finding,
    *,
    sensor: str | None = None,
    in_iface: str | None = None,
    ev: StreamEvidence | None = None,
    metadata: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """One finding as one EVE alert event (a dict ready for json.dumps)."""
    sid = signature_id(f.kind, f.protocol)
    event: dict[str, Any] = {
        "timestamp": eve_timestamp(f.first_seen),
        "flow_id": flow_id(f.id),
        "host": sensor or default_sensor_name(),
    }
    if in_iface:
        event["in_iface"] = in_iface
    event["event_type"] = "alert"
    vlans = outer_vlans(ev)
    if vlans:
        event["vlan"] = vlans
    proto = proto_name(f.transport)
    if f.exporter.ip is not None and f.collector.ip is not None:
        event["src_ip"] = f.exporter.ip
        if f.exporter.port is not None:
            event["src_port"] = f.exporter.port
        event["dest_ip"] = f.collector.ip
        if f.collector.port is not None:
            event["dest_port"] = f.collector.port
        if proto is not None:
            event["proto"] = proto
        cid = community_id(f)
        if cid is not None:
            event["community_id"] = cid
    if f.exporter.mac or f.collector.mac:
        ether: dict[str, str] = {}
        if f.exporter.mac:
            ether["src_mac"] = f.exporter.mac
        if f.collector.mac:
            ether["dest_mac"] = f.collector.mac
        event["ether"] = ether
    event["app_proto"] = f.protocol
    event["alert"] = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sid,
        "rev": 1,
        "signature": signature(f.kind, f.protocol),
        "category": CATEGORY.get(f.kind, f.kind),
        "severity": EVE_SEVERITY[f.severity],
        "metadata": _metadata(f, metadata),
    }
    event["flow"] = _flow(f)
    return event


def eve_line(f: Finding, **kw: Any) -> str:
    """One finding as one EVE line (with its newline)."""
    return json_line_safe(json.dumps(eve_event(f, **kw), ensure_ascii=False)) + "\n"


def in_eve(f: Finding, include_info: bool = False) -> bool:
    """Info findings (tunnels) are no alerts: a SIEM raises every alert it is given."""
    return include_info or f.severity != "info"


def render_eve(
    report: Report,
    *,
    sensor: str | None = None,
    include_info: bool = False,
    evidence: Mapping[str, StreamEvidence] | None = None,
    metadata: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> str:
    name = sensor or default_sensor_name()
    ev = evidence or {}
    md = metadata or {}
    return "".join(
        eve_line(f, sensor=name, ev=ev.get(f.id), metadata=md.get(f.id))
        for f in report.findings
        if in_eve(f, include_info)
    )


def sid_table_markdown() -> str:
    """The signature id table of docs/eve.md, from PROTOCOL_SID."""
    rows = ["| Protocol | No. | mirror | intercept | flow-export | tunnel |", "| --- " * 6 + "|"]
    for name, number in sorted(PROTOCOL_SID.items(), key=lambda kv: kv[1]):
        sids = " | ".join(str(base + number) for base in KIND_BASE.values())
        rows.append(f"| {name} | {number} | {sids} |")
    return "\n".join(rows) + "\n"


def fields_table_markdown() -> str:
    rows = ["| EVE field | Written | Value |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {when} | {value} |" for name, when, value in FIELDS]
    return "\n".join(rows) + "\n"


def metadata_table_markdown() -> str:
    rows = ["| Key | Value |", "| --- | --- |"]
    rows += [
        "| " + ", ".join(f"`{k.strip()}`" for k in key.split(",")) + f" | {value} |"
        for key, value in METADATA
    ]
    return "\n".join(rows) + "\n"


GENERATED = {
    "fields": fields_table_markdown,
    "metadata": metadata_table_markdown,
    "sids": sid_table_markdown,
}


def with_tables(doc: str) -> str:
    """docs/eve.md with each ``<!-- table: NAME -->`` ... ``<!-- end -->`` block refilled from
    the tables above (``python3 -m detector.report.eve docs/eve.md`` rewrites the file)."""
    out: list[str] = []
    skipping = False
    for line in doc.splitlines(keepends=True):
        if skipping:
            if line.strip() == "<!-- end -->":
                out.append(line)
                skipping = False
            continue
        out.append(line)
        name = line.strip().removeprefix("<!-- table: ").removesuffix(" -->")
        if line.startswith("<!-- table: ") and name in GENERATED:
            out.append(GENERATED[name]())
            skipping = True
    return "".join(out)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    for arg in sys.argv[1:]:
        path = Path(arg)
        path.write_text(with_tables(path.read_text()))
