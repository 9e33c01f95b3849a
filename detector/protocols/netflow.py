"""NetFlow v1, v5 and v7: Cisco's fixed-layout flow exports.

Content checks: version word, record count 1-30, datagram length exactly header + count × record
length, and unix_secs after 2000-01-01.  Records are fixed, so every flow is decoded directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ip_str
from detector.protocols.base import (
    Decoded,
    Decoder,
    Kind,
    PacketContext,
    ProtocolSpec,
    RecordedFlow,
    Transport,
)
from detector.protocols.li_common import be16, be32
from detector.protocols.templates import (
    CFLOW,
    MAX_RECORDS,
    plausible_secs,
    plausible_secs_col,
)

if TYPE_CHECKING:
    import numpy.typing as npt

MAX_COUNT = 30


@dataclass(repr=False, eq=False, slots=True)
class Layout:
    """Header and record sizes of one NetFlow version."""

    header: int
    record: int


LAYOUTS = {1: Layout(16, 48), 5: Layout(24, 48), 7: Layout(24, 52)}
# version, count, sysUptime, unix_secs, unix_nsecs
HEADER_V1 = struct.Struct("!HHIII")
# ... then flow_sequence, engine_type, engine_id, sampling (v5); v7 has 4 reserved bytes there,
# which some exporters fill like v5, so they are read the same way.
HEADER_V5 = struct.Struct("!HHIIIIBBH")
# The record layout is common to all three up to the protocol byte: src, dst, (nexthop, input,
# output), dPkts, dOctets, (first, last), srcport, dstport, (pad/flags), prot.
RECORD = struct.Struct("!4s4s8xII8xHH2xB")


def _flows(payload: bytes, layout: Layout, count: int) -> list[RecordedFlow]:
    flows: list[RecordedFlow] = []
    for i in range(min(count, MAX_RECORDS)):
        src, dst, pkts, octets, sport, dport, proto = RECORD.unpack_from(
            payload, layout.header + i * layout.record
        )
        flows.append(RecordedFlow(ip_str(src), ip_str(dst), proto, sport, dport, pkts, octets))
    return flows


def _spec(version: int, sid: int) -> ProtocolSpec:
    return ProtocolSpec(
        f"netflow-v{version}",
        "records",
        sid=sid,
        doc="netflow.md",
        samples=(f"netflow-v{version}.pcap",),
        wireshark=CFLOW,
    )


NETFLOW_V1, NETFLOW_V5, NETFLOW_V7 = _spec(1, 40), _spec(5, 41), _spec(7, 42)


class NetflowDecoder(Decoder):
    name: ClassVar[str] = "netflow"
    emits = (NETFLOW_V1, NETFLOW_V5, NETFLOW_V7)
    kind: ClassVar[Kind] = "flow-export"
    transport: ClassVar[Transport] = "udp"
    ports: ClassVar[frozenset[int]] = frozenset({2055, 2056, 9995, 9996, 9991})

    first_bytes = frozenset({0})  # versions 1, 5 and 7
    second_bytes = frozenset({1, 5, 7})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        version, count = be16(head, 0), be16(head, 2)
        header = np.where(version == 1, 16, 24)
        record = np.where(version == 7, 52, 48)
        return (
            ((version == 1) | (version == 5) | (version == 7))
            & (count >= 1)
            & (count <= MAX_COUNT)
            & (length == header + count * record)
            & plausible_secs_col(be32(head, 8))
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER_V1.size:
            return None
        version, count, uptime, secs, _nsecs = HEADER_V1.unpack_from(payload)
        layout = LAYOUTS.get(version)
        if (
            layout is None
            or not 1 <= count <= MAX_COUNT
            or len(payload) != layout.header + count * layout.record
            or not plausible_secs(secs)
        ):
            return None
        facts: dict[str, object] = {
            "version": version,
            "count": count,
            "unix_secs": secs,
            "sys_uptime_ms": uptime,
            "data_records": count,
        }
        session: dict[str, int | str] = {}
        header = f"{payload[:4].hex(' ')}: NetFlow v{version}, {count} record(s)"
        strength = 1.0
        if version == 1:
            # No sequence number or engine ids: fewer independent checks.
            strength = 0.8
        else:
            *_, seq, engine_type, engine_id, sampling = HEADER_V5.unpack_from(payload)
            facts["sequence"] = seq
            session = {"engine_type": engine_type, "engine_id": engine_id}
            header += f", flow sequence {seq}, engine {engine_type}/{engine_id}"
            if version == 5:
                # Top two bits: sampling mode; low 14 bits: interval (1 in N packets).
                facts["sampling_mode"] = sampling >> 14
                facts["sampling_interval"] = sampling & 0x3FFF
                if sampling & 0x3FFF:
                    header += f", sampling 1/{sampling & 0x3FFF}"
        return Decoded(
            protocol=f"netflow-v{version}",
            kind=self.kind,
            header=header,
            session=session,
            records=_flows(payload, layout, count),
            facts=facts,
            strength=strength,
            header_len=layout.header,
        )


DECODERS: list[Decoder] = [NetflowDecoder()]
