"""Which payload rows each format's prefilter is given.

Most formats can begin with only a few byte values (a version, a flags byte, a message type, a
BER tag and length), and some are looked for on their own ports only.  Each UDP/TCP decoder
declares what its first two payload bytes may be (``first_bytes`` and ``second_bytes``, beside
its prefilter); from those facts and the packet's ports this module gives each prefilter only
the rows it could accept, so a payload of random bytes costs a handful of prefilters instead of
all of them, and a batch with no row a format could accept costs that format nothing.  The rows a
prefilter is not given are rows its ``decode`` rejects.

One table lookup per batch does the routing: the first two bytes index a table of 65,536 words
whose bits say which routes (decoders sharing the same declarations) may take them, and for the
formats looked for on their own ports, two lookups by port clear the bits of the others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from detector.decode import headers
from detector.flows.groups import distinct
from detector.protocols.base import PREFILTER_BYTES, Decoder

PORTS = 1 << 16
LEADS = 1 << 16  # values of the first two payload bytes, read as one big-endian number
# A column of 16-bit values (payload leads, ports), and each route's rows (PrefilterRoute.grouped).
Column = npt.NDArray[np.int64]
Grouped = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], list[int]]
# Routes per table word (a transport with more routes gets more words).
WORD_BITS = 64


def byte_values(mask: int, value: int) -> frozenset[int]:
    """Byte values ``b`` with ``b & mask == value`` (a declaration helper)."""
    return frozenset(b for b in range(256) if b & mask == value)


def _byte_table(values: Iterable[int] | None) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=np.bool_)
    if values is None:
        table[:] = True
    else:
        table[list(values)] = True
    return table


@dataclass(frozen=True)
class _Facts:
    """What routes a decoder: its first two bytes, and its own ports if it needs them."""

    firsts: frozenset[int] | None
    seconds: frozenset[int] | None
    only_on: frozenset[int] | None

    @classmethod
    def of(cls, d: Decoder) -> _Facts:
        # Formats with no content signature (ESP in UDP, OpenVPN, MPLS in UDP) are looked for
        # on their own ports only.
        only_on = frozenset(p for p in d.ports if 0 <= p < PORTS) if d.ports_required else None
        return cls(d.first_bytes, d.second_bytes, only_on)

    @property
    def every_row(self) -> bool:
        return self.firsts is None and self.seconds is None and self.only_on is None


class PrefilterRoute:
    """Runs the prefilters of one transport's decoders, each on the rows it could accept."""

    def __init__(self, decoders: Sequence[Decoder]) -> None:
        self.decoders = tuple(decoders)
        # Decoders declaring the same facts share one route (one row selection).
        routes: dict[_Facts, list[int]] = {}
        for i, d in enumerate(self.decoders):
            routes.setdefault(_Facts.of(d), []).append(i)
        # Routes that take every row need no bit; the others get one each.
        self.everywhere = [members for facts, members in routes.items() if facts.every_row]
        picky = [(facts, members) for facts, members in routes.items() if not facts.every_row]
        self.words = max(1, -(-len(picky) // WORD_BITS))
        self.leads = np.zeros((self.words, LEADS), dtype=np.uint64)
        ports = np.zeros((self.words, PORTS), dtype=np.uint64)
        self.port_free = np.zeros(self.words, dtype=np.uint64)
        self.routes: list[tuple[int, np.uint64, list[int]]] = []
        # Each word's table as (first byte, second byte): a route's bit is set in the rows of
        # its first bytes, at its second bytes.
        by_bytes = self.leads.reshape(self.words, 256, 256)
        for n, (facts, members) in enumerate(picky):
            word, bit = divmod(n, WORD_BITS)
            flag = np.uint64(1 << bit)
            seconds = np.where(_byte_table(facts.seconds), flag, np.uint64(0))
            by_bytes[word, np.flatnonzero(_byte_table(facts.firsts))] |= seconds[None, :]
            if facts.only_on is None:
                self.port_free[word] |= flag
            else:
                ports[word, sorted(facts.only_on)] |= flag
            self.routes.append((word, flag, members))
        # No port table at all when no format needs its ports (the lookups are skipped).
        needs_ports = any(facts.only_on is not None for facts, _ in picky)
        self.ports = ports if needs_ports else None

    def masks(
        self,
        head: npt.NDArray[np.uint8],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> list[npt.NDArray[np.bool_]]:
        """One mask per decoder (in order): the rows its prefilter passes, among those routed
        to it."""
        none = np.zeros(len(head), dtype=np.bool_)
        none.flags.writeable = False  # shared by every decoder given no row
        out: list[npt.NDArray[np.bool_]] = [none] * len(self.decoders)
        heads = functools.partial(head.take, axis=0)
        for i, rows in self._passed(_leads_of(head), length, sport, dport, heads):
            out[i] = np.zeros(len(head), dtype=np.bool_)
            out[i][rows] = True
        return out

    def hits(
        self,
        head: npt.NDArray[np.uint8],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.intp], list[list[Decoder]]]:
        """The rows some prefilter passes, in order, each with the decoders that passed it."""
        heads = functools.partial(head.take, axis=0)
        return self.hits_by_lead(_leads_of(head), length, sport, dport, heads)

    def hits_by_lead(
        self,
        lead: npt.NDArray[np.intp] | None,
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
        heads: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.uint8]],
    ) -> tuple[npt.NDArray[np.intp], list[list[Decoder]]]:
        """As ``hits``, from the rows' first two bytes (``payload_leads``): the payload windows
        are asked of ``heads`` (rows -> windows) only for rows some prefilter is given.  Without
        ``lead`` (a route with prefilters that take every row, which need every window) it is
        read from the windows."""
        return _by_row(self.decoders, self._passed(lead, length, sport, dport, heads))

    def hits_in_numpy(
        self,
        data: npt.NDArray[np.uint8],
        starts: npt.NDArray[np.int64],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.intp], list[list[Decoder]]]:
        """As ``hits``, each row's payload window read from ``data`` at ``starts``."""
        return self.hits(payload_windows_numpy(data, starts, length), length, sport, dport)

    def hits_in_compiled(
        self,
        data: npt.NDArray[np.uint8],
        starts: npt.NDArray[np.int64],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.intp], list[list[Decoder]]]:
        """:meth:`hits_in_numpy` from one compiled pass that routes the rows and writes each
        route's windows one route after the other (:meth:`_passed_compiled`)."""
        return _by_row(self.decoders, self._passed_compiled(data, starts, length, sport, dport))

    # The form the engine uses: compiled where built, unless MIRRORWATCH_PURE_PYTHON=1.
    hits_in = hits_in_compiled if headers.use_compiled else hits_in_numpy

    def _passed_compiled(
        self,
        data: npt.NDArray[np.uint8],
        starts: npt.NDArray[np.int64],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
        """:meth:`_passed` from one compiled pass: each route's rows, windows and lengths come
        one route after the other, each route's a slice (no gathered copy per route)."""
        assert headers.OUTER is not None, "the compiled header decode is not built"
        n = len(length)
        if not n:
            return
        column = np.ascontiguousarray
        # Every row's window where some prefilter takes every row.
        head = np.empty((n, PREFILTER_BYTES), dtype=np.uint8) if self.everywhere else None
        cuts = np.empty(len(self.routes) + 1, dtype=np.int64)
        ids, windows, lengths = headers.OUTER.route_windows(
            data, column(starts, dtype=np.int64), column(length, dtype=np.int64),
            column(sport, dtype=np.int64), column(dport, dtype=np.int64), self.leads,
            self.ports, self.port_free, len(self.routes), PREFILTER_BYTES, head, cuts,
        )  # fmt: skip
        if head is not None:
            for members in self.everywhere:
                for i in members:
                    mask = self.decoders[i].prefilter(head, length)
                    if mask.any():
                        yield i, np.flatnonzero(mask)
        rows = np.frombuffer(ids, dtype=np.intp)
        lengths = np.frombuffer(lengths, dtype=np.int64)
        if windows is not None:
            windows = np.frombuffer(windows, dtype=np.uint8).reshape(-1, PREFILTER_BYTES)
        at = cuts.tolist()
        for (_, _, members), start, end in zip(self.routes, at, at[1:], strict=False):
            if start == end:
                continue
            sub_length = lengths[start:end]
            if windows is None:  # rows that many routes take: windows gathered from heads
                assert head is not None
                sub_head = head[rows[start:end]]
            else:
                sub_head = windows[start:end]
            for i in members:
                passed = self.decoders[i].prefilter(sub_head, sub_length)
                if passed.any():
                    yield i, rows[start:end][passed]

    def _passed(
        self,
        lead: npt.NDArray[np.intp] | None,
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
        heads: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.uint8]],
    ) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
        """(decoder index, the rows its prefilter passes, ascending) for each decoder whose
        prefilter passes some row."""
        n = len(length)
        if not n:
            return
        head = None
        if lead is None or self.everywhere:
            head = heads(np.arange(n))
            lead = _leads_of(head)
        given, placed, cuts = self.grouped(lead, sport, dport, every_row=head is not None)
        if head is None:
            # Only rows some route may take need their payload window.
            if not len(given):
                return
            head, length = heads(given), length[given]
        for members in self.everywhere:
            for i in members:
                mask = self.decoders[i].prefilter(head, length)
                if mask.any():
                    yield i, given[mask]
        for (_, _, members), start, end in zip(self.routes, cuts, cuts[1:], strict=False):
            if start == end:
                continue
            at = placed[start:end]
            sub_head, sub_length = head[at], length[at]
            for i in members:
                passed = self.decoders[i].prefilter(sub_head, sub_length)
                if passed.any():
                    yield i, given[at[passed]]

    def grouped(self, lead: Column, sport: Column, dport: Column, every_row: bool) -> Grouped:
        """The rows some route may take (every row with ``every_row``), in order; each route's
        rows as places among those, route after route; where each route's places begin (one
        more for the end).  One table lookup per word, then one selection per route."""
        bits = [self._bits(w, lead, sport, dport) for w in range(self.words)]
        if every_row:
            given = np.arange(len(lead))
        else:
            some = bits[0] != 0
            for b in bits[1:]:
                some |= b != 0
            given = np.flatnonzero(some)
            bits = [b[given] for b in bits]
        present = [np.bitwise_or.reduce(b) if len(b) else np.uint64(0) for b in bits]
        places, cuts = [np.zeros(0, dtype=np.intp)], [0]
        for word, flag, _ in self.routes:
            at = np.flatnonzero(bits[word] & flag) if present[word] & flag else places[0]
            places.append(at)
            cuts.append(cuts[-1] + len(at))
        return given, np.concatenate(places), cuts

    def _bits(
        self,
        word: int,
        lead: npt.NDArray[np.intp],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.uint64]:
        """Per row, the routes of one table word that may take it."""
        bits = np.take(self.leads[word], lead)
        if self.ports is not None:
            table = self.ports[word]
            bits &= self.port_free[word] | np.take(table, sport) | np.take(table, dport)
        return bits


