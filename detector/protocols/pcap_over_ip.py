"""PCAP-over-IP: a pcap or pcapng file written to a TCP socket (Netresec convention, Arkime,
tcpdump piped to netcat; port 57012 by convention).

The stream starts with a file header whose magic number is unambiguous, then records (pcap:
16-byte record header, 24 with the Kuznetzov patch; pcapng: blocks whose length is repeated at
their end).  Each record's frame is handed on as Carried, with the link from the file's link type.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import Carried, Decoded, Kind, ProtocolSpec
from detector.protocols.li_common import (
    FramedStreamDecoder,
    StreamState,
    be32,
    hexbytes,
    link_for_linktype,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# Magic as written (file bytes) → (little-endian, nanosecond, record header length).
PCAP_MAGICS: dict[bytes, tuple[bool, bool, int]] = {
    bytes.fromhex("d4c3b2a1"): (True, False, 16),
    bytes.fromhex("a1b2c3d4"): (False, False, 16),
    bytes.fromhex("4d3cb2a1"): (True, True, 16),
    bytes.fromhex("a1b23c4d"): (False, True, 16),
    bytes.fromhex("34cdb2a1"): (True, False, 24),  # Kuznetzov's patched libpcap
    bytes.fromhex("a1b2cd34"): (False, False, 24),
}
# The magics as the prefilter reads them: big-endian words of the first four bytes.
_MAGIC_WORDS = tuple(int.from_bytes(m, "big") for m in PCAP_MAGICS)
PCAPNG_SHB = bytes.fromhex("0a0d0d0a")
BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAP_HEADER_LEN = 24
MAX_RECORD = 1 << 20
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BLOCK_NAMES = {IDB: "interface", PB: "packet", SPB: "simple-packet", EPB: "enhanced-packet"}
BLOCK_NAMES |= {4: "name-resolution", 5: "interface-statistics", 10: "decryption-secrets"}
FMT_PCAP, FMT_PCAPNG = 1, 2


def _endian(state: StreamState) -> str:
    return "<" if state.info.get("le") else ">"


def pcapng_order(buf: bytes | bytearray) -> bool | None:
    """True for a little-endian section, False for big-endian, None if not a section header."""
    if len(buf) < 12 or bytes(buf[:4]) != PCAPNG_SHB:
        return None
    bom = bytes(buf[8:12])
    if bom == BYTE_ORDER_MAGIC.to_bytes(4, "little"):
        return True
    if bom == BYTE_ORDER_MAGIC.to_bytes(4, "big"):
        return False
    return None


def _lag(state: StreamState, captured: float) -> float:
    """Seconds between a record's capture time and the moment its bytes were seen: a live
    capture stream sends each record soon after capturing it, a file transfer sends old ones."""
    return round(state.now - captured, 3)


PCAP_OVER_IP = ProtocolSpec(
    "pcap-over-ip",
    "copy",
    sid=9,
    doc="pcap-over-ip.md",
    samples=("pcap-over-ip.pcap",),
    no_dissector="Wireshark opens pcap files but does not dissect a pcap stream inside TCP.",
)


class PcapOverIpDecoder(FramedStreamDecoder):
    name: ClassVar[str] = "pcap-over-ip"
    emits = (PCAP_OVER_IP,)
    kind: ClassVar[Kind] = "mirror"
    ports: ClassVar[frozenset[int]] = frozenset({57012})
    priority: ClassVar[int] = 30
    # The file magic is unambiguous, but a capture file is also what people download.
    heuristic: ClassVar[bool] = True

    first_bytes = frozenset({*(m[0] for m in PCAP_MAGICS), SHB >> 24})
    second_bytes = frozenset({*(m[1] for m in PCAP_MAGICS), SHB >> 16 & 0xFF})

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        word = be32(head, 0)
        found = word == SHB
        for magic in _MAGIC_WORDS:
            found |= word == magic
        return found

    # -- framing ---------------------------------------------------------------------------

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if len(buf) < 12:
            return None
        if state.pdus == 0 and bytes(buf[:4]) in PCAP_MAGICS:
            return PCAP_HEADER_LEN
        fmt = state.info.get("fmt")
        if fmt == FMT_PCAP:
            rec = state.info["rechdr"]
            caplen = struct.unpack_from(_endian(state) + "I", buf, 8)[0]
            return rec + caplen if caplen <= MAX_RECORD else -1
        if bytes(buf[:4]) == PCAPNG_SHB:
            le = pcapng_order(buf)
            if le is None:
                return -1
            return struct.unpack_from("<I" if le else ">I", buf, 4)[0]
        if fmt == FMT_PCAPNG:
            total = struct.unpack_from(_endian(state) + "I", buf, 4)[0]
            return total if total >= 12 and total % 4 == 0 else -1
        return -1

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        if state.pdus == 0 and pdu[:4] in PCAP_MAGICS:
            return self._pcap_header(pdu, state, 1.0)
        if state.info.get("fmt") == FMT_PCAP:
            return self._pcap_record(pdu, state)
        return self._pcapng_block(pdu, state)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        if head[:4] in PCAP_MAGICS and len(head) >= PCAP_HEADER_LEN:
            return self._pcap_header(head[:PCAP_HEADER_LEN], state, 0.9)
        le = pcapng_order(head)
        if le is None or len(head) < 16:
            return None
        major, minor = struct.unpack_from("<HH" if le else ">HH", head, 12)
        if major != 1:
            return None
        what = f"pcapng section header version {major}.{minor}"
        return self._decoded(head, 16, what, 0.9, state)

    # -- pcap ------------------------------------------------------------------------------

    def _pcap_header(self, pdu: bytes, state: StreamState, strength: float) -> Decoded | None:
        le, ns, rechdr = PCAP_MAGICS[pdu[:4]]
        major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
            ("<" if le else ">") + "HHiIII", pdu, 4
        )
        # Bits 16-25 of the link-type field are reserved (26-31 carry FCS information).
        if major != 2 or minor > 4 or (linktype >> 16) & 0x3FF:
            return None
        state.info.update(
            fmt=FMT_PCAP, le=int(le), ns=int(ns), rechdr=rechdr, linktype=linktype & 0xFFFF
        )
        what = (
            f"pcap file header ({'little' if le else 'big'}-endian, "
            f"{'ns' if ns else 'µs'} timestamps), version {major}.{minor}, snaplen {snaplen}, "
            f"link type {linktype & 0xFFFF} ({link_for_linktype(linktype)})"
        )
        decoded = self._decoded(pdu, PCAP_HEADER_LEN, what, strength, state)
        decoded.facts.update(pdu="file-header", format="pcap", snaplen=snaplen)
        return decoded

    def _pcap_record(self, pdu: bytes, state: StreamState) -> Decoded | None:
        rechdr = state.info["rechdr"]
        secs, frac, caplen, origlen = struct.unpack_from(_endian(state) + "IIII", pdu)
        if caplen > origlen and origlen:
            return None
        captured = secs + frac / (1e9 if state.info.get("ns") else 1e6)
        linktype = state.info["linktype"]
        decoded = self._decoded(
            pdu, rechdr, f"pcap record at {secs}, {caplen} of {origlen} bytes", 1.0, state
        )
        decoded.carried.append(Carried(link_for_linktype(linktype), pdu[rechdr:], origlen))
        decoded.facts.update(pdu="record", caplen=caplen, record_lag_s=_lag(state, captured))
        return decoded

    # -- pcapng ----------------------------------------------------------------------------

    def _pcapng_block(self, pdu: bytes, state: StreamState) -> Decoded | None:
        le = pcapng_order(pdu)
        if le is not None:  # a section header: sets the byte order of what follows
            state.info.update(fmt=FMT_PCAPNG, le=int(le), interfaces=0)
        elif state.info.get("fmt") != FMT_PCAPNG:
            return None
        e = _endian(state)
        btype, total = struct.unpack_from(e + "II", pdu)
        if len(pdu) != total or struct.unpack_from(e + "I", pdu, total - 4)[0] != total:
            return None
        if btype == SHB:
            major, minor = struct.unpack_from(e + "HH", pdu, 12)
            if major != 1:
                return None
            what = f"pcapng section header version {major}.{minor}"
            decoded = self._decoded(pdu, 16, what, 1.0, state)
            decoded.facts.update(pdu="file-header", format="pcapng")
            return decoded
        name = BLOCK_NAMES.get(btype, f"type {btype:#x}")
        carried = self._pcapng_packet(pdu, btype, e, state)
        if btype == IDB and total >= 20:
            linktype = struct.unpack_from(e + "H", pdu, 8)[0]
            n = state.info.get("interfaces", 0)
            state.info[f"if{n}"] = linktype
            state.info["interfaces"] = n + 1
            name += f" (link type {linktype}, {link_for_linktype(linktype)})"
        decoded = self._decoded(pdu, 8, f"pcapng {name} block, {total} bytes", 1.0, state)
        decoded.facts.update(pdu="record" if carried else "block", block_type=btype)
        if carried is not None and btype == EPB:
            decoded.facts["record_lag_s"] = _lag(state, state.info["last_ts_us"] / 1e6)
        if carried is not None:
            decoded.carried.append(carried)
        return decoded

    def _pcapng_packet(self, pdu: bytes, btype: int, e: str, state: StreamState) -> Carried | None:
        body_end = len(pdu) - 4
        if btype == EPB and len(pdu) >= 32:
            iface, hi, lo, caplen, origlen = struct.unpack_from(e + "IIIII", pdu, 8)
            start = 28
            # Default resolution (microseconds): an interface option may say otherwise.
            state.info["last_ts_us"] = (hi << 32) | lo
        elif btype == PB and len(pdu) >= 32:
            iface, _drops, _hi, _lo, caplen, origlen = struct.unpack_from(e + "HHIIII", pdu, 8)
            start = 28
        elif btype == SPB and len(pdu) >= 16:
            iface, origlen = 0, struct.unpack_from(e + "I", pdu, 8)[0]
            start = 12
            caplen = min(origlen, body_end - start)
        else:
            return None
        if start + caplen > body_end:
            return None
        linktype = state.info.get(f"if{iface}", -1)
        link = link_for_linktype(linktype) if linktype >= 0 else "raw"
        return Carried(link, pdu[start : start + caplen], origlen)

    def _decoded(
        self, pdu: bytes, hlen: int, what: str, strength: float, state: StreamState
    ) -> Decoded:
        fmt = state.info.get("fmt")
        session: dict[str, int | str] = {}
        if fmt:
            session["format"] = "pcap" if fmt == FMT_PCAP else "pcapng"
        if fmt == FMT_PCAP:
            session["linktype"] = state.info["linktype"]
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{hexbytes(pdu, min(hlen, 16))}: PCAP-over-IP stream, {what}",
            session=session,
            strength=strength,
            header_len=hlen,
        )


DECODERS = [PcapOverIpDecoder()]
