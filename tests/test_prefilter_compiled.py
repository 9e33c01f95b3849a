"""The compiled tests of the payload prefilters and their routing are the numpy ones.

``carried_bits`` (PCLI's header lengths) and ``carried_within`` (the unknown-encapsulation
search) give the same answer row by row whichever form computes them: on the payloads the guard
tests use (the samples', the public captures' where present, random bytes, headers placed at
and around every offset with lengths right and one off), on random windows with any length
(negative, short, past 0xffff); and the whole PCLI and unknown-encapsulation prefilters agree
too.  The rows each prefilter passes, routed and given their windows in one compiled pass
(``PrefilterRoute.hits_in``), are those of the numpy windows and routing (of one table word or
several), on the same payloads laid out in one buffer, on the samples' batches and on rows
starting anywhere, with any ports.  The compiled forms refuse windows too narrow for the
offsets they read and ports past 16 bits.  The CI run is derandomised;
``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples and draws new ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fuzztargets import seed_payloads
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mwtest import PCAPS, fuzz, heads, printed_with_and_without_pure_python
from test_prefilter_guards import carried_near_edges, near_edges, random_payloads, real_payloads

from detector.capture.reader import InputStats, open_stream, read_batches
from detector.decode import headers
from detector.prefilter_route import (
    PrefilterRoute,
    byte_values,
    route_for,
)
from detector.protocols import pcli, unknown_encap
from detector.protocols.base import PREFILTER_BYTES
from detector.protocols.li_common import carried_bits_compiled, carried_bits_numpy
from detector.protocols.registry import decoders_for
from detector.protocols.unknown_encap import carried_within_compiled, carried_within_numpy

pytestmark = pytest.mark.skipif(
    headers.OUTER is None,
    reason="the compiled header decode is not built (pip install -e . with a C compiler and the "
    "Python headers builds it)",
)

OFFSETS_SEEN = ((4, 8, 12, 20), (0,), (8,), (50,), (PREFILTER_BYTES - 14, 0, 3))


def guard_payloads(real: bool = True) -> list[bytes]:
    return [
        *seed_payloads(),
        *(real_payloads() if real else ()),
        *random_payloads(3000, 11),
        *near_edges(12),
        *carried_near_edges((0, 4, 8, 12, 20), 13),
    ]


def test_forms_agree_on_the_guard_payloads() -> None:
    head, length = heads(guard_payloads())
    for offsets in OFFSETS_SEEN:
        compiled = carried_bits_compiled(head, length, offsets)
        assert compiled.tolist() == carried_bits_numpy(head, length, offsets).tolist()
    within = carried_within_compiled(head, length)
    assert within.tolist() == carried_within_numpy(head, length).tolist()
    # Both kinds of carried packet are found, and most payloads hold none.
    assert 100 < within.sum() < len(head) // 2
    bits = carried_bits_compiled(head, length, (4, 8, 12, 20))
    assert (bits & 1).any() and (bits & 2).any()


windows = hnp.arrays(np.uint8, st.tuples(st.integers(0, 40), st.just(PREFILTER_BYTES)))
lengths = st.integers(-70000, 140000)


@fuzz(120)
@given(
    windows,
    st.data(),
    st.lists(st.integers(0, PREFILTER_BYTES - 14), min_size=1, max_size=6).map(tuple),
)
def test_forms_agree_on_random_windows(
    head: np.ndarray, data: st.DataObject, offsets: tuple[int, ...]
) -> None:
    # Lengths near the offsets' rests as well as anywhere, so that length fields can match.
    near = st.integers(0, 140) | lengths
    length = np.array(data.draw(st.lists(near, min_size=len(head), max_size=len(head))))
    length = length.astype(np.int64)
    assert (
        carried_bits_compiled(head, length, offsets).tolist()
        == carried_bits_numpy(head, length, offsets).tolist()
    )
    assert (
        carried_within_compiled(head, length).tolist()
        == carried_within_numpy(head, length).tolist()
    )


@fuzz(80)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=30), st.data())
def test_forms_agree_on_planted_headers(payloads: list[bytes], data: st.DataObject) -> None:
    """Random payloads with an IPv4 or IPv6 header written at a random offset, its length
    field set to what is left (or one off) and, for IPv4, its checksum made right."""
    planted = []
    for body in payloads:
        body = bytearray(body.ljust(data.draw(st.integers(20, 200)), b"\0"))
        k = data.draw(st.integers(0, min(48, len(body) - 20)))
        rest = (len(body) - k + data.draw(st.sampled_from([0, 0, 1, -1]))) & 0xFFFF
        if data.draw(st.booleans()):
            hdr = bytearray(b"\x45\x00" + rest.to_bytes(2, "big") + body[k + 4 : k + 20])
            hdr[10:12] = b"\0\0"
            total = sum(int.from_bytes(hdr[j : j + 2], "big") for j in range(0, 20, 2))
            while total > 0xFFFF:
                total = (total & 0xFFFF) + (total >> 16)
            hdr[10:12] = (0xFFFF - total).to_bytes(2, "big")
        else:
            hdr = bytearray(b"\x60\0\0\0" + ((rest - 40) & 0xFFFF).to_bytes(2, "big") + b"\x11\x40")
        body[k : k + len(hdr)] = hdr
        planted.append(bytes(body))
    head, length = heads(planted)
    assert (
        carried_within_compiled(head, length).tolist()
        == carried_within_numpy(head, length).tolist()
    )
    offsets = (4, 8, 12, 20)
    assert (
        carried_bits_compiled(head, length, offsets).tolist()
        == carried_bits_numpy(head, length, offsets).tolist()
    )


@dataclass(frozen=True)
class Declared:
    """What the route reads of a decoder: its first two bytes and its ports."""

    first_bytes: frozenset[int] | None
    second_bytes: frozenset[int] | None
    ports: tuple[int, ...] = ()
    ports_required: bool = False


ROUTES = {
    "udp": route_for(decoders_for("udp")),
    "tcp": route_for(decoders_for("tcp")),
}


def test_prefilters_agree_with_and_without_pure_python() -> None:
    """The prefilters that test for a carried packet pass the same rows in either form."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from mwtest import heads\n"
        "from test_prefilter_compiled import guard_payloads\n"
        "from detector.protocols.li_common import carried_compiled\n"
        "from detector.protocols.registry import decoders_for\n"
        "head, length = heads(guard_payloads(real=False))\n"
        "names = ('pcli', 'unknown-encapsulation', 'jmirror', 'nokia-li', 'bcm-li')\n"
        "print(carried_compiled, [d.prefilter(head, length).nonzero()[0].tolist()"
        " for d in decoders_for('udp') if d.name in names])\n"
    )
    compiled, pure = printed_with_and_without_pure_python(code)
    assert compiled.startswith("True [[") and pure.startswith("False [[")
    assert compiled.split(" ", 1)[1] == pure.split(" ", 1)[1]
    assert pcli.carried_compiled and unknown_encap.carried_within is carried_within_compiled


