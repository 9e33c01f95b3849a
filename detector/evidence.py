"""Evidence gathered for one outer stream (one direction of one outer flow).

The engine feeds every decoded packet of a stream here; nothing in this module decides severity.
It keeps what a network engineer would check: how many packets validated, the session ids, the
inner conversations and in which directions they were seen, the hosts inside, and what flowed
back.  Memory per stream is bounded (host and conversation tables are capped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detector.decode.frames import CHECKSUM_NONE, InnerPacket, parse_carried
from detector.protocols.base import Carried, Decoded, Kind, PacketContext, RecordedFlow

K = TypeVar("K")
N = TypeVar("N", int, float)

MAX_HOSTS = 4096
MAX_CONVERSATIONS = 8192
MAX_FACT_VALUES = 32
# Per-packet facts (sequence numbers, versions...) are summarised from this many packets.
MAX_FACT_PACKETS = 512
# Packets kept per stream for evidence captures (outer packets and the frames they carried).
MAX_SAMPLES = 200
# Tunnels (often many, one per peer) and flow exports keep fewer: their packets are not copies.
SAMPLES_BY_KIND = {"mirror": MAX_SAMPLES, "intercept": MAX_SAMPLES, "flow-export": 50, "tunnel": 16}
MAX_TIMELINE = 86400
COUNTER_MAX = 1 << 53
# Facts are shown as decoded up to here; a larger number (a damaged or hostile field) is shown
# as the start of its hex digits, a long string cut: str() of a huge int raises, and either
# would fill the report.
FACT_NUMBER_MAX = 1 << 64
FACT_TEXT_MAX = 256


# Counters that add up when two records of a stream are folded together.
ADDITIVE = (
    "packets", "bytes", "decoded", "validated", "fragments", "carried_packets",
    "carried_unparsed", "inner_is_outer", "records", "return_packets",
    "strength_sum", "return_bytes",
)  # fmt: skip
SUMMED_EXTRA = frozenset({"copies_checked", "copies_matched", "samples_shed", "streams_folded"})


def _first(x: tuple[float, object, object]) -> float:
    return x[0]


def _add_tallies(into: dict[str, HostTally], table: dict[str, HostTally]) -> None:
    """Add one host table to another (bounded like the tables themselves)."""
    for name, t in table.items():
        acc = into.get(name)
        if acc is None:
            if len(into) >= MAX_HOSTS:
                continue
            acc = into[name] = HostTally(mac=t.mac, named_by_mac=t.named_by_mac)
        acc.packets += t.packets
        acc.bytes += t.bytes


def _add_counts(into: dict[K, N], other: dict[K, N]) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


# Bookkeeping charged per kept sample on top of its bytes (the tuple, the bytes object).
SAMPLE_OVERHEAD = 120


class SampleBudget:
    """Bytes of evidence samples kept by every stream of one engine, against one budget."""

    __slots__ = ("shed", "total", "used")

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.shed = 0  # samples not kept because the budget was spent

    def take(self, n: int) -> bool:
        if self.used + n + SAMPLE_OVERHEAD > self.total:
            self.shed += 1
            return False
        self.used += n + SAMPLE_OVERHEAD
        return True


def fact_text(x: object) -> str:
    """A decoded fact as text, bounded in length whatever the wire said."""
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= FACT_NUMBER_MAX:
        digits = f"{abs(x):x}"
        return f"{'-' if x < 0 else ''}0x{digits[:16]}… ({len(digits) * 4} bits)"
    s = str(x)
    return s if len(s) <= FACT_TEXT_MAX else s[:FACT_TEXT_MAX] + "…"


@dataclass(repr=False, eq=False)
class HostTally:
    """Traffic of one host seen inside a stream's copies."""

    packets: float = 0.0
    bytes: float = 0.0
    mac: str | None = None
    # The host is keyed by its MAC (a carried frame without IP), not by an IP address.
    named_by_mac: bool = False


# A host table as columns: names, packets, bytes, MACs, keyed-by-MAC flags.
TallyColumns = tuple[list[str], list[float], list[float], list[str | None], list[bool]]


def _tally_columns(table: dict[str, HostTally]) -> TallyColumns:
    tallies = table.values()
    return (
        list(table),
        [t.packets for t in tallies],
        [t.bytes for t in tallies],
        [t.mac for t in tallies],
        [t.named_by_mac for t in tallies],
    )


