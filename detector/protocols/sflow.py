"""sFlow version 5 (sflow.org sflow_version_5.txt).

Content checks: version 5, agent address type 1 (IPv4) or 2 (IPv6), sample lengths that are
multiples of 4 and chain exactly to the end of the datagram, and a sample count that matches.
Flow samples' raw packet header records are truncated copies of real packets: they become
``carried`` (whatever they hold, VXLAN included, is just sampled bytes), and the conversations
they show become ``records``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ethernet_valid, ip_str, ipv4_valid, ipv6_valid, parse_carried
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    Kind,
    PacketContext,
    ProtocolSpec,
    RecordedFlow,
    Transport,
    wireshark,
)
from detector.protocols.li_common import be32
from detector.protocols.templates import MAX_RECORDS

if TYPE_CHECKING:
    import numpy.typing as npt

VERSION = 5
ADDR_LEN = {1: 4, 2: 16}
# sub-agent id, datagram sequence, uptime (ms), number of samples
TAIL = struct.Struct("!IIII")
U32 = struct.Struct("!I")
PAIR = struct.Struct("!II")
# Sample formats (enterprise 0).
FLOW_SAMPLE, COUNTER_SAMPLE, EXPANDED_FLOW_SAMPLE, EXPANDED_COUNTER_SAMPLE = 1, 2, 3, 4
# Bytes of a flow sample before its records, and where the sampling rate and record count are.
FLOW_SAMPLE_LAYOUT = {FLOW_SAMPLE: (8, 28), EXPANDED_FLOW_SAMPLE: (12, 40)}
# Flow record formats (enterprise 0).
RAW_HEADER, SAMPLED_IPV4, SAMPLED_IPV6 = 1, 3, 4
RAW_HEADER_FIELDS = struct.Struct("!IIII")  # header protocol, frame length, stripped, header size
SAMPLED_IPV4_FIELDS = struct.Struct("!II4s4sII")  # length, protocol, src, dst, sport, dport
SAMPLED_IPV6_FIELDS = struct.Struct("!II16s16sII")
HEADER_LINKS: dict[int, InnerLink] = {1: "ethernet", 11: "ip", 12: "ip"}
# A datagram never holds more samples than this (1500-byte MTU, ≥ 8 bytes each: far fewer).
MAX_SAMPLES = 1024


class SampleWalk:
    """Counters gathered while walking one datagram's samples."""

    __slots__ = (
        "carried",
        "counter_samples",
        "flow_samples",
        "headers",
        "malformed",
        "other_headers",
        "rates",
        "records",
    )

    def __init__(self) -> None:
        self.carried: list[Carried] = []
        self.records: list[RecordedFlow] = []
        self.rates: list[int] = []
        self.flow_samples = self.counter_samples = self.headers = 0
        self.other_headers = self.malformed = 0

    def flow(self, f: RecordedFlow) -> None:
        if len(self.records) < MAX_RECORDS:
            self.records.append(f)


def _header_record(body: bytes, out: SampleWalk) -> None:
    if len(body) < RAW_HEADER_FIELDS.size:
        out.malformed += 1
        return
    proto, frame_len, _stripped, size = RAW_HEADER_FIELDS.unpack_from(body)
    data = body[RAW_HEADER_FIELDS.size : RAW_HEADER_FIELDS.size + size]
    if len(data) != size:
        out.malformed += 1
        return
    sampled_header(proto, frame_len, data, out)


def sampled_header(proto: int, frame_len: int, data: bytes, out: SampleWalk) -> None:
    """The first bytes of a sampled frame: carried as they are, and its conversation recorded
    when they parse as the header protocol says."""
    link = HEADER_LINKS.get(proto)
    valid = (
        (link == "ethernet" and ethernet_valid(data))
        or (proto == 11 and ipv4_valid(data))
        or (proto == 12 and ipv6_valid(data))
    )
    out.headers += 1
    if link is None or not valid:
        # Other header protocols (MPLS, POS, 802.11...) or bytes that do not parse as claimed.
        out.other_headers += 1
        if len(out.carried) < MAX_RECORDS:
            out.carried.append(Carried("raw", data, orig_len=frame_len))
        return
    if len(out.carried) < MAX_RECORDS:
        out.carried.append(Carried(link, data, orig_len=frame_len))
    inner = parse_carried(link, data)
    if inner is not None and inner.src and inner.dst:
        out.flow(
            RecordedFlow(inner.src, inner.dst, inner.proto, inner.sport, inner.dport, 1, frame_len)
        )


def sampled_ip(rfmt: int, rec: bytes, out: SampleWalk) -> None:
    """A sampled packet given as its IPv4 or IPv6 addresses and ports (no header bytes)."""
    fields = SAMPLED_IPV4_FIELDS if rfmt == SAMPLED_IPV4 else SAMPLED_IPV6_FIELDS
    if len(rec) >= fields.size:
        flen, proto, src, dst, sport, dport = fields.unpack_from(rec)
        out.flow(RecordedFlow(ip_str(src), ip_str(dst), proto, sport, dport, 1, flen))