def _by_row(
    decoders: Sequence[Decoder], found: Iterable[tuple[int, npt.NDArray[np.intp]]]
) -> tuple[npt.NDArray[np.intp], list[list[Decoder]]]:
    """The rows some prefilter passed (``found``: decoder index, its rows), ascending, each
    with the decoders that passed it, in the decoders' order."""
    passed = sorted(found, key=lambda p: p[0])
    if not passed:
        return np.zeros(0, dtype=np.intp), []
    rows = distinct(np.concatenate([r for _, r in passed]))
    by_row: list[list[Decoder]] = [[] for _ in range(len(rows))]
    # Decoders in order, so each row's list keeps the decoders' order.
    for i, passing in passed:
        d = decoders[i]
        for j in np.searchsorted(rows, passing).tolist():
            by_row[j].append(d)
    return rows, by_row


def payload_windows_numpy(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint8]:
    """(len(starts), PREFILTER_BYTES) payload windows: the bytes of ``data`` from each start on,
    zero from the payload's ``length`` on, past the data's end, or all of it for a negative
    start (what the compiled windows hold)."""
    head = headers.gather(data, np.maximum(starts, 0), PREFILTER_BYTES)
    keep = np.where(starts < 0, 0, np.minimum(length, PREFILTER_BYTES))
    head[np.arange(PREFILTER_BYTES)[None, :] >= keep[:, None]] = 0
    return head


def _leads_of(head: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """The first two bytes of each payload window as one big-endian number."""
    if not len(head):
        return np.zeros(0, dtype=np.intp)
    return (head[:, 0].astype(np.intp) << 8) | head[:, 1]


def payload_leads(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """The first two payload bytes of each row (payloads at ``starts`` in ``data``) as one
    big-endian number, as ``payload_heads`` windows read them: 0 past the payload's end or the
    data's (or for a negative start).  The 16-bit column that routes a row."""
    end = len(data)
    if not end:
        return np.zeros(len(starts), dtype=np.intp)
    inside = (starts >= 0) & (starts < end)
    first = np.where(inside & (length >= 1), data.take(np.clip(starts, 0, end - 1)), 0)
    second = np.where(
        inside & (length >= 2) & (starts + 1 < end), data.take(np.clip(starts + 1, 0, end - 1)), 0
    )
    return (first.astype(np.intp) << 8) | second


@cache
def route_for(decoders: tuple[Decoder, ...]) -> PrefilterRoute:
    """The route of one transport's decoders, built once."""
    return PrefilterRoute(decoders)
