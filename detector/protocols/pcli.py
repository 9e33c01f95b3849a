"""PacketCable CALEA Call Content Connection ("PCLI"): MikroTik sniff-pc, Cisco CMTS intercept.

Layouts (Wireshark's pcli / pcli8 / pcli12 / pcli20):
    CCCID(4) + payload
    CCCID(4) + header word(4) + payload
    CCCID(4) + NTP timestamp(8) + payload
    CCCID(4) + NTP timestamp(8) + case id(8) + payload
There is no magic number: the payload must be an IPv4/IPv6 packet that ends exactly at the end of
the datagram (or an Ethernet frame around one), and the 12/20-byte forms need a plausible NTP
timestamp.  One packet is therefore only moderate evidence; a CCCID constant across a stream is
what makes it convincing.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    InnerLink,
    Kind,
    PacketContext,
    ProtocolSpec,
    Transport,
    wireshark,
)
from detector.protocols.li_common import (
    be32,
    carried_bits,
    carried_compiled,
    carried_masks,
    carried_may_start,
    hexbytes,
    inner_link,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800
# Plausible intercept timestamps: 2000-01-01 to the end of NTP era 0 (2036-02-07), or the first
# 24 years of era 1 (the counter wraps in 2036).
NTP_MIN = NTP_UNIX_OFFSET + 946_684_800
ERA1_MAX = 24 * 365 * 86_400

HEADER_LENS = (20, 12, 4, 8)  # tried in this order: timestamped forms first
# The header lengths in the prefilter's order: untimed forms, then timestamped ones.
OFFSETS = (4, 8, 12, 20)
VARIANT = {4: "pcli", 8: "pcli8", 12: "pcli12", 20: "pcli20"}
NTP = struct.Struct("!II")


def ntp_plausible(secs: int) -> bool:
    return secs >= NTP_MIN or secs < ERA1_MAX


def ntp_to_unix(secs: int, frac: int) -> float:
    era = 0 if secs >= NTP_MIN else 1 << 32
    return secs + era - NTP_UNIX_OFFSET + frac / 2**32


# PCLI hands its payload to a table of its own; without a rule it stays "data".  Wireshark
# has one dissector per layout (pcli8, pcli12, pcli20): explain picks the stream's variant.
PCLI = ProtocolSpec(
    "pcli",
    "shim",
    sid=20,
    doc="pcli.md",
    samples=("pcli.pcap", "pcli12.pcap", "pcli20.pcap"),
    wireshark=wireshark("pcli", "pcli.cccid", extra=("pcli.payload,ip",)),
)
PCLI_VARIANTS = tuple(
    ProtocolSpec(
        name,
        "shim",
        sid=sid,
        doc="pcli.md",
        wireshark=wireshark(name, "pcli.cccid", extra=("pcli.payload,ip",)),
    )
    for name, sid in (("pcli8", 21), ("pcli12", 22), ("pcli20", 23))
)


def _carried_after_header(
    head: npt.NDArray[np.uint8], at: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Rows carrying a packet after one of the header lengths (``at``: one column each, in
    ``OFFSETS`` order), the timestamped ones only where the NTP seconds are in range."""
    mask = at[:, 0] | at[:, 1]
    late = np.flatnonzero((at[:, 2] | at[:, 3]) & ~mask)
    if len(late):
        secs = be32(head[late], 4)
        mask[late] = (secs >= NTP_MIN) | (secs < ERA1_MAX)
    return mask


class PcliDecoder(Decoder):
    name: ClassVar[str] = "pcli"
    emits = (PCLI,)
    aliases = PCLI_VARIANTS
    kind: ClassVar[Kind] = "intercept"
    transport: ClassVar[Transport] = "udp"
    # No magic: run after every format that has one, and after the 8-byte LI shims.
    priority: ClassVar[int] = 80
    heuristic: ClassVar[bool] = True

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        if carried_compiled:
            # The compiled test reads each row once, which costs less than the guard below.
            return _carried_after_header(head, carried_bits(head, length, OFFSETS) != 0)
        mask = np.zeros(len(head), dtype=np.bool_)
        # A cheap guard first: the few rows whose bytes could start a carried packet.
        rows = np.flatnonzero(carried_may_start(head, length, OFFSETS))
        if not len(rows):
            return mask
        head, length = head[rows], length[rows]
        mask[rows] = _carried_after_header(head, carried_masks(head, length, OFFSETS))
        return mask

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        if len(payload) < 4 + 20:
            return None
        cccid = int.from_bytes(payload[:4], "big")
        for hlen in HEADER_LENS:
            if hlen >= 12 and not ntp_plausible(NTP.unpack_from(payload, 4)[0]):
                continue
            link = inner_link(payload, hlen)
            if link is not None:
                return self._decoded(payload, cccid, hlen, link)
        return None

    def _decoded(self, payload: bytes, cccid: int, hlen: int, link: InnerLink) -> Decoded:
        session: dict[str, int | str] = {"cccid": cccid}
        facts: dict[str, object] = {"variant": VARIANT[hlen]}
        what = f"{hexbytes(payload, 4)}: PacketCable CCC, CCCID {cccid}"
        if hlen >= 12:
            secs, frac = NTP.unpack_from(payload, 4)
            facts["timestamp"] = round(ntp_to_unix(secs, frac), 6)
            what += ", NTP timestamp"
        if hlen == 20:
            case_id = int.from_bytes(payload[12:20], "big")
            session["case_id"] = case_id
            what += f", case id {case_id}"
        inner = "an IP packet" if link == "ip" else "an Ethernet frame"
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{what}; {inner} fills the rest from offset {hlen}",
            session=session,
            carried=[Carried(link, payload[hlen:])],
            facts=facts,
            # A timestamp in range is a second, independent check.
            strength=0.6 if hlen >= 12 else 0.5,
            header_len=hlen,
        )


DECODERS = [PcliDecoder()]