def _flow_sample(body: bytes, fmt: int, out: SampleWalk) -> None:
    rate_off, count_off = FLOW_SAMPLE_LAYOUT[fmt]
    out.flow_samples += 1
    if len(body) < count_off + 4:
        out.malformed += 1
        return
    out.rates.append(U32.unpack_from(body, rate_off)[0])
    n = U32.unpack_from(body, count_off)[0]
    pos = count_off + 4
    for _ in range(min(n, MAX_SAMPLES)):
        if len(body) - pos < 8:
            out.malformed += 1
            return
        rfmt, rlen = PAIR.unpack_from(body, pos)
        rec = body[pos + 8 : pos + 8 + rlen]
        pos += 8 + rlen
        if len(rec) != rlen:
            out.malformed += 1
            return
        if rfmt == RAW_HEADER:
            _header_record(rec, out)
        elif rfmt in (SAMPLED_IPV4, SAMPLED_IPV6):
            sampled_ip(rfmt, rec, out)


SFLOW = ProtocolSpec(
    "sflow",
    "records",
    sid=46,
    doc="sflow.md",
    samples=("sflow-vxlan.pcap", "sflow-v2.pcap", "sflow-v4.pcap"),
    wireshark=wireshark("sflow", "sflow", 6343),
)


class SflowDecoder(Decoder):
    name: ClassVar[str] = "sflow"
    emits = (SFLOW,)
    kind: ClassVar[Kind] = "flow-export"
    transport: ClassVar[Transport] = "udp"
    ports: ClassVar[frozenset[int]] = frozenset({6343})

    first_bytes = frozenset({VERSION >> 24})
    second_bytes = frozenset({VERSION >> 16 & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        addr_type = be32(head, 4)
        return (
            (be32(head, 0) == VERSION)
            & ((addr_type == 1) | (addr_type == 2))
            & (length >= np.where(addr_type == 1, 28, 40))
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 28:
            return None
        version, addr_type = PAIR.unpack_from(payload)
        alen = ADDR_LEN.get(addr_type)
        if version != VERSION or alen is None or len(payload) < 8 + alen + TAIL.size:
            return None
        sub_agent, seq, uptime, n_samples = TAIL.unpack_from(payload, 8 + alen)
        samples = _sample_chain(payload, 8 + alen + TAIL.size, n_samples)
        if samples is None:
            return None
        out = SampleWalk()
        for fmt, s, e in samples:
            # Enterprise (top 20 bits) 0 is the standard sFlow structures.
            if fmt in FLOW_SAMPLE_LAYOUT:
                _flow_sample(payload[s:e], fmt, out)
            elif fmt in (COUNTER_SAMPLE, EXPANDED_COUNTER_SAMPLE):
                out.counter_samples += 1
        head = Datagram(VERSION, ip_str(payload[8 : 8 + alen]), sub_agent, seq, uptime, n_samples)
        return walked(payload, head, 8 + alen + TAIL.size, out)


def _sample_chain(payload: bytes, pos: int, n_samples: int) -> list[tuple[int, int, int]] | None:
    """(format, start, end) of each sample, when their lengths chain exactly to the end of the
    datagram: the whole chain is checked before any sample is interpreted."""
    if n_samples > MAX_SAMPLES:
        return None
    samples: list[tuple[int, int, int]] = []
    while pos < len(payload):
        if len(payload) - pos < 8 or len(samples) == n_samples:
            return None
        fmt, slen = PAIR.unpack_from(payload, pos)
        if slen % 4 or pos + 8 + slen > len(payload):
            return None
        samples.append((fmt, pos + 8, pos + 8 + slen))
        pos += 8 + slen
    return samples if len(samples) == n_samples else None


@dataclass(repr=False, eq=False, slots=True)
class Datagram:
    """The header fields of one sFlow datagram (v2 and v4 have no sub-agent id: None)."""

    version: int
    agent: str
    sub_agent: int | None
    sequence: int
    uptime_ms: int
    samples: int


def walked(payload: bytes, head: Datagram, header_len: int, out: SampleWalk) -> Decoded:
    """What one datagram held, once its samples have been walked."""
    facts: dict[str, object] = {
        "version": head.version,
        "sequence": head.sequence,
        "uptime_ms": head.uptime_ms,
        "samples": head.samples,
        "flow_samples": out.flow_samples,
        "counter_samples": out.counter_samples,
        "packet_headers": out.headers,
    }
    if out.rates:
        facts["sampling_rate"] = out.rates[0]
        facts["sampling_rates"] = sorted(set(out.rates))
    if out.other_headers:
        # Headers of other protocols (MPLS, 802.11...) or not parsing as claimed: kept raw.
        facts["raw_headers"] = out.other_headers
    if out.malformed:
        facts["malformed_records"] = out.malformed
    family = 6 if ":" in head.agent else 4
    session: dict[str, int | str] = {"agent": head.agent}
    sub = ""
    if head.sub_agent is not None:
        session["sub_agent_id"] = head.sub_agent
        sub = f", sub-agent {head.sub_agent}"
    return Decoded(
        protocol=SFLOW.name,
        kind="flow-export",
        header=(
            f"{payload[:8].hex(' ')}: sFlow version {head.version}, agent IPv{family} "
            f"{head.agent}{sub}, sequence {head.sequence}, {head.samples} sample(s)"
        ),
        session=session,
        carried=out.carried,
        records=out.records,
        facts=facts,
        header_len=header_len,
    )


DECODERS: list[Decoder] = [SflowDecoder()]
