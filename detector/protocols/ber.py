"""A small BER (X.690) TLV walker for the ETSI lawful-intercept handover formats.

Only what the ETSI decoders need: identifier octets (including multi-octet tag numbers), definite
lengths (short and long form, non-minimal long forms accepted since libwandder writes
`82 00 9d`), children of a constructed value, and INTEGER/OID/string values.  Indefinite lengths
are refused: no known ETSI LI emitter uses them, and refusing keeps framing unambiguous.
Nothing here raises on malformed input; it returns None.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

UNIVERSAL, CONTEXT = 0, 2  # tag classes read here (application is 1, private 3)
SEQUENCE = 0x10
# Longest identifier + length this walker accepts: 1 + 4 tag octets, 1 + 4 length octets.
MAX_HEADER = 10
MAX_LENGTH_OCTETS = 4


@dataclass(repr=False, eq=False, slots=True)
class Tlv:
    """One BER identifier, length and where its value lies."""

    cls: int
    constructed: bool
    tag: int
    start: int  # offset of the identifier octet
    value_start: int
    length: int

    @property
    def end(self) -> int:
        return self.value_start + self.length

    def is_(self, cls: int, tag: int, constructed: bool | None = None) -> bool:
        return (
            self.cls == cls
            and self.tag == tag
            and (constructed is None or self.constructed == constructed)
        )


def read_tlv(data: bytes, off: int) -> Tlv | None:
    """The TLV header at ``off``; None if malformed or cut short.  The value may extend past the
    data (callers framing a stream check ``end``)."""
    n = len(data)
    if off >= n:
        return None
    ident = data[off]
    pos = off + 1
    tag = ident & 0x1F
    if tag == 0x1F:
        tag = 0
        for i in range(4):
            if pos >= n:
                return None
            b = data[pos]
            pos += 1
            tag = (tag << 7) | (b & 0x7F)
            if not b & 0x80:
                break
            if i == 3:
                return None
    if pos >= n:
        return None
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > MAX_LENGTH_OCTETS or pos + count > n:
            return None
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return Tlv(ident >> 6, bool(ident & 0x20), tag, off, pos, length)


def children(data: bytes, parent: Tlv, limit: int = 256) -> list[Tlv] | None:
    """The TLVs that exactly fill a constructed value, or None if they do not."""
    if not parent.constructed or parent.end > len(data):
        return None
    found: list[Tlv] = []
    off = parent.value_start
    while off < parent.end:
        child = read_tlv(data, off)
        if child is None or child.end > parent.end or len(found) >= limit:
            return None
        found.append(child)
        off = child.end
    return found


def first(items: list[Tlv] | None, cls: int, tag: int) -> Tlv | None:
    for item in items or ():
        if item.cls == cls and item.tag == tag:
            return item
    return None


def walk(
    data: bytes, root: Tlv, max_nodes: int = 64, max_depth: int = 6
) -> Iterator[tuple[Tlv, Tlv]]:
    """Depth-first and bounded: (parent, child) for the well-formed TLVs under ``root``."""
    stack: list[tuple[Tlv, int]] = [(root, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        kids = children(data, node) if depth < max_depth else None
        for kid in kids or ():
            seen += 1
            if seen > max_nodes:
                return
            yield node, kid
        for kid in reversed(kids or ()):
            if kid.constructed:
                stack.append((kid, depth + 1))


def value(data: bytes, tlv: Tlv) -> bytes:
    return bytes(data[tlv.value_start : tlv.end])


def as_int(data: bytes, tlv: Tlv) -> int | None:
    if not 1 <= tlv.length <= 9 or tlv.constructed:
        return None
    return int.from_bytes(data[tlv.value_start : tlv.end], "big", signed=True)


def as_text(data: bytes, tlv: Tlv, limit: int = 128) -> str:
    """A string field as text: printable ASCII/UTF-8 kept, anything else as hex."""
    raw = value(data, tlv)[:limit]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex()
    return text if text.isprintable() else raw.hex()


def oid_arcs(raw: bytes) -> list[int] | None:
    """Sub-identifiers of an OBJECT IDENTIFIER or RELATIVE-OID value (first two arcs not split)."""
    arcs: list[int] = []
    cur = 0
    for b in raw:
        cur = (cur << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(cur)
            cur = 0
    if raw and raw[-1] & 0x80:
        return None
    return arcs


def oid_str(raw: bytes) -> str:
    arcs = oid_arcs(raw)
    if not arcs:
        return raw.hex()
    head = arcs[0]
    top = min(head // 40, 2)
    return ".".join(str(a) for a in [top, head - 40 * top, *arcs[1:]])
