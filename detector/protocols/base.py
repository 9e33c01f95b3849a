"""The contract every protocol module fulfils.

A protocol module recognises one format by validating its structure (never by port alone) and
returns a :class:`Decoded` describing what one packet (or one PDU of a stream) carried.  Modules
know nothing about flows, severities or reports: the engine aggregates ``Decoded`` values into
stream evidence, and ``detector.policy`` turns evidence into findings.

Each module exposes one or more :class:`Decoder` instances (``DECODERS``), found by
``detector.protocols.registry``.  Each decoder declares the protocols it reports as
:class:`ProtocolSpec` values (``emits``): role, EVE signature number, Wireshark's reading, doc
page and samples.  The verdict, EVE, explain tables and the documentation tests are derived from
them, so adding a format means one module (plus its doc page, sample and golden output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from detector.decode.frames import InnerPacket

Kind = Literal["mirror", "intercept", "flow-export", "tunnel"]
Transport = Literal["udp", "tcp", "gre", "ip"]
# The outer IP protocols a finding names by a word; any other is "ip/<number>".
TRANSPORT_NUMBERS: dict[str, int] = {"udp": 17, "tcp": 6, "gre": 47}
_TRANSPORT_NAMES = {number: name for name, number in TRANSPORT_NUMBERS.items()}
# How the carried bytes begin: an Ethernet frame, an IP packet (v4 or v6 by its first nibble),
# an 802.11 frame, PPP, or something the module could not name.
InnerLink = Literal["ethernet", "ip", "ieee80211", "ppp", "raw"]
# How a protocol's packets relate to the traffic they carry, for the verdict:
# - copy: copies by construction (nothing else is ever sent that way: TZSP, ERSPAN...)
# - ambiguous: used for mirrors and for ordinary overlays alike; decided from evidence
# - correlated: copies found by comparing a stream with the span's own traffic
# - shim: lawful-intercept exports (a header before intercepted packets, or handover PDUs)
# - records: records about traffic (flow exports, connection logs)
# - steering: diverts the original packets (to a cache, an appliance), never copies them
# - tunnel: carries packets to be delivered
Role = Literal["copy", "ambiguous", "correlated", "shim", "records", "steering", "tunnel"]
# Exports written as logs (a line or message per event, not flow records), whose record rate is
# set against the span's new flows:
# - events: every message is a record (dnstap's queries and responses)
# - mixed: ordinary log lines too; a stream is a flow export only when enough of its lines name
#   other hosts' connections (syslog)
Log = Literal["events", "mixed"]


def transport_name(ip_proto: int) -> str:
    """How findings name the transport of a stream sent over IP protocol ``ip_proto``."""
    return _TRANSPORT_NAMES.get(ip_proto) or f"ip/{ip_proto}"


def ip_protocol(transport: str) -> int | None:
    """The IP protocol number of a finding's transport (None for plain copies, ``l2``)."""
    if transport in TRANSPORT_NUMBERS:
        return TRANSPORT_NUMBERS[transport]
    if transport.startswith("ip/") and transport[3:].isdigit():
        return int(transport[3:])
    return None


@dataclass(frozen=True, slots=True)
class Dissection:
    """How Wireshark reads one protocol."""

    dissector: str | None  # Decode As target for the stream's port (None: no rule needed)
    marker: str  # display filter true when Wireshark recognised the format
    ports: frozenset[int] = frozenset()  # ports Wireshark already decodes this way
    extra: tuple[str, ...] = ()  # further Decode As rules (payload tables)

    @property
    def layers(self) -> str:
        """Protocols whose detail tree is shown (tshark -O): the format's own header."""
        name = self.marker.split(".")[0].split(" ")[0]
        return "gre,erspan" if name == "erspan" else name