def _tallies(columns: TallyColumns) -> dict[str, HostTally]:
    names, *rest = columns
    return {name: HostTally(*row) for name, row in zip(names, zip(*rest, strict=True), strict=True)}


@dataclass(repr=False, eq=False)
class StreamEvidence:
    """Everything known about one stream; folded into a Finding by the policy."""

    key: int  # directed outer flow key
    flow_key: int  # direction-free outer flow key (to look up return traffic)
    direction: int
    protocol: str
    kind: Kind
    transport: str
    src: str
    dst: str
    sport: int
    dport: int
    src_mac: str | None = None
    dst_mac: str | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    packets: int = 0  # every outer packet of the stream (counted vectorised)
    bytes: int = 0
    decoded: int = 0  # packets given to the decoder
    validated: int = 0  # ... that validated as ``protocol``
    # Mean match strength of the validated packets (a stream is judged by all of its packets,
    # not by its best one), and the sum it is kept from.
    strength: float = 1.0
    strength_sum: float = 0.0
    header_example: str = ""
    fragments: int = 0
    sessions: dict[str, Counter[int | str]] = field(default_factory=dict)
    facts: dict[str, Counter[str]] = field(default_factory=dict)
    fact_min: dict[str, float] = field(default_factory=dict)
    fact_max: dict[str, float] = field(default_factory=dict)
    hosts: dict[str, HostTally] = field(default_factory=dict)
    carried_packets: float = 0.0
    carried_unparsed: int = 0
    inner_links: Counter[str] = field(default_factory=Counter)
    # Carried header facts: ipv4_checksum_right/zero/wrong, group_source_mac (packets).
    carried_checks: Counter[str] = field(default_factory=Counter)
    # Decoded packets that did not validate, by the decoder's reason code.
    rejects: Counter[str] = field(default_factory=Counter)
    # Inner conversation (sorted endpoint pair + proto) → bit 1: seen a→b, bit 2: seen b→a.
    conversations: dict[tuple[str, str, int], int] = field(default_factory=dict)
    conversation_packets: dict[tuple[str, str, int], float] = field(default_factory=dict)
    inner_is_outer: int = 0  # carried packets whose addresses are the outer endpoints
    records: int = 0
    record_hosts: dict[str, HostTally] = field(default_factory=dict)
    # Evidence captures: (time, link type, outer frame) and (time, inner link, carried bytes).
    outer_samples: list[tuple[float, int, bytes]] = field(default_factory=list)
    inner_samples: list[tuple[float, str, bytes]] = field(default_factory=list)
    # Packets per second of capture time (for the report's timeline), bounded.
    timeline: dict[int, int] = field(default_factory=dict)
    # Samples kept: at most ``max_samples`` of each kind (below the kind's own limit), bytes
    # charged to the engine's budget when one is given.
    max_samples: int = MAX_SAMPLES
    # Filled by the engine at the end.
    return_packets: int = 0
    return_bytes: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    # Seconds per cell of ``timeline`` (it grows when the stream's cells pass their budget).
    timeline_step: int = 1

    def __getstate__(self) -> dict[str, object]:
        # The host tables travel as columns: a flow export's thousands of record hosts pickled
        # one object each took a quarter of the time a worker's result takes to pass back.
        state = dict(self.__dict__)
        state["hosts"] = _tally_columns(self.hosts)
        state["record_hosts"] = _tally_columns(self.record_hosts)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state["hosts"] = _tallies(state["hosts"])  # type: ignore[arg-type]
        state["record_hosts"] = _tallies(state["record_hosts"])  # type: ignore[arg-type]
        self.__dict__.update(state)

    @classmethod
    def begun(
        cls,
        at: PacketContext,
        key: int,
        protocol: str,
        kind: Kind,
        transport: str,
        flow_key: int = 0,
        direction: int = 0,
    ) -> StreamEvidence:
        """A stream's evidence before anything is added to it: what it is, and the ends and time
        of the packet that began it (``at``).  Streams found across many packets (aggregates,
        copies found by correlation) have no flow of their own: key 0."""
        return cls(
            key=key, flow_key=flow_key, direction=direction, protocol=protocol, kind=kind,
            transport=transport, src=at.src, dst=at.dst, sport=at.sport, dport=at.dport,
            first_seen=at.ts, last_seen=at.ts,
        )  # fmt: skip

    @property
    def sample_limit(self) -> int:
        return min(self.max_samples, SAMPLES_BY_KIND.get(self.kind, MAX_SAMPLES))

    def keep_outer(
        self, ts: float, link: int, data: bytes, budget: SampleBudget | None = None
    ) -> None:
        if len(self.outer_samples) < self.sample_limit and self._budget(len(data), budget):
            self.outer_samples.append((ts, link, data))

    def _budget(self, n: int, budget: SampleBudget | None) -> bool:
        if budget is None or budget.take(n):
            return True
        self.extra["truncated"] = True
        shed = self.extra.get("samples_shed", 0)
        self.extra["samples_shed"] = (shed if isinstance(shed, int) else 0) + 1
        return False

    def sample_bytes(self) -> int:
        """What this stream's samples cost against the budget."""
        return sum(len(x[2]) + SAMPLE_OVERHEAD for x in (*self.outer_samples, *self.inner_samples))

    def count_seconds(self, seconds: npt.NDArray[np.int64], max_cells: int = MAX_TIMELINE) -> None:
        """Count packets per second of capture time in at most ``max_cells`` cells (two at
        least): past it, the whole timeline is kept at twice the step (2 s, 4 s...), each count
        at the start of its step, so a long stream keeps all its packets at a coarser
        resolution."""
        step = self.timeline_step
        if step > 1:
            seconds = seconds - seconds % step
        secs, counts = np.unique(seconds, return_counts=True)
        self._count_cells(zip(secs.tolist(), counts.tolist(), strict=True), max_cells)

    def count_second(self, second: int, n: int, max_cells: int = MAX_TIMELINE) -> None:
        """``count_seconds`` of ``n`` packets all in ``second``."""
        step = self.timeline_step
        self._count_cells(((second - second % step, n),), max_cells)

    def _count_cells(self, counted: Iterable[tuple[int, int]], max_cells: int) -> None:
        step = self.timeline_step
        tl = self.timeline
        for sec, n in counted:
            tl[sec] = tl.get(sec, 0) + n
        # Never fewer than two cells: seconds before and after 0 never share a cell, however
        # coarse the step, and a bound of one would coarsen them forever.
        while len(tl) > max(2, max_cells):
            step *= 2
            coarse: dict[int, int] = {}
            for sec, n in tl.items():
                at = sec - sec % step
                coarse[at] = coarse.get(at, 0) + n
            self.timeline = tl = coarse
        self.timeline_step = step

    def add(
        self, d: Decoded, weight: float, ts: float = 0.0, budget: SampleBudget | None = None
    ) -> list[tuple[InnerPacket, bytes]]:
        """Count one validated PDU standing for ``weight`` packets; samples are charged to
        ``budget``.  Returns the carried IP packets it parsed, with their bytes (the engine
        matches them to originals)."""
        self.validated += 1
        self.strength_sum += d.strength
        self.strength = self.strength_sum / self.validated
        if not self.header_example:
            self.header_example = d.header
        self._sessions(d.session)
        if self.validated <= MAX_FACT_PACKETS:
            facts, fact_min, fact_max = self.facts, self.fact_min, self.fact_max
            for k, v in d.facts.items():
                if type(v) is not int or not -FACT_NUMBER_MAX < v < FACT_NUMBER_MAX:
                    self._fact(k, v)
                    continue
                # The usual value, a small int, counted here (what _fact_value does with it).
                c = facts.get(k)
                if c is None:
                    c = facts[k] = Counter()
                low = fact_min.get(k)
                if low is None or v < low:
                    fact_min[k] = v
                high = fact_max.get(k)
                if high is None or v > high:
                    fact_max[k] = v
                text = str(v)
                if text in c:
                    c[text] += 1
                elif len(c) < MAX_FACT_VALUES:
                    c[text] = 1
        parsed = []
        for carried in d.carried:
            inner = self._carried(carried, weight, ts, budget)
            if inner is not None and inner.src is not None:
                parsed.append((inner, carried.data))
        self._records(d.records, weight)
        return parsed

    def _sessions(self, session: dict[str, object]) -> None:
        sessions = self.sessions
        for k, v in session.items():
            c = sessions.get(k)
            if c is None:
                c = sessions[k] = Counter()
            if not (isinstance(v, int) and abs(v) < FACT_NUMBER_MAX):
                v = fact_text(v)  # whatever a decoder took from the wire, shown bounded
            if len(c) < MAX_FACT_VALUES or v in c:
                c[v] += 1

    def _carried(
        self, carried: Carried, weight: float, ts: float, budget: SampleBudget | None
    ) -> InnerPacket | None:
        """Count one carried packet; its parsed headers, or None when they cannot be read."""
        self.inner_links[carried.link] += 1
        if len(self.inner_samples) < self.sample_limit and self._budget(len(carried.data), budget):
            self.inner_samples.append((ts, carried.link, carried.data))
        inner = carried.parsed or parse_carried(carried.link, carried.data)
        size = carried.orig_len or len(carried.data)
        self.carried_packets += weight
        if inner is None or (inner.src is None and inner.src_mac is None):
            self.carried_unparsed += 1
            return None
        self._header_facts(inner)
        self._inner(inner, size, weight)
        return inner

    def _records(self, records: list[RecordedFlow], weight: float) -> None:
        if not records:
            return
        hosts = self.record_hosts
        tally = hosts.get
        taken = records[:200]
        self.records += len(taken)
        for r in taken:
            # Counters from a record are taken as sent, within reason (a damaged record can
            # claim anything): min(n, COUNTER_MAX), written out (a call per record costs).
            packets, size = r.packets, r.bytes
            packets = (COUNTER_MAX if packets > COUNTER_MAX else packets) * weight
            size = (COUNTER_MAX if size > COUNTER_MAX else size) * weight
            # Both ends (the same tally twice when they are one host).
            for ip in (r.src, r.dst):
                t = tally(ip)
                if t is None:
                    if len(hosts) >= MAX_HOSTS:
                        continue
                    t = hosts[ip] = HostTally()
                t.packets += packets
                t.bytes += size

    def _header_facts(self, inner: InnerPacket) -> None:
        """Count what the carried headers say of themselves: checksum right, zero or wrong, a
        source MAC with the group bit.  Facts about the copy, never a reason to drop it."""
        if inner.checksum != CHECKSUM_NONE:
            self.carried_checks[f"ipv4_checksum_{inner.checksum}"] += 1
        if inner.group_source_mac:
            self.carried_checks["group_source_mac"] += 1

    def _fact(self, k: str, v: object) -> None:
        """Count a fact other than a small int (those are counted in ``add``)."""
        c = self.facts.get(k)
        if c is None:
            c = self.facts[k] = Counter()
        if isinstance(v, list):
            for x in v[:MAX_FACT_VALUES]:
                self._fact_value(k, c, x)
        else:
            self._fact_value(k, c, v)

    def _fact_value(self, k: str, c: Counter[str], x: object) -> None:
        # The usual values (a short string, a small int) take the short way to what fact_text
        # would make of them.
        if type(x) is str and len(x) <= FACT_TEXT_MAX:
            s = x
        elif type(x) is int and -FACT_NUMBER_MAX < x < FACT_NUMBER_MAX:
            self._range(k, x)
            s = str(x)
        else:
            if isinstance(x, int | float) and not isinstance(x, bool) and abs(x) < FACT_NUMBER_MAX:
                self._range(k, x)
            s = fact_text(x)
        if len(c) < MAX_FACT_VALUES or s in c:
            c[s] += 1

    def _range(self, k: str, x: float) -> None:
        self.fact_min[k] = min(self.fact_min.get(k, x), x)
        self.fact_max[k] = max(self.fact_max.get(k, x), x)

    def _inner(self, inner: InnerPacket, size: int, weight: float) -> None:
        hosts = self.hosts
        for ip, mac in ((inner.src, inner.src_mac), (inner.dst, inner.dst_mac)):
            name = ip or mac
            if name is None:
                continue
            t = hosts.get(name)
            if t is None:
                if len(hosts) >= MAX_HOSTS:
                    continue
                t = hosts[name] = HostTally(mac=mac, named_by_mac=ip is None)
            t.packets += weight
            t.bytes += size * weight
            if mac and not t.mac:
                t.mac = mac
        src, dst = inner.src, inner.dst
        if src and dst:
            outer = (self.src, self.dst)
            if src in outer or dst in outer:
                self.inner_is_outer += 1
            a = (src, inner.sport)
            b = (dst, inner.dport)
            forward = a <= b
            lo, hi = (a, b) if forward else (b, a)
            conv = (f"{lo[0]}:{lo[1]}", f"{hi[0]}:{hi[1]}", inner.proto)
            prev = self.conversations.get(conv)
            if prev is None:
                if len(self.conversations) >= MAX_CONVERSATIONS:
                    return
                prev = 0
            self.conversations[conv] = prev | (1 if forward else 2)
            packets = self.conversation_packets
            packets[conv] = packets.get(conv, 0.0) + weight

    def absorb(self, o: StreamEvidence) -> None:
        """Fold in another record of the same stream (a later part of the capture, read by
        another worker) or of another stream of the same finding."""
        self.first_seen = min(self.first_seen, o.first_seen)
        self.last_seen = max(self.last_seen, o.last_seen)
        for name in ADDITIVE:
            setattr(self, name, getattr(self, name) + getattr(o, name))
        if self.validated and self.strength_sum:
            self.strength = self.strength_sum / self.validated
        self.header_example = self.header_example or o.header_example
        self.src_mac = self.src_mac or o.src_mac
        self.dst_mac = self.dst_mac or o.dst_mac
        self.inner_links.update(o.inner_links)
        self.carried_checks.update(o.carried_checks)
        self.rejects.update(o.rejects)
        self._absorb_facts(o)
        _add_tallies(self.hosts, o.hosts)
        _add_tallies(self.record_hosts, o.record_hosts)
        for conv, bits in o.conversations.items():
            self.conversations[conv] = self.conversations.get(conv, 0) | bits
        _add_counts(self.conversation_packets, o.conversation_packets)
        _add_counts(self.timeline, o.timeline)
        self.timeline_step = max(self.timeline_step, o.timeline_step)
        self._absorb_extra(o.extra)
        self.outer_samples = sorted([*self.outer_samples, *o.outer_samples], key=_first)[
            :MAX_SAMPLES
        ]
        self.inner_samples = sorted([*self.inner_samples, *o.inner_samples], key=_first)[
            :MAX_SAMPLES
        ]

    def _absorb_facts(self, o: StreamEvidence) -> None:
        for k, c in o.sessions.items():
            self.sessions.setdefault(k, Counter()).update(c)
        for k, c in o.facts.items():
            self.facts.setdefault(k, Counter()).update(c)
        for k, v in o.fact_min.items():
            self.fact_min[k] = min(self.fact_min.get(k, v), v)
        for k, v in o.fact_max.items():
            self.fact_max[k] = max(self.fact_max.get(k, v), v)

    def _absorb_extra(self, extra: dict[str, object]) -> None:
        for k, v in extra.items():
            if k in SUMMED_EXTRA and isinstance(v, int):
                prev = self.extra.get(k, 0)
                self.extra[k] = (prev if isinstance(prev, int) else 0) + v
            else:
                self.extra.setdefault(k, v)

    def session_values(self) -> dict[str, int | str]:
        """The most common value of each session field (several values are listed in facts)."""
        return {k: c.most_common(1)[0][0] for k, c in self.sessions.items() if c}

    def best_cover(
        self, k: int, eligible: Callable[[str], bool] = lambda _h: True
    ) -> tuple[list[str], float]:
        """The (at most k) eligible hosts that take part in the largest share of the carried
        packets, chosen greedily, and that share."""
        convs = [
            (a.rsplit(":", 1)[0], b.rsplit(":", 1)[0], n)
            for (a, b, _p), n in self.conversation_packets.items()
        ]
        total = sum(n for _, _, n in convs)
        if not total:
            return [], 0.0
        chosen: list[str] = []
        covered = 0.0
        for _ in range(k):
            gain: dict[str, float] = {}
            for a, b, n in convs:
                if a in chosen or b in chosen:
                    continue
                if eligible(a):
                    gain[a] = gain.get(a, 0.0) + n
                if b != a and eligible(b):
                    gain[b] = gain.get(b, 0.0) + n
            if not gain:
                break
            host = max(gain, key=lambda h: (gain[h], h))
            chosen.append(host)
            covered += gain[host]
        return chosen, covered / total

    def both_way_conversations(self) -> tuple[int, int]:
        """(conversations seen in both directions inside this stream, all conversations)."""
        both = sum(1 for v in self.conversations.values() if v == 3)
        return both, len(self.conversations)