def test_narrow_windows_are_refused() -> None:
    head = np.zeros((3, 30), dtype=np.uint8)
    length = np.full(3, 30, dtype=np.int64)
    with pytest.raises(ValueError):
        carried_bits_compiled(head, length, (17,))
    with pytest.raises(ValueError):
        carried_within_compiled(head, length)
    with pytest.raises(ValueError):
        carried_within_compiled(np.zeros((3, 64), dtype=np.uint8), length[:2])


@dataclass(frozen=True)
class Passing(Declared):
    """A declared decoder whose prefilter passes rows by a few of their window bytes and their
    length (about one row in four)."""

    salt: int = 0

    def prefilter(self, head: np.ndarray, length: np.ndarray) -> np.ndarray:
        mixed = head[:, 2].astype(np.int64) ^ head[:, PREFILTER_BYTES - 1] ^ length ^ self.salt
        return (mixed & 3) == 0


def passing_routes(seed: int) -> PrefilterRoute:
    """A route of more decoders than one table word has bits, some on their own ports only,
    some taking every row, whose prefilters pass some rows."""
    rng = random.Random(seed)
    declared = [Passing(None, None, salt=1), Passing(None, None, (4789,), True, salt=2)]
    for n in range(140):
        first = byte_values(0xFF ^ (1 << rng.randrange(8)), rng.randrange(256) & 0xFE)
        second = None if n % 3 else byte_values(0xF0, rng.randrange(16) << 4)
        ports = tuple(rng.randrange(1 << 16) for _ in range(3)) if n % 7 == 0 else ()
        declared.append(Passing(first, second, ports, bool(ports), salt=n))
    return PrefilterRoute(declared)  # type: ignore[arg-type]


HIT_ROUTES = {
    **{name: ROUTES[name] for name in ("udp", "tcp")},
    "passing": passing_routes(5),
    "passing, none everywhere": PrefilterRoute(
        [Passing(frozenset({0, 1, 0x45}), None, salt=3), Passing(None, None, (53, 80), True)]  # type: ignore[list-item]
    ),
}


def same_hits(route: PrefilterRoute, *columns: np.ndarray) -> None:
    rows, passing = route.hits_in_compiled(*columns)
    want_rows, want_passing = route.hits_in_numpy(*columns)
    assert rows.tolist() == want_rows.tolist()
    assert passing == want_passing


