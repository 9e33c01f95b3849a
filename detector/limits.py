"""Memory budgets of one engine, set by configuration (``[limits]``), never by the input.

Whoever can put a packet on the watched link writes mirrorwatch's input, so every table that
grows with what the packets say has a budget here.  When one is reached the engine sheds the
least useful state (see docs/config.md), counts what it shed (``shed_*`` in the report's stats
and the live summaries) and marks the findings it cut (``evidence.truncated``).

The defaults keep the whole process tree of a scan (two worker processes) under 256 MiB for any
input; every figure is per engine, and a scan runs one engine per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    # Streams (one direction of an outer flow recognised as a format) held with their evidence.
    streams: int = 2048
    # Streams of one format toward one collector (address, port) kept apart; past this they
    # are folded into one aggregate stream that counts its exporters and keeps the busiest.
    streams_per_collector: int = 32
    # Port-only tunnel streams (NAT-T, WireGuard, OpenVPN, MPLS in UDP...) kept apart per host
    # pair and format; the others are folded into one stream per pair.
    tunnel_streams_per_pair: int = 4
    # Flows in the flow table, and distinct hosts counted exactly (past it, counting restarts).
    flows: int = 65_536
    hosts: int = 131_072
    # Flow-export templates: per stream, fields of one template, fields over every stream.
    templates_per_stream: int = 1024
    template_fields: int = 512
    template_fields_total: int = 262_144
    # TCP reassembly: bytes waiting for a gap to fill, per stream and over every stream.
    tcp_stream_bytes: int = 1 << 20
    tcp_total_bytes: int = 16 << 20
    # IP fragments waiting for their datagram: pieces (zero-length ones too) and bytes.
    fragment_packets: int = 16_384
    fragment_bytes: int = 16 << 20
    # Evidence packets kept per stream (outer and carried) and their bytes over every stream.
    samples_per_stream: int = 200
    sample_bytes: int = 16 << 20
    # Seconds of packet timeline kept, and findings a live watch remembers having written.
    timeline_seconds: int = 86_400
    live_findings: int = 4096
