"""NetFlow v9 (RFC 3954).

Content checks: version 9, unix_secs after 2000-01-01, and flowsets (0 templates, 1 options
templates, ≥ 256 data) whose lengths chain exactly to the end of the datagram.  Templates are
kept per stream and source id; data flowsets whose template is unknown are still counted.
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

# version, count, sysUptime, unix_secs, package sequence, source id
HEADER = struct.Struct("!HHIIII")
VERSION = 9
TEMPLATE_FLOWSET, OPTIONS_FLOWSET = 0, 1
_OPT_HDR = struct.Struct("!HHH")
FCS_LEN = 4


def _options_template_flowset(
    walk: SetWalk, cache: TemplateCache, source_id: int, data: bytes, s: int, e: int
) -> None:
    """Flowset 1: (template id, scope length, option length) then the two field lists."""
    pos = s
    content = content_end(data, s, e)
    while not is_padding(pos, e, _OPT_HDR.size + 4, content):
        tid, scope_len, opt_len = _OPT_HDR.unpack_from(data, pos)
        if tid < 256 or scope_len % 4 or opt_len % 4 or scope_len + opt_len == 0:
            walk.malformed_templates += 1
            return
        if walk.too_many_fields(cache, (scope_len + opt_len) // 4):
            return
        n_scope = scope_len // 4
        parsed = parse_fields(data, pos + _OPT_HDR.size, e, n_scope + opt_len // 4, False)
        if parsed is None:
            walk.malformed_templates += 1
            return
        fields, pos = parsed
        # Scope field types (system, interface, line card...) are not element ids: keep them
        # out of the element namespace.
        fields[:n_scope] = [(-1 - ftype, length) for ftype, length in fields[:n_scope]]
        walk.add_template(cache, source_id, make_template(tid, fields, max(n_scope, 1)))


NETFLOW_V9 = ProtocolSpec(
    "netflow-v9",
    "records",
    sid=43,
    doc="netflow.md",
    samples=("netflow-v9.pcap", "netflow-v9-data-first.pcap", "netflow-v9-9999.pcap"),
    wireshark=CFLOW,
)


class NetflowV9Decoder(TemplateExportDecoder):
    name: ClassVar[str] = "netflow-v9"
    emits = (NETFLOW_V9,)
    ports: ClassVar[frozenset[int]] = frozenset({2055, 2056, 9995, 9996, 9991})

    first_bytes = frozenset({VERSION >> 8})
    second_bytes = frozenset({VERSION & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        sid = be16(head, 20)
        flen = be16(head, 22)
        return (
            (be16(head, 0) == VERSION)
            & plausible_secs_col(be32(head, 8))
            & ((sid <= OPTIONS_FLOWSET) | (sid >= 256))
            & (flen >= 4)
            & (flen <= length - HEADER.size)
        )

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < HEADER.size + 4:
            return None
        version, count, uptime, secs, seq, source_id = HEADER.unpack_from(payload)
        if version != VERSION or not plausible_secs(secs):
            return None
        walked = None
        # Captures that keep the Ethernet FCS can count it into the IP and UDP lengths; v9 has
        # no message length, so those four bytes show up after the last flowset.
        for trailing in (0, FCS_LEN):
            walked = walk_message(
                payload,
                HEADER.size,
                len(payload) - trailing,
                (TEMPLATE_FLOWSET, OPTIONS_FLOWSET),
                _options_template_flowset,
                state,
                source_id,
            )
            if walked is not None:
                break
        if walked is None:
            return None
        n_sets, walk = walked
        facts: dict[str, object] = {
            "version": VERSION,
            "count": count,
            "sequence": seq,
            "unix_secs": secs,
            "sys_uptime_ms": uptime,
            "flowsets": n_sets,
        }
        if trailing:
            facts["trailing_bytes"] = trailing
        found = walk.decoded(
            "netflow-v9",
            f"{payload[:4].hex(' ')}: NetFlow v9, {count} record(s), source id {source_id}, "
            f"package sequence {seq}, {n_sets} flowset(s)",
            {"source_id": source_id},
            facts,
            HEADER.size,
        )
        if walk.missing_template_ids:
            # The header counts every record (templates and data): what the known ones do not
            # explain sits in the flowsets without a template.
            explained = walk.template_records + walk.data_records + walk.options_records
            found.facts["records_without_template"] = max(
                count - explained, len(walk.missing_template_ids)
            )
        return found


DECODERS: list[Decoder] = [NetflowV9Decoder()]