def wireshark(
    dissector: str | None, marker: str, *ports: int, extra: tuple[str, ...] = ()
) -> Dissection:
    return Dissection(dissector, marker, frozenset(ports), extra)


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """One protocol name as findings report it, with what every table around the engine needs
    to know of it.  Declared in the module that decodes it, listed by its decoder's ``emits``."""

    name: str
    role: Role
    # EVE signature number (detector.report.eve): once issued, never changed nor reused.
    sid: int
    # Its page under docs/formats/ and the files under pcaps/ that hold it (pcaps/expected.tsv).
    doc: str
    samples: tuple[str, ...] = ()
    # The ports it is usually sent to (a finding elsewhere says so); None: its decoder's ports.
    ports: tuple[int, ...] | None = None
    # Wireshark's reading (detector.explain), or why Wireshark cannot read it.
    wireshark: Dissection | None = None
    no_dissector: str = ""
    # Only for protocols no decoder reports (found across streams by the engine).
    kind: Kind | None = None
    # Recognised without a magic number (or by one anyone may send): one matching packet proves
    # nothing, so the policy wants a ladder of evidence.  None: its decoder's ``heuristic``.
    guessed: bool | None = None
    # Exports written as logs say how (``Log``); None for everything else.
    log: Log | None = None


@dataclass(slots=True)
class Carried:
    """One packet or frame carried inside the outer packet (a copy, or a tunnelled packet)."""

    link: InnerLink
    data: bytes
    # Original length of the copied frame where the format gives it (TZSP tag 41, sFlow).
    orig_len: int | None = None
    # "rx"/"tx"/"ingress"/"egress"/"to-target"/"from-target" where the format records it.
    direction: str | None = None
    # The frame parsed when the decoder checked it (detector.decode.frames.carried_frame), so
    # evidence and copy matching do not parse it again.
    parsed: InnerPacket | None = None


@dataclass(slots=True)
class RecordedFlow:
    """A conversation named in a flow-export record (NetFlow/IPFIX record, sFlow sample header)."""

    src: str
    dst: str
    proto: int = 0
    sport: int = 0
    dport: int = 0
    packets: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Decoded:
    """What one outer packet (or one stream PDU) turned out to be."""

    protocol: str  # e.g. "tzsp", "erspan-2", "netflow-v9", "gtp-u"
    kind: Kind
    # Short description of the leading bytes and what they mean, for the finding's reasons,
    # e.g. "01 00 00 01 01: TZSP version 1, type received, encapsulation Ethernet, END tag".
    header: str
    # Format-specific identifiers that stay constant for one stream (session id, VNI, sensor MAC,
    # observation domain...).  Values must be str or int.
    session: dict[str, int | str] = field(default_factory=dict)
    carried: list[Carried] = field(default_factory=list)
    records: list[RecordedFlow] = field(default_factory=list)
    # Per-packet facts the engine aggregates (version, template ids, sampling rate, sequence
    # number, record count...).  Values must be JSON-serialisable scalars or lists of them.
    facts: dict[str, object] = field(default_factory=dict)
    # How unambiguous one packet's match is: 1.0 for a magic number or several independent
    # checks, lower for formats without a magic (PCLI, legacy peekremote).
    strength: float = 1.0
    # Number of header bytes before the carried payload (for reasons and evidence pcaps).
    header_len: int = 0


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a payload is not (or no longer) this format: a short stable code such as ``version``,
    ``carried-frame`` or ``reserved-bits``.  The engine counts codes per stream and shows them in
    the finding's evidence, so a stream that degrades says how."""

    reason: str


# The code of a rejection whose decoder gave no reason of its own.
INVALID = Reject("invalid")


@dataclass(slots=True)
class PacketContext:
    """Outer facts about the packet being decoded, for checks that need them."""

    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    ttl: int = 0
    ts: float = 0.0
    udp_checksum: int | None = None
    # GRE header fields when transport is "gre".
    gre_proto: int = 0
    gre_flags: int = 0
    gre_key: int | None = None
    gre_seq: int | None = None
    # IP protocol number when transport is "ip".
    ip_proto: int = 0


