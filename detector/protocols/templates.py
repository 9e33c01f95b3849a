"""Pieces shared by the flow-export decoders: template cache, set chaining, record walker.

NetFlow v9 and IPFIX describe data records by templates sent earlier in the same stream.  A
template is identified by (exporter, source id / observation domain, template id); the decoder's
per-stream state is a :class:`TemplateCache`, so the exporter part of the key is the stream
itself.  Both formats also share the set framing (id, length) and the element numbering for the
fields we read (IPFIX reused the v9 numbers 1-127), so one walker serves both.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.decode.frames import ethernet_valid, ip_str, ipv4_str, ipv4_valid, ipv6_valid
from detector.protocols.base import (
    Carried,
    Decoded,
    Decoder,
    Kind,
    RecordedFlow,
    Transport,
    wireshark,
)

if TYPE_CHECKING:
    import numpy.typing as npt

# Unix seconds of 2000-01-01 and 2100-01-01: an export header's clock must fall between them.
MIN_UNIX_SECS = 946_684_800
MAX_UNIX_SECS = 4_102_444_800
# Data records turned into RecordedFlow / Carried per packet: enough to name the conversations,
# cheap enough for a busy exporter.
MAX_RECORDS = 100
# Records of variable-length templates walked per message (fixed-length records are counted by
# arithmetic): a datagram of one-byte records must cost no more than a few thousand steps.
MAX_WALKED_RECORDS = 2048
# Defaults of the template budget (the engine passes the configured ones): templates kept per
# stream, fields of one template (real exporters use a few dozen), fields kept over every stream.
MAX_TEMPLATES = 1024
MAX_TEMPLATE_FIELDS = 512
MAX_TOTAL_FIELDS = 1 << 18
VARLEN = 0xFFFF
# The widest unsigned integer element (unsigned64).
MAX_UINT_BYTES = 8

# Information elements read from data records (IPFIX numbering; v9 uses the same numbers).
IE_OCTETS, IE_PACKETS, IE_PROTO, IE_SPORT, IE_SRC4, IE_DPORT, IE_DST4 = 1, 2, 4, 7, 8, 11, 12
IE_SRC6, IE_DST6 = 27, 28
IE_OCTETS_TOTAL, IE_PACKETS_TOTAL = 85, 86
IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL = 34, 50
IE_PKT_INTERVAL, IE_PKT_SPACE = 305, 306
IE_IP_TOTAL_LEN, IE_FRAME_SIZE = 224, 312
# PSAMP packet sections (RFC 5477): the record carries bytes of the sampled packet itself.
IE_IP_HEADER_SECTION, IE_IP_PAYLOAD_SECTION = 313, 314
IE_FRAME_SECTION, IE_MPLS_SECTION = 315, 316
PACKET_SECTIONS = (IE_IP_HEADER_SECTION, IE_IP_PAYLOAD_SECTION, IE_FRAME_SECTION, IE_MPLS_SECTION)
# The elements of a record's sampling interval, and of a RecordedFlow, in the order read.
SAMPLING_KEYS = (IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL, IE_PKT_INTERVAL, IE_PKT_SPACE)
RECORD_KEYS = (IE_PROTO, IE_SPORT, IE_DPORT, IE_PACKETS, IE_PACKETS_TOTAL, IE_OCTETS,
               IE_OCTETS_TOTAL)  # fmt: skip
SAMPLING_ELEMENTS = frozenset(SAMPLING_KEYS)
WANTED = frozenset(
    {
        IE_OCTETS, IE_PACKETS, IE_PROTO, IE_SPORT, IE_SRC4, IE_DPORT, IE_DST4, IE_SRC6, IE_DST6,
        IE_OCTETS_TOTAL, IE_PACKETS_TOTAL, IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL,
        IE_PKT_INTERVAL, IE_PKT_SPACE, IE_IP_TOTAL_LEN, IE_FRAME_SIZE, *PACKET_SECTIONS,
    }
)  # fmt: skip

_SET_HDR = struct.Struct("!HH")
# Wireshark reads NetFlow (every version) and IPFIX with one dissector, cflow.
CFLOW = wireshark("cflow", "cflow", 2055, 9996, 4739)


def plausible_secs(secs: int) -> bool:
    return MIN_UNIX_SECS <= secs < MAX_UNIX_SECS


def plausible_secs_col(secs: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    return (secs >= MIN_UNIX_SECS) & (secs < MAX_UNIX_SECS)


@dataclass(repr=False, eq=False, slots=True)
class Template:
    """One template of a NetFlow v9 / IPFIX stream: its fields, and where a record's wanted
    elements lie."""

    tid: int
    # (key, length) per field; key is the element id, plus enterprise << 16 for enterprise
    # elements, or negative for v9 scope fields (whose numbers are not element ids).
    fields: tuple[tuple[int, int], ...]
    scope_count: int = 0
    # Record length when no field is variable-length, else None.
    fixed_len: int | None = None
    # Shortest possible record (variable-length fields counted as their 1-byte length prefix).
    min_len: int = 0
    # For fixed-length templates: offset and length of each wanted element in a record.
    offsets: tuple[tuple[int, int, int], ...] = ()
    # Some field is a PSAMP packet section (its records carry packet bytes).
    sections: bool = False


def make_template(tid: int, fields: list[tuple[int, int]], scope_count: int = 0) -> Template:
    var = any(length == VARLEN for _, length in fields)
    min_len = sum(1 if length == VARLEN else length for _, length in fields)
    offsets: list[tuple[int, int, int]] = []
    if not var:
        pos = 0
        for key, length in fields:
            if key in WANTED:
                offsets.append((key, pos, length))
            pos += length
    return Template(
        tid,
        tuple(fields),
        scope_count,
        None if var else min_len,
        min_len,
        tuple(offsets),
        any(key in PACKET_SECTIONS for key, _ in fields),
    )


class FieldBudget:
    """Template fields held by every stream of one engine, against one budget."""

    __slots__ = ("shed", "total", "used")

    def __init__(self, total: int = MAX_TOTAL_FIELDS) -> None:
        self.total = total
        self.used = 0
        self.shed = 0  # templates not kept because the budget was spent


class TemplateCache:
    """Templates of one exporter stream, keyed by (source id / observation domain, template id).

    Bounded in templates, in fields per template and, through a shared :class:`FieldBudget`, in
    fields over every stream; ``shed`` counts the templates refused (their data is counted as
    records without a template)."""

    __slots__ = ("budget", "max_fields", "max_templates", "shed", "templates")

    def __init__(
        self,
        max_templates: int = MAX_TEMPLATES,
        max_fields: int = MAX_TEMPLATE_FIELDS,
        budget: FieldBudget | None = None,
    ) -> None:
        self.templates: dict[tuple[int, int], Template] = {}
        self.max_templates = max_templates
        self.max_fields = max_fields
        self.budget = budget
        self.shed = 0

    def get(self, domain: int, tid: int) -> Template | None:
        return self.templates.get((domain, tid))

    def put(self, domain: int, t: Template) -> bool:
        """Keep ``t``; False (and counted) when a budget refuses it."""
        old = self.templates.get((domain, t.tid))
        grow = len(t.fields) - (len(old.fields) if old is not None else 0)
        if (old is None and len(self.templates) >= self.max_templates) or (
            self.budget is not None and grow > 0 and self.budget.used + grow > self.budget.total
        ):
            self.shed += 1
            if self.budget is not None:
                self.budget.shed += 1
            return False
        if self.budget is not None:
            self.budget.used += grow
        self.templates[(domain, t.tid)] = t
        return True

    def withdraw(self, domain: int, tid: int | None) -> None:
        """Forget one template, or every template of the domain when ``tid`` is None."""
        keys = [(domain, tid)] if tid is not None else [k for k in self.templates if k[0] == domain]
        for key in keys:
            t = self.templates.pop(key, None)
            if t is not None and self.budget is not None:
                self.budget.used -= len(t.fields)

    def release(self) -> None:
        """Give every template's fields back to the budget (the stream is gone)."""
        for t in self.templates.values():
            if self.budget is not None:
                self.budget.used -= len(t.fields)
        self.templates.clear()


