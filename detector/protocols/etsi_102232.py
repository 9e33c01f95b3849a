"""ETSI TS 102 232-1 PS-PDUs (HI2/HI3 handover to the LEMF) and TS 101 671 / 3GPP 33.108 HI2.

PS-PDU (BER, definite lengths):
    30 L  PS-PDU
      a1 L  pSHeader: [0] li-psDomainId OID, [1] LIID, [2] authorisation country,
            [3] communicationIdentifier {[0] {[0] operator id, [1] network element id},
            [1] CIN, [2] delivery country}, [4] sequence number, [5] timestamp ...
      a2 L  payload: [0] IRI sequence | [1] CC sequence | [2] TRI (keep-alive [3], response [4])
The domain id is 0.4.0.2.2.5.1.<version> (`04 00 02 02 05 01 11` for version 17); libwandder
before 2022 appended a 0 arc, and cyberprobe writes `00 04 00 02 02 05 01`.  All three count.
CC payloads carry the intercepted IP packet in an OCTET STRING, handed on as Carried.

HI2 records (TS 101 671 HI2Operations, 33.108 UMTS/EPS) start with an IRI record [1]-[4] whose
first field is a domain id under 0.4.0.2.2.1 (`04 00 02 02 01`) or 0.4.0.2.2.4
(`04 00 02 02 04`); they may sit inside a ROSE invoke, so the first TLVs are searched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ipv4_valid, ipv6_valid
from detector.prefilter_route import byte_values
from detector.protocols import ber
from detector.protocols.base import Carried, Decoded, InnerLink, Kind, ProtocolSpec
from detector.protocols.ber import CONTEXT, SEQUENCE, UNIVERSAL, Tlv
from detector.protocols.li_common import (
    PEEK_BYTES,
    FramedStreamDecoder,
    StreamState,
    hexbytes,
)

if TYPE_CHECKING:
    import numpy.typing as npt

PS_DOMAIN_PREFIX = bytes.fromhex("040002020501")  # 0.4.0.2.2.5.1
CYBERPROBE_DOMAIN = bytes.fromhex("00040002020501")
HI2_PREFIXES = (bytes.fromhex("0400020201"), bytes.fromhex("0400020204"))

PAYLOAD_KINDS = {
    0: "iri",
    1: "cc",
    2: "tri",
    3: "hi1",
    4: "encrypted",
    5: "iri",  # 3GPP 33.128 IRI
    6: "cc",  # 3GPP 33.128 CC
}
TRI_KINDS = {3: "keepalive", 4: "keepalive-response"}
# Second arc of a payload's object id: the TS 102 232 part that defines the service.
SERVICES = {2: "email", 3: "ip", 4: "layer2", 5: "ipmm", 6: "pstn-isdn", 7: "mobile"}
CC_DIRECTIONS = {0: "from-target", 1: "to-target"}
IRI_TYPES = {1: "begin", 2: "end", 3: "continue", 4: "report"}
# cCContents choices whose value holds the intercepted packet: iPCC [2], iPMMCC [12].
IPCC, IPMMCC = 2, 12


def tagged(tag: int, items: list[Tlv] | None) -> Tlv | None:
    return ber.first(items, CONTEXT, tag)


def leading(data: bytes, parent: Tlv) -> list[Tlv]:
    """The complete children at the start of a value that may be cut short."""
    found: list[Tlv] = []
    off = parent.value_start
    while off < min(parent.end, len(data)) and len(found) < 32:
        child = ber.read_tlv(data, off)
        if child is None or child.end > min(parent.end, len(data)):
            break
        found.append(child)
        off = child.end
    return found


def ps_domain(data: bytes, fields: list[Tlv]) -> tuple[str, int | None] | None:
    """(encoding, version) of a pSHeader whose first field is an ETSI PS domain id."""
    if not fields or not fields[0].is_(CONTEXT, 0, False) or fields[0].length > 12:
        return None
    raw = ber.value(data, fields[0])
    if raw.startswith(PS_DOMAIN_PREFIX) and len(raw) > len(PS_DOMAIN_PREFIX):
        return ("legacy" if len(raw) > 7 else "x690"), raw[len(PS_DOMAIN_PREFIX)]
    if raw.startswith(CYBERPROBE_DOMAIN):
        return "cyberprobe", None
    return None


def psheader(data: bytes, fields: list[Tlv]) -> tuple[dict[str, int | str], dict[str, object]]:
    session: dict[str, int | str] = {}
    facts: dict[str, object] = {}
    if (liid := tagged(1, fields)) is not None:
        session["liid"] = ber.as_text(data, liid)
    if (country := tagged(2, fields)) is not None:
        facts["country"] = ber.as_text(data, country)
    cid = tagged(3, fields)
    if cid is not None and cid.constructed:
        cid_fields = ber.children(data, cid)
        netid = tagged(0, cid_fields)
        if netid is not None and netid.constructed:
            net_fields = ber.children(data, netid)
            if (op := tagged(0, net_fields)) is not None:
                session["operator"] = ber.as_text(data, op)
            if (ne := tagged(1, net_fields)) is not None and not ne.constructed:
                session["network_element"] = ber.as_text(data, ne)
        if (cin := tagged(1, cid_fields)) is not None and (n := ber.as_int(data, cin)) is not None:
            session["cin"] = n
    if (seq := tagged(4, fields)) is not None and (n := ber.as_int(data, seq)) is not None:
        facts["sequence"] = n
    return session, facts


def service_of(data: bytes, objid: Tlv | None, facts: dict[str, object]) -> None:
    arcs = ber.oid_arcs(ber.value(data, objid)) if objid is not None else None
    if arcs and len(arcs) >= 3 and arcs[0] == 5:
        facts["service"] = SERVICES.get(arcs[1], str(arcs[1]))
        facts["service_oid"] = ".".join(map(str, arcs))


def ip_link(packet: bytes) -> InnerLink:
    if ipv4_valid(packet, checksum=False) or ipv6_valid(packet):
        return "ip"
    return "raw"


def cc_items(data: bytes, seq: Tlv, facts: dict[str, object]) -> list[Carried]:
    carried: list[Carried] = []
    for item in ber.children(data, seq) or ():
        fields = ber.children(data, item) if item.constructed else None
        direction_tlv = tagged(0, fields)
        direction = None
        if direction_tlv is not None:
            direction = CC_DIRECTIONS.get(ber.as_int(data, direction_tlv) or 0)
        contents = tagged(2, fields)
        choice = (ber.children(data, contents) or [None])[0] if contents is not None else None
        if choice is None or choice.cls != CONTEXT or not choice.constructed:
            continue
        parts = ber.children(data, choice)
        service_of(data, tagged(0, parts), facts)
        packet: bytes | None = None
        if choice.tag == IPCC and (inner := tagged(1, parts)) is not None and inner.constructed:
            pkt = tagged(0, ber.children(data, inner))
            packet = ber.value(data, pkt) if pkt is not None else None
        elif choice.tag == IPMMCC and (mm := tagged(1, parts)) is not None:
            frame_type = tagged(2, parts)
            # Only IP frames are whole packets; RTP/UDP frames are payloads.
            if frame_type is None or ber.as_int(data, frame_type) == 0:
                packet = ber.value(data, mm)
        if packet:
            carried.append(Carried(ip_link(packet), packet, direction=direction))
    return carried


def iri_items(data: bytes, seq: Tlv, facts: dict[str, object]) -> None:
    """IRI type and service of the first IRI in the sequence (one per PDU in practice)."""
    items = ber.children(data, seq)
    if not items or not items[0].constructed:
        return
    fields = ber.children(data, items[0])
    if (iri_type := tagged(0, fields)) is not None:
        facts["iri_type"] = IRI_TYPES.get(ber.as_int(data, iri_type) or 0, "unknown")
    contents = tagged(2, fields)
    choice = (ber.children(data, contents) or [None])[0] if contents is not None else None
    if choice is not None and choice.constructed:
        service_of(data, tagged(0, ber.children(data, choice)), facts)


def payload_facts(data: bytes, payload: Tlv, facts: dict[str, object]) -> list[Carried]:
    choices = ber.children(data, payload)
    if not choices or choices[0].cls != CONTEXT:
        facts["pdu"] = "other"
        return []
    choice = choices[0]
    kind = PAYLOAD_KINDS.get(choice.tag, "other")
    facts["pdu"] = kind
    if kind == "tri" and choice.constructed:
        tri = ber.children(data, choice)
        if tri:
            facts["pdu"] = TRI_KINDS.get(tri[0].tag, "tri")
        return []
    if kind == "cc" and choice.tag == 1 and choice.constructed:
        carried = cc_items(data, choice, facts)
        facts["cc_packets"] = len(carried)
        return carried
    if kind == "iri" and choice.tag == 0 and choice.constructed:
        iri_items(data, choice, facts)
    return []


ETSI_102232 = ProtocolSpec(
    "etsi-102232",
    "shim",
    sid=27,
    doc="etsi-102232.md",
    samples=("etsi-102232.pcap",),
    no_dissector="Wireshark has no ETSI TS 102 232 (BER-encoded PS-PDU) dissector.",
)
ETSI_HI2 = ProtocolSpec(
    "etsi-hi2", "shim", sid=30, doc="etsi-102232.md", samples=("etsi-hi2.pcap",)
)


class Etsi102232Decoder(FramedStreamDecoder):
    name: ClassVar[str] = "etsi-102232"
    emits = (ETSI_102232,)
    kind: ClassVar[Kind] = "intercept"
    priority: ClassVar[int] = 30

    first_bytes = frozenset({0x30})  # a SEQUENCE
    # A definite BER length: short, or long in at most MAX_LENGTH_OCTETS octets.
    second_bytes = frozenset(range(0x80)) | frozenset(range(0x81, 0x81 + ber.MAX_LENGTH_OCTETS))

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        rows = np.arange(head.shape[0])
        l1 = head[:, 1].astype(np.int64)
        p = 2 + np.where(l1 < 0x80, 0, l1 & 0x7F)
        l2 = head[rows, np.minimum(p + 1, 63)].astype(np.int64)
        q = np.minimum(p + 2 + np.where(l2 < 0x80, 0, l2 & 0x7F), 58)

        def at(k: int) -> npt.NDArray[np.uint8]:
            return head[rows, q + k]

        x690 = (at(2) == 0x04) & (at(3) == 0) & (at(4) == 2) & (at(5) == 2)
        cyberprobe = (at(2) == 0) & (at(3) == 0x04) & (at(4) == 0) & (at(5) == 2)
        return (
            (head[:, 0] == 0x30)
            & (l1 != 0x80)
            & ((l1 & 0x7F) <= ber.MAX_LENGTH_OCTETS)
            & (head[rows, np.minimum(p, 63)] == 0xA1)
            & (at(0) == 0x80)
            & (x690 | cyberprobe)
        )

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        tlv = ber.read_tlv(buf, 0)
        if tlv is None:
            return -1 if len(buf) >= ber.MAX_HEADER else None
        if not tlv.is_(UNIVERSAL, SEQUENCE, True):
            return -1
        return tlv.end

    def _header(self, pdu: bytes) -> tuple[Tlv, list[Tlv], tuple[str, int | None]] | None:
        top = ber.read_tlv(pdu, 0)
        if top is None or not top.is_(UNIVERSAL, SEQUENCE, True):
            return None
        hdr = ber.read_tlv(pdu, top.value_start)
        if hdr is None or not hdr.is_(CONTEXT, 1, True):
            return None
        fields = leading(pdu, hdr)
        domain = ps_domain(pdu, fields)
        if domain is None:
            return None
        return hdr, fields, domain

    def _decoded(
        self,
        pdu: bytes,
        fields: list[Tlv],
        domain: tuple[str, int | None],
        payload: Tlv | None,
        strength: float,
    ) -> Decoded:
        session, facts = psheader(pdu, fields)
        encoding, version = domain
        facts["domain_id_encoding"] = encoding
        if version is not None:
            facts["ps_version"] = version
        carried = payload_facts(pdu, payload, facts) if payload is not None else []
        dom = fields[0]
        what = [f"li-psDomainId {ber.oid_str(ber.value(pdu, dom))} ({encoding} encoding)"]
        if "liid" in session:
            what.append(f"LIID {session['liid']!r}")
        if "pdu" in facts:
            what.append(f"payload {facts['pdu']}")
        if "sequence" in facts:
            what.append(f"sequence {facts['sequence']}")
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=f"{hexbytes(pdu, dom.end)}: ETSI TS 102 232-1 PS-PDU, " + ", ".join(what),
            session=session,
            carried=carried,
            facts=facts,
            strength=strength,
            header_len=dom.end,
        )

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        found = self._header(pdu)
        if found is None:
            return None
        hdr, _, domain = found
        top = ber.read_tlv(pdu, 0)
        parts = ber.children(pdu, top) if top is not None else None
        fields = ber.children(pdu, hdr)
        if not parts or fields is None or top is None or top.end != len(pdu):
            return None
        payload = tagged(2, parts)
        if payload is not None and not payload.constructed:
            return None
        return self._decoded(pdu, fields, domain, payload, 1.0)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        found = self._header(head)
        if found is None:
            return None
        _, fields, domain = found
        return self._decoded(head, fields, domain, None, 0.9)


def hi2_record(data: bytes, root: Tlv) -> tuple[Tlv, Tlv] | None:
    """(IRI record, domain id) for the first HI2 domain id in the first TLVs of a PDU."""
    for parent, child in ber.walk(data, root):
        if (
            child.is_(CONTEXT, 0, False)
            and child.value_start + 5 <= PEEK_BYTES
            and ber.value(data, child).startswith(HI2_PREFIXES)
            and child.length > 5
        ):
            return parent, child
    return None


class EtsiHi2Decoder(FramedStreamDecoder):
    name: ClassVar[str] = "etsi-hi2"
    emits = (ETSI_HI2,)
    kind: ClassVar[Kind] = "intercept"
    priority: ClassVar[int] = 35

    first_bytes = byte_values(0x20, 0x20)  # a constructed tag

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        # Sparse: find "04 00" (the start of the ETSI LI arc 0.4.0.2.2) first, then check the
        # rest of the OID only where it occurs.  The window is searched flat, as one run of
        # bytes (a pair that straddles two rows starts in a column past the ones searched).
        width = head.shape[1]
        flat = np.ascontiguousarray(head).reshape(-1)
        at = np.flatnonzero((flat[:-1] == 4) & (flat[1:] == 0))
        at = at[at % width < width - 4]
        arc = np.take(flat, at + 4)
        hit = (np.take(flat, at + 2) == 2) & (np.take(flat, at + 3) == 2)
        hit &= (arc == 1) | (arc == 4)
        mask = np.zeros(len(head), dtype=np.bool_)
        mask[at[hit] // width] = True
        return mask & ((head[:, 0] & 0x20) != 0)

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        tlv = ber.read_tlv(buf, 0)
        if tlv is None:
            return -1 if len(buf) >= ber.MAX_HEADER else None
        return tlv.end if tlv.constructed else -1

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        top = ber.read_tlv(pdu, 0)
        if top is None or not top.constructed or top.end != len(pdu):
            return None
        if ber.children(pdu, top) is None:
            return None
        return self._record(pdu, top, 1.0)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        top = ber.read_tlv(head, 0)
        if top is None or not top.constructed:
            return None
        # Only the complete TLVs at the start of a cut PDU can be searched.
        kids = leading(head, top)
        if not kids:
            return None
        cut = Tlv(top.cls, True, top.tag, 0, top.value_start, kids[-1].end - top.value_start)
        return self._record(head, cut, 0.8)

    def _record(self, pdu: bytes, top: Tlv, strength: float) -> Decoded | None:
        first = ber.read_tlv(pdu, top.value_start)
        if first is not None and first.is_(CONTEXT, 1, True):
            inner = leading(pdu, first)
            if ps_domain(pdu, inner) is not None:
                return None  # a PS-PDU: etsi-102232's
        found = hi2_record(pdu, top)
        if found is None:
            return None
        record, domain = found
        fields = ber.children(pdu, record) or leading(pdu, record)
        session: dict[str, int | str] = {}
        facts: dict[str, object] = {"pdu": "iri"}
        if record.cls == CONTEXT and record.tag in IRI_TYPES:
            facts["iri_type"] = IRI_TYPES[record.tag]
        if (liid := tagged(1, fields)) is not None and not liid.constructed:
            session["liid"] = ber.as_text(pdu, liid)
        cid = tagged(2, fields)
        if cid is not None and cid.constructed:
            cid_fields = ber.children(pdu, cid)
            if (cin := tagged(0, cid_fields)) is not None and not cin.constructed:
                session["cin"] = ber.as_text(pdu, cin)
            netid = tagged(1, cid_fields)
            if netid is not None and netid.constructed:
                op = tagged(0, ber.children(pdu, netid))
                if op is not None:
                    session["operator"] = ber.as_text(pdu, op)
        oid = ber.oid_str(ber.value(pdu, domain))
        facts["domain_id"] = oid
        return Decoded(
            protocol=self.name,
            kind=self.kind,
            header=(
                f"{hexbytes(pdu, domain.end)}: ETSI/3GPP HI2 IRI record"
                f" ({facts.get('iri_type', 'untyped')}), domain id {oid}"
                + (f", LIID {session['liid']!r}" if "liid" in session else "")
            ),
            session=session,
            facts=facts,
            strength=strength,
            header_len=domain.end,
        )


DECODERS = [Etsi102232Decoder(), EtsiHi2Decoder()]
