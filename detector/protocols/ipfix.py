"""IPFIX (RFC 7011) over UDP, including PSAMP packet reports (RFC 5476/5477).

Content checks: version 10, message length equal to the datagram, an export time after
2000-01-01, and sets (2 templates, 3 options templates, ≥ 256 data) whose lengths chain exactly to
the end.  Templates are kept per stream and observation domain; data sets whose template has not
been seen yet still make the message a valid export and are counted.  A message whose records
carry packet sections (IE 313-316) is reported as "psamp", with the sampled bytes as carried.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import Decoded, Decoder, PacketContext, ProtocolSpec
from detector.protocols.li_common import be16, be32
from detector.protocols.templates import (
    CFLOW,
    SetWalk,
    TemplateCache,
    TemplateExportDecoder,
    content_end,
    is_padding,
    make_template,
    parse_fields,
    plausible_secs,
    plausible_secs_col,
    walk_message,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# version, length, export time, sequence number, observation domain id
HEADER = struct.Struct("!HHIII")
VERSION = 10
TEMPLATE_SET, OPTIONS_TEMPLATE_SET = 2, 3
_OPT_HDR = struct.Struct("!HHH")


def _options_template_set(
    walk: SetWalk, cache: TemplateCache, domain: int, data: bytes, s: int, e: int
) -> None:
    """Set 3: (template id, field count, scope field count, fields) records."""
    pos = s
    content = content_end(data, s, e)
    while not is_padding(pos, e, 4, content):
        tid, count = struct.unpack_from("!HH", data, pos)
        if count == 0:
            walk.withdraw(cache, domain, tid)
            pos += 4
            continue
        if walk.too_many_fields(cache, count):
            return
        if e - pos < 6:
            walk.malformed_templates += 1
            return
        _, _, scope = _OPT_HDR.unpack_from(data, pos)
        parsed = parse_fields(data, pos + 6, e, count, True)
        if parsed is None or tid < 256 or not 1 <= scope <= count:
            walk.malformed_templates += 1
            return
        fields, pos = parsed
        walk.add_template(cache, domain, make_template(tid, fields, scope))


# Exporters also send IPFIX to the NetFlow ports, but 4739/4740 are its own.
IPFIX = ProtocolSpec(
    "ipfix",
    "records",
    sid=44,
    doc="ipfix.md",
    samples=("ipfix.pcap",),
    ports=(4739, 4740),
    wireshark=CFLOW,
)
PSAMP = ProtocolSpec(
    "psamp",
    "records",
    sid=45,
    doc="ipfix.md",
    samples=("psamp.pcap",),
    ports=(4739, 4740),
    wireshark=CFLOW,
)


class IpfixDecoder(TemplateExportDecoder):
    name: ClassVar[str] = "ipfix"
    emits = (IPFIX, PSAMP)
    ports: ClassVar[frozenset[int]] = frozenset({4739, 4740, 2055, 9995, 9996, 9991})

    first_bytes = frozenset({VERSION >> 8})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        sid = be16(head, 16)
        return (
            (be16(head, 0) == VERSION)
            & (be16(head, 2) == length)
            & (length >= HEADER.size + 4)
            & plausible_secs_col(be32(head, 4))
            & ((sid == TEMPLATE_SET) | (sid == OPTIONS_TEMPLATE_SET) | (sid >= 256))
            & (be16(head, 18) >= 4)
        )

    def stream_protocol(self, current: str, found: Decoded) -> str:
        # Messages with packet sections make the whole stream a PSAMP export.
        return PSAMP.name if found.protocol == PSAMP.name else current

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER.size + 4:
            return None
        version, length, export_time, seq, domain = HEADER.unpack_from(payload)
        if version != VERSION or length != len(payload) or not plausible_secs(export_time):
            return None
        walked = walk_message(
            payload,
            HEADER.size,
            length,
            (TEMPLATE_SET, OPTIONS_TEMPLATE_SET),
            _options_template_set,
            state,
            domain,
        )
        if walked is None:
            return None
        n_sets, walk = walked
        sections = walk.psamp_sections
        header = (
            f"{payload[:4].hex(' ')}: IPFIX version 10, message length {length}, "
            f"observation domain {domain}, sequence {seq}, {n_sets} set(s)"
        )
        if sections:
            header += f", {sections} PSAMP packet section(s)"
        return walk.decoded(
            PSAMP.name if sections else IPFIX.name,
            header,
            {"observation_domain": domain},
            {"version": VERSION, "sequence": seq, "export_time": export_time, "sets": n_sets},
            HEADER.size,
        )


DECODERS: list[Decoder] = [IpfixDecoder()]