class Decoder:
    """Base class of a format decoder.  Subclasses set the class attributes and ``decode``.

    ``transport`` says where the format lives:
    - "udp"/"tcp": ``decode`` gets the L4 payload.  ``ports`` only adds confidence.
    - "gre": ``decode`` gets the bytes after the GRE header; ``gre_types`` lists the GRE
      protocol types it handles (the GRE header itself is parsed by ``detector.protocols.gre``).
    - "ip": ``decode`` gets the IP payload; ``ip_protos`` lists the IP protocol numbers.

    UDP and TCP decoders also provide ``prefilter``: a vectorised test over the first bytes of
    many payloads at once that is cheap and never misses a packet ``decode`` would accept.  Only
    rows that pass some prefilter reach Python, which is what keeps the engine fast.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    transport: ClassVar[Transport]
    ports: ClassVar[frozenset[int]] = frozenset()
    gre_types: ClassVar[frozenset[int]] = frozenset()
    ip_protos: ClassVar[frozenset[int]] = frozenset()
    # Lower runs first when several decoders accept the same payload (specific before generic).
    priority: ClassVar[int] = 50
    # Only for formats with no content signature at all: the engine then looks for them on
    # ``ports`` only.  Everything else is recognised on any port.
    ports_required: ClassVar[bool] = False
    # Formats guessed from structure alone (no magic number: PCLI, jmirror, unknown shims...).
    # Like Wireshark's heuristic dissectors, they yield to a port registered to another
    # protocol (``detector.protocols.registry.port_owner``), and the policy wants several
    # packets of plausible traffic before it believes them.
    heuristic: ClassVar[bool] = False
    # The protocols this decoder reports (``Decoded.protocol``): its ``name`` is the decoder's,
    # not necessarily a protocol's (``netflow`` reports netflow-v1/v5/v7).
    emits: ClassVar[tuple[ProtocolSpec, ...]] = ()
    # Names that appear in the tables but never as a finding's protocol: Wireshark's variants
    # of a protocol, names of former releases.  Their signature numbers stay reserved.
    aliases: ClassVar[tuple[ProtocolSpec, ...]] = ()
    # Tried on GRE types and IP protocols that no decoder claims (a shim found by structure).
    fallback: ClassVar[bool] = False
    # The values the first payload byte can take in any packet ``decode`` accepts (None: any).
    # Prefilters are given only rows that start with one of them and one of ``second_bytes``
    # (detector.prefilter_route).
    first_bytes: ClassVar[frozenset[int] | None] = None
    # Likewise the second payload byte (None: any).  The window reads 0 past a payload's end, so
    # a format that accepts one-byte payloads lists 0.
    second_bytes: ClassVar[frozenset[int] | None] = None

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """``head`` is (n, PREFILTER_BYTES) payload bytes, zero past ``length`` (captured bytes)."""
        raise NotImplementedError

    def new_state(self) -> object | None:
        """Per-stream state for stateful formats (templates, TCP PDU framing)."""
        return None

    def stream_protocol(self, current: str, found: Decoded) -> str:
        """The protocol of a stream reported as ``current`` once it validates ``found``: most
        formats keep the name they started with; an IPFIX stream whose messages carry packet
        sections becomes PSAMP."""
        return current

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        """Return what the payload is, or None when it does not validate as this format.
        Decoders that give reasons implement :meth:`check` instead."""
        found = self.check(payload, ctx, state)
        return found if isinstance(found, Decoded) else None

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        """What the payload is, or why it is not this format (what the engine calls).  Never
        raises for any bytes: a reason code is returned instead."""
        found = self.decode(payload, ctx, state)
        return INVALID if found is None else found


class StreamDecoder(Decoder):
    """A format carried in a TCP byte stream (ETSI handover, X2/X3, rpcap, PCAP-over-IP).

    The engine reassembles each direction of a TCP connection and calls ``feed`` with the next
    in-order bytes; the decoder frames PDUs itself and keeps partial PDUs in its state.
    """

    transport: ClassVar[Transport] = "tcp"

    def feed(self, data: bytes, ctx: PacketContext, state: object | None) -> list[Decoded]:
        raise NotImplementedError

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        # One segment that holds a whole PDU: used to classify a connection before reassembly.
        found = self.feed(payload, ctx, self.new_state())
        return found[0] if found else None


# Width of the payload window given to prefilters.
PREFILTER_BYTES = 64