@fuzz(150)
@given(
    st.sampled_from(sorted(HIT_ROUTES)),
    st.binary(max_size=400),
    st.lists(
        st.tuples(
            st.integers(-70, 470),
            st.integers(-3, 0x10005) | st.integers(0, 80),
            st.integers(0, 0xFFFF) | st.sampled_from([4789, 2152, 53]),
            st.integers(0, 0xFFFF) | st.sampled_from([4789, 37008, 80]),
        ),
        max_size=60,
    ),
)
def test_routed_windows_agree(name: str, data: bytes, rows: list[tuple[int, ...]]) -> None:
    """Rows starting anywhere in, past or before a buffer, of any length and ports."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts, length, sport, dport = (np.array([r[k] for r in rows], np.int64) for k in range(4))
    same_hits(HIT_ROUTES[name], buffer, starts, length, sport, dport)


def test_routed_windows_of_real_payloads_agree() -> None:
    """The guard tests' payloads, one after the other in a buffer, on ports of the formats."""
    payloads = guard_payloads()
    buffer = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    length = np.array([len(p) for p in payloads], np.int64)
    starts = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    ports = np.resize(np.array([4789, 2055, 37008, 443, 53, 6081, 5555], np.int64), len(length))
    for route in HIT_ROUTES.values():
        same_hits(route, buffer, starts, length, ports, ports[::-1].copy())
    rows, passing = ROUTES["udp"].hits_in_compiled(buffer, starts, length, ports, ports)
    assert len(rows) > 100 and len({d.name for ds in passing for d in ds}) > 5


def test_routed_windows_of_the_samples_agree() -> None:
    """Every UDP and TCP payload row of the samples' batches, as the engine routes them."""
    for path in sorted(PCAPS.glob("*.pcap")):
        with open_stream(str(path)) as stream:
            for batch in read_batches(stream, InputStats(str(path))):
                h = headers.decode_headers(batch)
                for proto, name in ((17, "udp"), (6, "tcp")):
                    rows = np.flatnonzero((h.proto == proto) & (h.paylen > 0) & (h.ipver > 0))
                    columns = (h.paylen[rows], h.sport[rows], h.dport[rows])
                    same_hits(ROUTES[name], batch.data, batch.offsets[rows] + h.pay[rows], *columns)


def test_rows_many_routes_take_share_their_windows() -> None:
    """Payloads that begin as many UDP formats do (zeros) take their windows from every row's
    instead of one copy a route: the same rows pass, with no more memory than the heads."""
    route = ROUTES["udp"]
    n = 500
    data = np.zeros(n * 64, np.uint8)
    data[40::64] = 0x45  # an IPv4 header inside some of them
    starts = np.arange(n, dtype=np.int64) * 64
    length = np.full(n, 64, np.int64)
    ports = np.resize(np.array([4789, 2152, 53, 6081], np.int64), n)
    assert route.everywhere and route.ports is not None
    cuts = np.empty(len(route.routes) + 1, np.int64)
    tables = (route.leads, route.ports, route.port_free, len(route.routes))
    head = np.empty((n, PREFILTER_BYTES), np.uint8)
    outer = headers.OUTER
    assert outer is not None
    _, windows, _ = outer.route_windows(data, starts, length, ports, ports, *tables,
                                        PREFILTER_BYTES, head, cuts)  # fmt: skip
    assert windows is None and cuts[-1] > 2 * n
    same_hits(route, data, starts, length, ports, ports)


def test_routed_windows_refuse_what_does_not_fit() -> None:
    route, outer = ROUTES["udp"], headers.OUTER
    assert outer is not None and route.ports is not None
    data = np.zeros(100, np.uint8)
    m = np.zeros(3, np.int64)
    cuts = np.empty(len(route.routes) + 1, np.int64)

    def call(sport: np.ndarray = m, head: object = None, width: int = PREFILTER_BYTES) -> object:
        tables = (route.leads, route.ports, route.port_free, len(route.routes))
        return outer.route_windows(data, m, m, sport, m, *tables, width, head, cuts)

    with pytest.raises(ValueError, match="16-bit"):
        call(sport=np.array([0, 0x10000, 0], np.int64))
    with pytest.raises(ValueError, match="16-bit"):
        call(sport=np.array([0, -1, 0], np.int64))
    with pytest.raises(ValueError, match="holds"):
        call(head=np.zeros((2, PREFILTER_BYTES), np.uint8))
    with pytest.raises(ValueError, match="bytes a window"):
        call(width=1)
    ids, windows, lengths = call()  # type: ignore[misc]
    assert len(windows) == PREFILTER_BYTES * len(ids) // 8 == PREFILTER_BYTES * len(lengths) // 8
