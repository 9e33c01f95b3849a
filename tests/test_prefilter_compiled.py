"""The compiled carried-packet tests of the payload prefilters are the numpy ones.

``carried_bits`` (PCLI's header lengths) and ``carried_within`` (the unknown-encapsulation
search) give the same answer row by row whichever form computes them: on the payloads the guard
tests use (the samples', the public captures' where present, random bytes, headers placed at
and around every offset with lengths right and one off), on random windows with any length
(negative, short, past 0xffff), and the whole PCLI and unknown-encapsulation prefilters agree
too.  The compiled forms refuse windows too narrow for the offsets they read.  The CI run is
derandomised; ``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples and draws new ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fuzztargets import seed_payloads
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mwtest import fuzz, heads, printed_with_and_without_pure_python
from test_prefilter_guards import carried_near_edges, near_edges, random_payloads, real_payloads

from detector.decode import headers
from detector.protocols import pcli, unknown_encap
from detector.protocols.base import PREFILTER_BYTES
from detector.protocols.li_common import carried_bits_compiled, carried_bits_numpy
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


def test_prefilters_agree_with_and_without_pure_python() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from mwtest import heads\n"
        "from test_prefilter_compiled import guard_payloads\n"
        "from detector.protocols.li_common import carried_compiled\n"
        "from detector.protocols.pcli import PcliDecoder\n"
        "from detector.protocols.unknown_encap import UnknownEncapsulation\n"
        "head, length = heads(guard_payloads(real=False))\n"
        "print(carried_compiled, PcliDecoder().prefilter(head, length).nonzero()[0].tolist(),"
        " UnknownEncapsulation().prefilter(head, length).nonzero()[0].tolist())\n"
    )
    compiled, pure = printed_with_and_without_pure_python(code)
    assert compiled.startswith("True [") and pure.startswith("False [")
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
