"""Fixed-length flow-export records read as columns are the records read one dict at a time.

NetFlow v9 and IPFIX data sets whose template has no variable-length field (and no packet
section) are read a column per wanted element; what the message says (records, their hosts,
ports and counters, the sampling interval, the record counts) must be what the record-by-record
reading gives, for any template (elements repeated, absent, of odd or oversized widths, IPv4 and
IPv6 addresses) and any bytes.  The CI run is derandomised; ``MIRRORWATCH_FUZZ_EXAMPLES=N``
multiplies the examples and draws new ones.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from mwtest import fuzz

from detector.protocols.templates import (
    IE_DST4,
    IE_DST6,
    IE_OCTETS,
    IE_OCTETS_TOTAL,
    IE_PACKETS,
    IE_PACKETS_TOTAL,
    IE_PKT_INTERVAL,
    IE_PKT_SPACE,
    IE_PROTO,
    IE_SAMPLER_RANDOM_INTERVAL,
    IE_SAMPLING_INTERVAL,
    IE_SPORT,
    IE_SRC4,
    IE_SRC6,
    MAX_RECORDS,
    SetWalk,
    TemplateCache,
    make_template,
    read_records,
)

# Every element the records are read for, and two they are not.
ELEMENTS = [IE_SRC4, IE_DST4, IE_SRC6, IE_DST6, IE_PROTO, IE_SPORT, 11, IE_PACKETS, IE_OCTETS,
            IE_PACKETS_TOTAL, IE_OCTETS_TOTAL, IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL,
            IE_PKT_INTERVAL, IE_PKT_SPACE, 10, 152]  # fmt: skip
ADDRESSES = [(IE_SRC4, 4), (IE_DST4, 4), (IE_SRC6, 16), (IE_DST6, 16)]
WIDTHS = [0, 1, 2, 3, 4, 5, 8, 9, 16]
DOMAIN, TID = 7, 300


def templates() -> st.SearchStrategy[list[tuple[int, int]]]:
    field = st.tuples(st.sampled_from(ELEMENTS), st.sampled_from(WIDTHS))
    # Mostly templates that name both ends (records are kept only then), some that do not.
    ends = st.lists(st.sampled_from(ADDRESSES), max_size=4)
    return st.tuples(ends, st.lists(field, max_size=10)).flatmap(
        lambda t: st.permutations([*t[0], *t[1]])
    )


def one_by_one(fields: list[tuple[int, int]], data: bytes, start: int, sampling: int) -> SetWalk:
    """The record-by-record reading (what variable-length templates still take)."""
    t = make_template(TID, fields)
    walk = SetWalk(sampling_interval=sampling)
    walk.data_set_ids.append(TID)
    keep = max(0, MAX_RECORDS - len(walk.records) - len(walk.carried))
    count, rows, cut = read_records(t, data, start, len(data), keep, walk.walk_left)
    walk.walk_left = max(0, walk.walk_left - count)
    walk.sets_not_walked += cut
    walk.data_records += count
    for row in rows:
        walk._absorb(row)
    return walk


@fuzz(300)
@given(
    templates(),
    st.integers(0, 130),
    st.binary(min_size=0, max_size=3),
    st.sampled_from([0, 0, 5]),
    st.integers(0, 2**32),
)
def test_columns_read_what_rows_read(
    fields: list[tuple[int, int]], n: int, extra: bytes, sampling: int, seed: int
) -> None:
    t = make_template(TID, fields)
    if not t.fixed_len:
        return  # not read as columns
    body = random.Random(seed).randbytes(n * t.fixed_len) + extra
    data = b"\xee" * 4 + body  # the set header's place
    cache = TemplateCache()
    assert cache.put(DOMAIN, t)
    got = SetWalk(sampling_interval=sampling)
    got.data_set(cache, DOMAIN, TID, data, 4, len(data))
    want = one_by_one(fields, data, 4, sampling)
    assert got == want
    assert len(got.records) == (min(n, MAX_RECORDS) if got.records else 0)


def test_columns_of_a_sampled_export() -> None:
    """Addresses, ports, counters (the total counts where the delta ones are 0) and the
    sampling interval of the first record that gives one (systematic count-based sampling)."""
    fields = [(IE_SRC4, 4), (IE_DST6, 16), (IE_PROTO, 1), (IE_SPORT, 2), (11, 2),
              (IE_PACKETS, 4), (IE_PACKETS_TOTAL, 8), (IE_OCTETS, 8), (IE_PKT_INTERVAL, 4),
              (IE_PKT_SPACE, 4)]  # fmt: skip
    one = (bytes([192, 0, 2, 1]) + bytes(15) + b"\x01" + b"\x06" + b"\x01\xbb"
           + b"\x00\x35" + bytes(4) + (2**40).to_bytes(8, "big") + (9000).to_bytes(8, "big")
           + bytes(8))  # fmt: skip
    two = (bytes([10, 0, 0, 2]) + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02" + b"\x11"
           + b"\xff\xff" + b"\x00\x00" + (3).to_bytes(4, "big") + bytes(8) + bytes(8)
           + (2).to_bytes(4, "big") + (98).to_bytes(4, "big"))  # fmt: skip
    data = bytes(4) + one + two
    cache = TemplateCache()
    cache.put(DOMAIN, make_template(TID, fields))
    walk = SetWalk()
    walk.data_set(cache, DOMAIN, TID, data, 4, len(data))
    assert [
        (r.src, r.dst, r.proto, r.sport, r.dport, r.packets, r.bytes) for r in walk.records
    ] == [
        ("192.0.2.1", "::1", 6, 443, 53, 2**40, 9000),
        ("10.0.0.2", "2001:db8::2", 17, 65535, 0, 3, 0),
    ]
    assert walk.sampling_interval == 50 and walk.data_records == 2
    assert walk == one_by_one(fields, data, 4, 0)


def test_a_template_of_empty_fields_reads_no_record() -> None:
    """A template whose every field is zero bytes long (a sender may declare one) describes
    records that cannot be told apart: its data sets hold none, and reading them is no fault."""
    fields = [(IE_SRC4, 0), (IE_DST4, 0), (IE_OCTETS, 0)]
    t = make_template(TID, fields)
    assert t.fixed_len == 0
    assert read_records(t, bytes(40), 0, 40, MAX_RECORDS) == (0, [], False)
    cache = TemplateCache()
    walk = SetWalk()
    walk.add_template(cache, DOMAIN, t)
    walk.data_set(cache, DOMAIN, TID, bytes(40), 0, 40)
    assert walk.data_records == 0 and walk.records == []
