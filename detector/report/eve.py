"""Findings as Suricata EVE alerts, one JSON object per line (mapping: docs/eve.md).

SIEM pipelines that already ingest Suricata's eve.json take these without a new parser; the full
finding rides along under "mirrorwatch".
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from detector.findings import Finding, Report

# signature_id = KIND_BASE[kind] + PROTOCOL_SID[protocol]; both tables only ever grow, so an id
# once issued keeps its meaning.
KIND_BASE: dict[str, int] = {
    "mirror": 9_100_000,
    "intercept": 9_200_000,
    "flow-export": 9_300_000,
    "tunnel": 9_400_000,
}
PROTOCOL_SID: dict[str, int] = {
    # mirrors and remote capture
    "tzsp": 1,
    "erspan-1": 2,
    "erspan-2": 3,
    "erspan-3": 4,
    "gre-teb": 5,
    "vxlan": 6,
    "geneve": 7,
    "rpcap": 8,
    "pcap-over-ip": 9,
    "peekremote": 10,
    "cwids": 11,
    "plain-copy": 12,
    # lawful-intercept exports
    "pcli": 20,
    "pcli8": 21,
    "pcli12": 22,
    "pcli20": 23,
    "jmirror": 24,
    "nokia-li": 25,
    "bcm-li": 26,
    "etsi-102232": 27,
    "etsi-x2x3": 28,
    "unknown": 29,
    # flow-metadata exports
    "netflow-v1": 40,
    "netflow-v5": 41,
    "netflow-v7": 42,
    "netflow-v9": 43,
    "ipfix": 44,
    "psamp": 45,
    "sflow": 46,
    # tunnels
    "gre-ip": 60,
    "gre-ppp": 61,
    "gre-udp": 62,
    "gre-keepalive": 63,
    "gtp-u": 64,
    "l2tp": 65,
    "capwap": 66,
    "ipip": 67,
    "6in4": 68,
    "4in6": 69,
    "teredo": 70,
    "ayiya": 71,
    "esp": 72,
    "ah": 73,
    "nat-t": 74,
    "wireguard": 75,
    "openvpn": 76,
    "nvgre": 77,
    "vxlan-gpe": 78,
    "nsh": 79,
    "mpls-udp": 80,
}
UNLISTED_BASE = 500  # protocols not in the table: 500 + crc32(name) % 500
CATEGORY: dict[str, str] = {
    "mirror": "Traffic Mirror Export",
    "intercept": "Lawful Intercept Export",
    "flow-export": "Flow Metadata Export",
    "tunnel": "Tunnel",
}
KIND_WORDS: dict[str, str] = {
    "mirror": "copies of traffic",
    "intercept": "intercepted traffic",
    "flow-export": "flow records",
    "tunnel": "tunnelled traffic",
}
EVE_SEVERITY: dict[str, int] = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 3}
# IP protocol numbers as Suricata names them.
IP_PROTO_NAMES: dict[str, str] = {
    "udp": "UDP",
    "tcp": "TCP",
    "gre": "GRE",
    "ip/4": "IPIP",
    "ip/41": "IPv6",
    "ip/47": "GRE",
    "ip/50": "ESP",
    "ip/51": "AH",
    "ip/132": "SCTP",
}


def signature_id(kind: str, protocol: str) -> int:
    sid = PROTOCOL_SID.get(protocol)
    if sid is None:
        sid = UNLISTED_BASE + zlib.crc32(protocol.encode()) % 500
    return KIND_BASE.get(kind, 9_900_000) + sid


def eve_timestamp(iso: str) -> str:
    """ISO 8601 "2026-01-15T10:00:00.022144Z" → Suricata's "2026-01-15T10:00:00.022144+0000"."""
    iso = iso.removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = iso.partition(".")
    return f"{whole}.{frac.ljust(6, '0')[:6]}+0000"


def _proto(transport: str) -> str:
    if transport in IP_PROTO_NAMES:
        return IP_PROTO_NAMES[transport]
    return transport[3:] if transport.startswith("ip/") else transport.upper()


def eve_alert(f: Finding) -> dict[str, Any]:
    sid = signature_id(f.kind, f.protocol)
    event: dict[str, Any] = {
        "timestamp": eve_timestamp(f.first_seen),
        # Suricata's flow_id is a positive 64-bit-safe integer: from the stable finding id.
        "flow_id": int(f.id.removeprefix("mw-")[:15] or "0", 16),
        "event_type": "alert",
        "src_ip": f.exporter.ip,
        "dest_ip": f.collector.ip,
        "proto": _proto(f.transport),
    }
    if f.exporter.port is not None:
        event["src_port"] = f.exporter.port
    if f.collector.port is not None:
        event["dest_port"] = f.collector.port
    event["app_proto"] = f.protocol
    event["alert"] = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sid,
        "rev": 1,
        "signature": f"MIRRORWATCH {f.protocol} {f.kind}: {KIND_WORDS.get(f.kind, f.kind)} "
        f"sent from {f.exporter.ip} to {f.collector.ip}",
        "category": CATEGORY.get(f.kind, f.kind),
        "severity": EVE_SEVERITY[f.severity],
        "metadata": {
            "mirrorwatch_kind": [f.kind],
            "mirrorwatch_severity": [f.severity],
            "confidence": [f"{f.confidence:.2f}"],
        },
    }
    event["flow"] = {
        "pkts_toserver": f.packets,
        "bytes_toserver": f.bytes,
        "start": eve_timestamp(f.first_seen),
        "end": eve_timestamp(f.last_seen),
    }
    event["mirrorwatch"] = f.model_dump(mode="json")
    return event


def render_eve(report: Report) -> str:
    return "".join(json.dumps(eve_alert(f), ensure_ascii=False) + "\n" for f in report.findings)