def cache_of(state: object | None) -> TemplateCache:
    # Without a stream state (one-off classification) templates live for this packet only.
    return state if isinstance(state, TemplateCache) else TemplateCache()


def chain_sets(
    data: bytes, start: int, control_ids: frozenset[int], end: int | None = None
) -> list[tuple[int, int, int]] | None:
    """Split ``data[start:end]`` into (set id, body start, end) sets whose lengths end exactly at
    ``end``; None when they do not, or a set id is neither control nor ≥ 256."""
    sets: list[tuple[int, int, int]] = []
    pos = start
    end = len(data) if end is None else end
    while pos < end:
        if end - pos < 4:
            return None
        sid, length = _SET_HDR.unpack_from(data, pos)
        if length < 4 or pos + length > end or (sid < 256 and sid not in control_ids):
            return None
        sets.append((sid, pos + 4, pos + length))
        pos += length
    return sets if sets else None


def parse_fields(
    data: bytes, pos: int, end: int, count: int, enterprise: bool
) -> tuple[list[tuple[int, int]], int] | None:
    """Read ``count`` field specifiers (type, length[, enterprise number]) from ``pos``."""
    fields: list[tuple[int, int]] = []
    for _ in range(count):
        if end - pos < 4:
            return None
        ie, length = _SET_HDR.unpack_from(data, pos)
        pos += 4
        if enterprise and ie & 0x8000:
            if end - pos < 4:
                return None
            pen = int.from_bytes(data[pos : pos + 4], "big")
            pos += 4
            ie = (ie & 0x7FFF) | (pen << 16)
        fields.append((ie, length))
    return fields, pos


