"""Memory and cost set by configuration, not by the input: TCP reassembly, flow-export templates,
salted flow keys (each on small crafted inputs; figures at scale come from bench/adversarial.py)."""

from __future__ import annotations

import struct
import subprocess
import sys

from detector.flows.tcp import SEGMENT_OVERHEAD, TcpReassembler
from detector.protocols.base import PacketContext
from detector.protocols.ipfix import IpfixDecoder
from detector.protocols.templates import MAX_WALKED_RECORDS, FieldBudget, TemplateCache

IPFIX = IpfixDecoder()
CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40123, dport=4739)
NOW = 1_700_000_000


def ipfix_msg(*sets: bytes, seq: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), NOW, seq, 1) + body


def template_set(tid: int, fields: list[tuple[int, int]]) -> bytes:
    spec = b"".join(struct.pack("!HH", ie, n) for ie, n in fields)
    return struct.pack("!HHHH", 2, 8 + len(spec), tid, len(fields)) + spec


# ---------------------------------------------------------------- TCP reassembly


def test_one_byte_segments_last_first_reassemble_in_order():
    data = bytes(range(256)) * 8
    tcp = TcpReassembler()
    tcp.start(1, 1000)
    for k in range(len(data) - 1, 0, -1):
        assert tcp.push(1, 1000 + k, data[k : k + 1]) == (b"", False)
    assert tcp.pending_bytes(1) == len(data) - 1
    out, gap = tcp.push(1, 1000, data[:1])
    assert (out, gap) == (data, False)
    assert tcp.pending_bytes(1) == 0 and tcp.total == 0


def test_overlaps_retransmissions_and_sequence_wrap():
    tcp = TcpReassembler()
    start = (1 << 32) - 3
    tcp.start(7, start)
    assert tcp.push(7, start + 4, b"EFGH") == (b"", False)
    assert tcp.push(7, start, b"ABC") == (b"ABC", False)
    assert tcp.push(7, start, b"ABC") == (b"", False)  # retransmission
    assert tcp.push(7, (start + 2) % (1 << 32), b"CDEF") == (b"DEFGH", False)
    assert tcp.push(7, (start + 8) % (1 << 32), b"I") == (b"I", False)


def test_a_gap_past_the_stream_budget_is_skipped_and_counted():
    tcp = TcpReassembler(max_pending_bytes=1000, max_total_bytes=1 << 20)
    tcp.start(1, 0)
    for k in range(5):
        out, gap = tcp.push(1, 100 + 200 * k, b"x" * 200)
        if gap:
            break
    # 200 bytes and their bookkeeping per segment: the fourth goes past 1000.
    assert k == 1000 // (200 + SEGMENT_OVERHEAD)
    assert gap and out == b"x" * 200 * (k + 1)
    assert tcp.gaps == 1 and tcp.pending_bytes(1) == 0


def test_every_stream_together_stays_under_the_total_budget():
    tcp = TcpReassembler(max_pending_bytes=1 << 20, max_total_bytes=10_000)
    for key in range(50):
        tcp.start(key, 0)
        tcp.push(key, 10, b"y" * 500)  # each waits for bytes 0..9
        assert tcp.total <= 10_000
    assert tcp.shed_bytes > 0
    tcp.forget(3)
    assert tcp.total >= 0


# ---------------------------------------------------------------- templates


def test_template_with_more_fields_than_the_budget_is_not_kept():
    cache = TemplateCache(max_fields=64)
    huge = template_set(300, [(1, 4)] * 65)
    found = IPFIX.decode(ipfix_msg(huge), CTX, cache)
    assert found is not None and found.facts["oversized_templates"] == 1
    assert cache.get(1, 300) is None
    ok = IPFIX.decode(ipfix_msg(template_set(301, [(1, 4)] * 64)), CTX, cache)
    assert ok is not None and cache.get(1, 301) is not None


def test_field_budget_is_shared_by_streams_and_given_back():
    budget = FieldBudget(total=100)
    a, b = TemplateCache(budget=budget), TemplateCache(budget=budget)
    IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, a)
    found = IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, b)
    assert found is not None and found.facts["templates_shed"] == 1
    assert b.get(1, 256) is None and budget.used == 60 and budget.shed == 1
    a.release()
    assert budget.used == 0
    IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, b)
    assert b.get(1, 256) is not None and budget.used == 60


def test_variable_length_records_walked_per_message_are_bounded():
    # One variable-length field; 60,000 empty records, then one holding a byte.
    records = b"\x00" * 60_000 + b"\x01\x07"
    data = struct.pack("!HH", 256, 4 + len(records)) + records
    cache = TemplateCache()
    found = IPFIX.decode(ipfix_msg(template_set(256, [(1, 0xFFFF)]), data), CTX, cache)
    assert found is not None
    assert found.facts["data_records"] == MAX_WALKED_RECORDS
    assert found.facts["data_sets_not_walked"] == 1
    # A short set is walked whole, trailing zero padding is not a record.
    small = b"\x01\x07" * 10 + b"\x00\x00"
    data = struct.pack("!HH", 256, 4 + len(small)) + small
    found = IPFIX.decode(ipfix_msg(data, seq=2), CTX, cache)
    assert found is not None and found.facts["data_records"] == 10
    assert "data_sets_not_walked" not in found.facts


# ---------------------------------------------------------------- salted keys


def test_flow_keys_are_salted_per_run():
    code = (
        "import numpy as np; from detector.flows.table import row_keys; "
        "a = np.array([[0, 0, 0, 0x0A000001]], dtype=np.uint32); "
        "b = np.array([[0, 0, 0, 0x0A000002]], dtype=np.uint32); p = np.array([443]); "
        "print(int(row_keys(a, b, p, p, np.array([17])).flow[0]))"
    )
    runs = {subprocess.check_output([sys.executable, "-c", code], text=True) for _ in range(2)}
    assert len(runs) == 2
