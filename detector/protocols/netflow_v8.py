"""NetFlow v8: Cisco's aggregation caches (router-based and Catalyst), exported in fixed layouts.

A router keeps one cache per aggregation scheme and sends each in its own datagrams: a 28-byte
header (v5's, then the aggregation scheme and its version, 4 reserved bytes) and records whose
layout the scheme fixes (Wireshark's packet-netflow.c and Cisco's NetFlow export formats name
the same fourteen).  Content checks: version 8, a known scheme, record count 1 to what a
1500-byte datagram holds, datagram length exactly header + count × record length, and unix_secs
after 2000-01-01.  Only the Catalyst source/destination and full-flow schemes name hosts; the
others count traffic per AS, prefix or port, so they yield totals and no conversations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detector.decode.frames import ip_str
from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec, RecordedFlow
from detector.protocols.li_common import be16, be32
from detector.protocols.templates import (
    CFLOW,
    MAX_RECORDS,
    plausible_secs,
    plausible_secs_col,
)

if TYPE_CHECKING:
    import numpy.typing as npt

VERSION = 8
# version, count, sysUptime, unix_secs, unix_nsecs, flow_sequence, engine type, engine id,
# aggregation scheme, aggregation version, reserved
HEADER = struct.Struct("!HHIIIIBBBBI")
# Records that fit one datagram of a 1500-byte link (IP and UDP headers and the v8 header off).
PAYLOAD_ROOM = 1500 - 20 - 8 - HEADER.size


@dataclass(repr=False, eq=False, slots=True)
class Scheme:
    """One NetFlow v8 aggregation scheme: its name and record size."""

    name: str
    record: int  # bytes per record


SCHEMES: dict[int, Scheme] = {
    1: Scheme("as", 28),
    2: Scheme("protocol-port", 28),
    3: Scheme("source-prefix", 32),
    4: Scheme("destination-prefix", 32),
    5: Scheme("prefix", 40),
    6: Scheme("destination", 32),
    7: Scheme("source-destination", 40),
    8: Scheme("full-flow", 44),
    9: Scheme("as-tos", 32),
    10: Scheme("protocol-port-tos", 32),
    11: Scheme("source-prefix-tos", 32),
    12: Scheme("destination-prefix-tos", 32),
    13: Scheme("prefix-tos", 40),
    14: Scheme("prefix-port", 40),
}
# Record length by scheme number (0: not a scheme), for the prefilter.
RECORD_BY_SCHEME = np.array([SCHEMES[s].record if s in SCHEMES else 0 for s in range(256)])
SOURCE_DESTINATION, FULL_FLOW = 7, 8
# Catalyst schemes: destination, source, then (full flow) ports, before packets and octets.
SRC_DST = struct.Struct("!4s4sII")
FULL = struct.Struct("!4s4sHHII13xB")  # ... first, last, output, input, tos, then protocol

NETFLOW_V8 = ProtocolSpec(
    "netflow-v8",
    "records",
    sid=49,
    doc="netflow.md",
    samples=("netflow-v8.pcap",),
    wireshark=CFLOW,
)


def _conversations(payload: bytes, scheme: int, count: int) -> list[RecordedFlow]:
    """The conversations that source/destination and full-flow records name."""
    size = SCHEMES[scheme].record
    flows: list[RecordedFlow] = []
    for i in range(min(count, MAX_RECORDS)):
        off = HEADER.size + i * size
        if scheme == FULL_FLOW:
            dst, src, dport, sport, pkts, octs, proto = FULL.unpack_from(payload, off)
            flows.append(RecordedFlow(ip_str(src), ip_str(dst), proto, sport, dport, pkts, octs))
        elif scheme == SOURCE_DESTINATION:
            dst, src, pkts, octs = SRC_DST.unpack_from(payload, off)
            flows.append(RecordedFlow(ip_str(src), ip_str(dst), 0, 0, 0, pkts, octs))
    return flows


class NetflowV8Decoder(Decoder):
    name = "netflow-v8"
    emits = (NETFLOW_V8,)
    kind = "flow-export"
    transport = "udp"
    ports = frozenset({2055, 2056, 9995, 9996, 9991})
    first_bytes = frozenset({0})  # version 8
    second_bytes = frozenset({VERSION})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        count = be16(head, 2)
        record = RECORD_BY_SCHEME[head[:, 22]]
        return (
            (be16(head, 0) == VERSION)
            & (record > 0)
            & (count >= 1)
            & (count * record <= PAYLOAD_ROOM)
            & (length == HEADER.size + count * record)
            & plausible_secs_col(be32(head, 8))
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER.size:
            return None
        (
            version,
            count,
            uptime,
            secs,
            _nsecs,
            seq,
            engine_type,
            engine_id,
            scheme,
            agg_version,
            _,
        ) = HEADER.unpack_from(payload)
        known = SCHEMES.get(scheme)
        if (
            version != VERSION
            or known is None
            or not 1 <= count <= PAYLOAD_ROOM // known.record
            or len(payload) != HEADER.size + count * known.record
            or not plausible_secs(secs)
        ):
            return None
        return Decoded(
            protocol=NETFLOW_V8.name,
            kind=self.kind,
            header=(
                f"{payload[:4].hex(' ')}: NetFlow v8, {count} record(s), aggregation "
                f"{scheme} ({known.name}) version {agg_version}, flow sequence {seq}, "
                f"engine {engine_type}/{engine_id}"
            ),
            session={"engine_type": engine_type, "engine_id": engine_id},
            records=_conversations(payload, scheme, count),
            facts={
                "version": VERSION,
                "count": count,
                "unix_secs": secs,
                "sys_uptime_ms": uptime,
                "sequence": seq,
                "aggregation": known.name,
                "aggregation_version": agg_version,
                "data_records": count,
            },
            header_len=HEADER.size,
        )


DECODERS: list[Decoder] = [NetflowV8Decoder()]
