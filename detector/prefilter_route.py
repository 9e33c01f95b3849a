"""Which payload rows each format's prefilter is given.

Most formats can begin with only a few byte values (a version, a flags byte, a BER tag), and some
are looked for on their own ports only.  Each UDP/TCP decoder declares what its first payload
byte may be (``first_bytes``, beside its prefilter); from those facts and the packet's ports this
module gives each prefilter only the rows it could accept, so a payload of random bytes costs a
handful of prefilters instead of all of them.  The rows a prefilter is not given are rows its
``decode`` rejects: the masks are those of running every prefilter on every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import numpy.typing as npt

from detector.protocols.base import Decoder

PORTS = 1 << 16


def byte_values(mask: int, value: int) -> frozenset[int]:
    """First-byte values ``b`` with ``b & mask == value`` (a declaration helper)."""
    return frozenset(b for b in range(256) if b & mask == value)


def _byte_table(values: Iterable[int]) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=np.bool_)
    table[list(values)] = True
    return table


def _port_table(ports: Iterable[int]) -> npt.NDArray[np.bool_]:
    table = np.zeros(PORTS, dtype=np.bool_)
    table[[p for p in ports if 0 <= p < PORTS]] = True
    return table


class _Route:
    """One decoder's share of the rows: its first bytes, and its ports if it needs them."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        # Formats with no content signature (ESP in UDP, OpenVPN, MPLS in UDP) are looked for
        # on their own ports only.
        self.only_on = _port_table(decoder.ports) if decoder.ports_required else None

    def port_rows(
        self, sport: npt.NDArray[np.int64], dport: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_] | None:
        """Rows whose ports let this decoder have them; None for every row."""
        if self.only_on is None:
            return None
        return self.only_on[dport] | self.only_on[sport]


class PrefilterRoute:
    """Runs the prefilters of one transport's decoders, each on the rows it could accept."""

    def __init__(self, decoders: Sequence[Decoder]) -> None:
        self.decoders = tuple(decoders)
        self.routes = [_Route(d) for d in self.decoders]
        # Decoders sharing a first-byte set share one row selection.
        groups: dict[frozenset[int] | None, list[int]] = {}
        for i, d in enumerate(self.decoders):
            firsts = d.first_bytes
            groups.setdefault(None if firsts is None else frozenset(firsts), []).append(i)
        self.groups = [
            (None if firsts is None else _byte_table(firsts), members)
            for firsts, members in groups.items()
        ]

    def masks(
        self,
        head: npt.NDArray[np.uint8],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> list[npt.NDArray[np.bool_]]:
        """One mask per decoder (in order): the rows its prefilter passes, among those routed
        to it."""
        n = len(head)
        none = np.zeros(n, dtype=np.bool_)
        none.flags.writeable = False  # shared by every decoder given no row
        out: list[npt.NDArray[np.bool_]] = [none] * len(self.decoders)
        first = np.ascontiguousarray(head[:, 0])
        for table, members in self.groups:
            rows = None if table is None else np.flatnonzero(np.take(table, first))
            if rows is not None and not len(rows):
                continue
            for i in members:
                out[i] = self._one(i, rows, head, length, sport, dport)
        return out

    def _one(
        self,
        i: int,
        rows: npt.NDArray[np.intp] | None,
        head: npt.NDArray[np.uint8],
        length: npt.NDArray[np.int64],
        sport: npt.NDArray[np.int64],
        dport: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        route = self.routes[i]
        on_port = route.port_rows(
            sport if rows is None else sport[rows], dport if rows is None else dport[rows]
        )
        if on_port is not None:
            if not on_port.any():
                return np.zeros(len(head), dtype=np.bool_)
            if not on_port.all():
                rows = np.nonzero(on_port)[0] if rows is None else rows[on_port]
        if rows is None:
            return route.decoder.prefilter(head, length)
        mask = np.zeros(len(head), dtype=np.bool_)
        mask[rows] = route.decoder.prefilter(head[rows], length[rows])
        return mask


@cache
def route_for(decoders: tuple[Decoder, ...]) -> PrefilterRoute:
    """The route of one transport's decoders, built once."""
    return PrefilterRoute(decoders)