def content_end(data: bytes, start: int, end: int) -> int:
    """Position after the last non-zero byte of ``data[start:end]`` (``start`` if none): found
    once per set, so telling padding from records costs nothing per record."""
    return start + len(data[start:end].rstrip(b"\0"))


def is_padding(pos: int, end: int, shortest: int, content: int) -> bool:
    """Trailing bytes of a set that cannot hold another record (or are all zero) are padding;
    ``content`` is the set's :func:`content_end`."""
    return end - pos < shortest or pos >= content


def read_records(
    t: Template, data: bytes, start: int, end: int, keep: int, walk: int = MAX_WALKED_RECORDS
) -> tuple[int, list[dict[int, bytes]], bool]:
    """Count the records of a data set and return the wanted fields of the first ``keep``;
    variable-length records are walked ``walk`` at most (then True: the count is a floor)."""
    rows: list[dict[int, bytes]] = []
    if t.fixed_len is not None:
        if t.fixed_len == 0:
            return 0, rows, False  # records of no bytes: none can be told apart
        count = (end - start) // t.fixed_len
        for i in range(min(count, keep)):
            base = start + i * t.fixed_len
            rows.append({k: data[base + o : base + o + n] for k, o, n in t.offsets})
        return count, rows, False
    count, pos = 0, start
    content = content_end(data, start, end)
    while not is_padding(pos, end, max(t.min_len, 1), content):
        if count >= walk:
            return count, rows, True
        row: dict[int, bytes] = {}
        for key, length in t.fields:
            if length == VARLEN:
                if pos >= end:
                    return count, rows, False
                length, pos = data[pos], pos + 1
                if length == 255:
                    if end - pos < 2:
                        return count, rows, False
                    length, pos = (data[pos] << 8) | data[pos + 1], pos + 2
            if end - pos < length:
                return count, rows, False
            if key in WANTED and len(rows) < keep:
                row[key] = data[pos : pos + length]
            pos += length
        count += 1
        if len(rows) < keep:
            rows.append(row)
    return count, rows, False


def _uint(b: bytes | None) -> int:
    """An unsigned field; wider than unsigned64 is not a number a sender may use (RFC 7011
    6.2 reduced-size encoding only shrinks), so it counts as absent rather than as a number
    of hundreds of digits."""
    return int.from_bytes(b, "big") if b and len(b) <= MAX_UINT_BYTES else 0


def _uint_columns(
    rows: npt.NDArray[np.uint8], places: list[tuple[int, int] | None]
) -> list[npt.NDArray[np.uint64]]:
    """:func:`_uint` of elements at ``places`` (offset, length) in every record (rows of
    fixed-length records), a column each: 0 where one is absent, empty or wider than
    unsigned64."""
    # Every element's bytes gathered at once, right-aligned in eight (zeros before them).
    at, keep = _uint_gather(tuple(places))
    wide = rows.take(at, axis=1)
    wide *= keep
    return list(wide.view(">u8").astype(np.uint64).T)


@functools.lru_cache(maxsize=256)
def _uint_gather(
    places: tuple[tuple[int, int] | None, ...],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
    """For :func:`_uint_columns`: the row byte read into each of the eight bytes of each
    element's number, and 1 where it is one of the element's bytes (0: a leading zero).  One
    pair per template's wanted elements, made when first met."""
    at = np.zeros(len(places) * MAX_UINT_BYTES, dtype=np.intp)
    keep = np.zeros(len(at), dtype=np.uint8)
    for j, place in enumerate(places):
        if place is not None and 0 < place[1] <= MAX_UINT_BYTES:
            o, size = place
            end = (j + 1) * MAX_UINT_BYTES
            at[end - size : end] = np.arange(o, o + size)
            keep[end - size : end] = 1
    at.setflags(write=False)
    keep.setflags(write=False)
    return at, keep


def _addr_column(
    rows: npt.NDArray[np.uint8], at: dict[int, tuple[int, int]], v4: int, v6: int
) -> list[str] | None:
    """:func:`_addr` of every record: one length per template, so the element it reads (or
    None) is the same for all of them."""
    place = at.get(v4)
    if place is not None and place[1] == 4:
        o = place[0]
        return [ipv4_str(*octets) for octets in rows[:, o : o + 4].tolist()]
    place = at.get(v6)
    if place is not None and place[1] == 16:
        raw = rows[:, place[0] : place[0] + 16].tobytes()
        return [ip_str(raw[i : i + 16]) for i in range(0, len(raw), 16)]
    return None


def _addr(row: dict[int, bytes], v4: int, v6: int) -> str | None:
    b = row.get(v4)
    if b is not None and len(b) == 4:
        return ip_str(b)
    b = row.get(v6)
    if b is not None and len(b) == 16:
        return ip_str(b)
    return None


def _section(key: int, data: bytes, row: dict[int, bytes]) -> Carried:
    """A PSAMP packet section as carried bytes, named by what it validates as."""
    if key == IE_FRAME_SECTION and ethernet_valid(data):
        return Carried("ethernet", data, orig_len=_uint(row.get(IE_FRAME_SIZE)) or None)
    if key == IE_IP_HEADER_SECTION and (ipv4_valid(data) or ipv6_valid(data)):
        return Carried("ip", data, orig_len=_uint(row.get(IE_IP_TOTAL_LEN)) or None)
    return Carried("raw", data)


@dataclass(slots=True)
class SetWalk:
    """What the sets of one v9/IPFIX message held, gathered for ``Decoded``."""

    records: list[RecordedFlow] = field(default_factory=list)
    carried: list[Carried] = field(default_factory=list)
    template_ids: list[int] = field(default_factory=list)
    options_template_ids: list[int] = field(default_factory=list)
    withdrawn_template_ids: list[int] = field(default_factory=list)
    data_set_ids: list[int] = field(default_factory=list)
    missing_template_ids: list[int] = field(default_factory=list)
    template_records: int = 0
    malformed_templates: int = 0
    data_records: int = 0
    options_records: int = 0
    sampling_interval: int = 0
    psamp_sections: int = 0
    # Bounds: templates with more fields than the budget allows (the rest of their set is
    # skipped), templates the budget refused, data sets whose records were not all walked.
    oversized_templates: int = 0
    templates_shed: int = 0
    sets_not_walked: int = 0
    walk_left: int = MAX_WALKED_RECORDS

    def too_many_fields(self, cache: TemplateCache, count: int) -> bool:
        """A template record declaring more fields than kept: nothing after it in its set is
        read (walking it would cost what the budget is there to bound)."""
        if count <= cache.max_fields:
            return False
        self.oversized_templates += 1
        return True

    def add_template(self, cache: TemplateCache, domain: int, t: Template) -> None:
        if not cache.put(domain, t):
            self.templates_shed += 1
        self.template_records += 1
        (self.options_template_ids if t.scope_count else self.template_ids).append(t.tid)

    def template_set(
        self, cache: TemplateCache, domain: int, data: bytes, s: int, e: int, enterprise: bool
    ) -> None:
        """v9 flowset 0 / IPFIX set 2: (template id, field count, fields) records.

        ``enterprise`` selects IPFIX encoding: enterprise-bit fields and withdrawals (count 0)."""
        pos = s
        content = content_end(data, s, e)
        while not is_padding(pos, e, 4, content):
            tid, count = _SET_HDR.unpack_from(data, pos)
            pos += 4
            if enterprise and count == 0:
                self.withdraw(cache, domain, tid)
                continue
            if self.too_many_fields(cache, count):
                return
            parsed = parse_fields(data, pos, e, count, enterprise) if tid >= 256 else None
            if parsed is None or count == 0:
                # Nothing after a broken record can be trusted; the set chain itself was valid.
                self.malformed_templates += 1
                return
            fields, pos = parsed
            self.add_template(cache, domain, make_template(tid, fields))

    def withdraw(self, cache: TemplateCache, domain: int, tid: int) -> None:
        # Template id 2 or 3 in a withdrawal means every template of the domain (RFC 7011 8.1).
        cache.withdraw(domain, tid if tid >= 256 else None)
        self.withdrawn_template_ids.append(tid)

    def data_set(
        self, cache: TemplateCache, domain: int, sid: int, data: bytes, s: int, e: int
    ) -> None:
        self.data_set_ids.append(sid)
        t = cache.get(domain, sid)
        if t is None:
            self.missing_template_ids.append(sid)
            return
        keep = max(0, MAX_RECORDS - len(self.records) - len(self.carried))
        if t.fixed_len and not t.sections:
            # Records of one length and no packet sections: counted by arithmetic and read as
            # columns, not one dict per record.
            count = (e - s) // t.fixed_len
            self._absorb_columns(t, data, s, min(count, keep))
        else:
            count, rows, cut = read_records(t, data, s, e, keep, self.walk_left)
            self.sets_not_walked += cut
            for row in rows:
                self._absorb(row)
        self.walk_left = max(0, self.walk_left - count)
        if t.scope_count:
            self.options_records += count
        else:
            self.data_records += count

    def _absorb_columns(self, t: Template, data: bytes, start: int, n: int) -> None:
        """What ``_absorb`` takes from each of ``n`` fixed-length records from ``start``, read
        a column per wanted element."""
        if n <= 0:
            return
        rows = np.frombuffer(data, np.uint8, n * (t.fixed_len or 0), start).reshape(n, -1)
        # A duplicated element is read from its last place, as a row's dict keeps it.
        at = {k: (o, size) for k, o, size in t.offsets}

        if not self.sampling_interval and not at.keys().isdisjoint(SAMPLING_ELEMENTS):
            counted, at_random, pkt_int, space = _uint_columns(
                rows, [at.get(k) for k in SAMPLING_KEYS]
            )
            interval = np.where(counted != 0, counted, at_random)
            # The first record that says something sets it (as ``_absorb`` reads them in turn).
            first = np.flatnonzero((interval != 0) | (pkt_int != 0))
            if len(first):
                i = int(first[0])
                self.sampling_interval = int(interval[i]) or (
                    (int(pkt_int[i]) + int(space[i])) // int(pkt_int[i])
                )
        src = _addr_column(rows, at, IE_SRC4, IE_SRC6)
        dst = _addr_column(rows, at, IE_DST4, IE_DST6)
        if src is None or dst is None:
            return
        proto, sport, dport, packets, all_packets, octets, all_octets = _uint_columns(
            rows, [at.get(k) for k in RECORD_KEYS]
        )
        packets = np.where(packets != 0, packets, all_packets)
        octets = np.where(octets != 0, octets, all_octets)
        self.records.extend(
            map(
                RecordedFlow,
                src,
                dst,
                proto.tolist(),
                sport.tolist(),
                dport.tolist(),
                packets.tolist(),
                octets.tolist(),
            )
        )

    def _absorb(self, row: dict[int, bytes]) -> None:
        if not self.sampling_interval:
            interval = _uint(row.get(IE_SAMPLING_INTERVAL)) or _uint(
                row.get(IE_SAMPLER_RANDOM_INTERVAL)
            )
            pkt_int = _uint(row.get(IE_PKT_INTERVAL))
            if not interval and pkt_int:
                # Systematic count-based sampling: select `interval`, skip `space` (RFC 5476).
                interval = (pkt_int + _uint(row.get(IE_PKT_SPACE))) // pkt_int
            self.sampling_interval = interval
        for key in PACKET_SECTIONS:
            section = row.get(key)
            if section:
                self.psamp_sections += 1
                self.carried.append(_section(key, bytes(section), row))
        src, dst = _addr(row, IE_SRC4, IE_SRC6), _addr(row, IE_DST4, IE_DST6)
        if src is None or dst is None:
            return
        self.records.append(
            RecordedFlow(
                src,
                dst,
                proto=_uint(row.get(IE_PROTO)),
                sport=_uint(row.get(IE_SPORT)),
                dport=_uint(row.get(IE_DPORT)),
                packets=_uint(row.get(IE_PACKETS)) or _uint(row.get(IE_PACKETS_TOTAL)),
                bytes=_uint(row.get(IE_OCTETS)) or _uint(row.get(IE_OCTETS_TOTAL)),
            )
        )

    def decoded(
        self,
        protocol: str,
        header: str,
        session: dict[str, int | str],
        facts: dict[str, object],
        header_len: int,
    ) -> Decoded:
        """The message as ``Decoded``: the caller's header facts, then what the sets held."""
        return Decoded(
            protocol=protocol,
            kind="flow-export",
            header=header,
            session=session,
            carried=self.carried,
            records=self.records,
            facts={**facts, **self.facts()},
            header_len=header_len,
        )

    def facts(self) -> dict[str, object]:
        found: dict[str, object] = {
            "template_ids": self.template_ids,
            "options_template_ids": self.options_template_ids,
            "data_set_ids": sorted(set(self.data_set_ids)),
            "data_records": self.data_records,
            "options_records": self.options_records,
            # A data set without a known template holds at least one record.
            "records_without_template": len(self.missing_template_ids),
            "missing_template_ids": sorted(set(self.missing_template_ids)),
        }
        if self.withdrawn_template_ids:
            found["withdrawn_template_ids"] = self.withdrawn_template_ids
        if self.malformed_templates:
            found["malformed_templates"] = self.malformed_templates
        if self.oversized_templates:
            found["oversized_templates"] = self.oversized_templates
        if self.templates_shed:
            found["templates_shed"] = self.templates_shed
        if self.sets_not_walked:
            found["data_sets_not_walked"] = self.sets_not_walked
        if self.sampling_interval:
            found["sampling_interval"] = self.sampling_interval
        if self.psamp_sections:
            found["packet_sections"] = self.psamp_sections
        return found


# Parses one options template set into the walk: (walk, cache, domain, data, start, end).
OptionsParser = Callable[[SetWalk, TemplateCache, int, bytes, int, int], None]


def walk_message(
    data: bytes,
    start: int,
    end: int,
    control: tuple[int, int],
    options: OptionsParser,
    state: object | None,
    domain: int,
) -> tuple[int, SetWalk] | None:
    """Chain the sets of a v9/IPFIX message, then read them in order (templates may follow
    the data that uses them).  ``control`` is (template set id, options template set id); IPFIX
    ids (2, 3) also select IPFIX field encoding.  Returns (number of sets, walk) or None."""
    template_id, options_id = control
    sets = chain_sets(data, start, frozenset(control), end)
    if sets is None:
        return None
    cache = cache_of(state)
    walk = SetWalk()
    for sid, s, e in sets:
        if sid == template_id:
            walk.template_set(cache, domain, data, s, e, enterprise=template_id == 2)
        elif sid == options_id:
            options(walk, cache, domain, data, s, e)
        else:
            walk.data_set(cache, domain, sid, data, s, e)
    return len(sets), walk


class TemplateExportDecoder(Decoder):
    """Base of the NetFlow v9 and IPFIX decoders: UDP exports whose stream state is templates."""

    kind: ClassVar[Kind] = "flow-export"
    transport: ClassVar[Transport] = "udp"

    def new_state(self) -> object | None:
        return TemplateCache()
