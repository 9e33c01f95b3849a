"""Decoders say why a packet is not their format; the engine counts the reasons per stream and
counts a fault inside a decoder as ``decoder-error:<Type>`` instead of passing it off as "not
this format"."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scapy.all import IP, UDP, Ether, Raw, raw

from detector.capture.reader import PacketBatch
from detector.engine import Engine
from detector.policy.verdict import PolicyContext, judge
from detector.protocols.base import Decoded, PacketContext, Reject
from detector.protocols.registry import all_decoders
from detector.protocols.tzsp import Tzsp


def _udp(payload: bytes) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return raw(
        eth / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=40000, dport=37008) / payload
    )


def _copy(i: int) -> bytes:
    a, b = f"10.0.{i % 5}.5", "10.0.9.6"
    src, dst = (a, b) if i % 2 else (b, a)
    inner = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src=src, dst=dst, id=i)
    return _udp(b"\x01\x00\x00\x01\x01" + raw(inner / UDP(sport=1000, dport=2000) / Raw(b"x" * 40)))


def _scan(frames: list[bytes]) -> tuple[Engine, list]:
    engine = Engine()
    for k in range(0, len(frames), 50):
        chunk = frames[k : k + 50]
        engine.process(PacketBatch.of_frames(chunk, ts=1000.0 + k + np.arange(len(chunk)) * 1e-3))
    return engine, [f for f, _ in judge(engine.finish(), PolicyContext())]


def test_tzsp_reasons() -> None:
    ctx = PacketContext()
    t = Tzsp()
    assert t.check(b"\x01\x00", ctx, None) == Reject("short")
    assert t.check(b"\x02\x00\x00\x01\x01" + bytes(60), ctx, None) == Reject("version")
    assert t.check(b"\x01\x00\x00\x01\x01" + bytes(12) + b"\x12\x34", ctx, None) == Reject(
        "carried-frame"
    )
    # decode() stays the yes/no view of the same answer.
    assert t.decode(b"\x02\x00\x00\x01\x01" + bytes(60), ctx, None) is None


def test_garbage_mixed_into_a_mirror_is_counted_not_blinding() -> None:
    rng = random.Random(9)
    frames = []
    for i in range(240):
        frames.append(_copy(i))
        if i % 2:  # a third of the stream is junk on the same flow
            frames.append(_udp(b"\x01\x00\x00\x01\x01" + rng.randbytes(60)))
    _, findings = _scan(frames)
    (f,) = [f for f in findings if f.protocol == "tzsp"]
    assert f.severity == "high"
    rejects = dict(r.split("=") for r in f.evidence["rejects"])  # type: ignore[union-attr]
    assert int(rejects["carried-frame"]) > 0
    assert 0.5 < float(f.evidence["validated_share"]) < 0.8  # type: ignore[arg-type]


def test_a_decoder_fault_is_counted_and_the_scan_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Tzsp.check

    def faulty(self: Tzsp, payload: bytes, ctx: PacketContext, state: object) -> Decoded | Reject:
        if payload.endswith(b"boom"):
            raise ZeroDivisionError("a bug")
        return real(self, payload, ctx, state)

    monkeypatch.setattr(Tzsp, "check", faulty)
    frames = [_copy(i) for i in range(60)]
    frames[30:30] = [_udp(b"\x01\x00\x00\x01\x01boom")] * 3
    engine, findings = _scan(frames)
    assert engine.stats.decoder_errors == {"decoder-error:ZeroDivisionError": 3}
    (f,) = findings
    assert f.severity == "high" and "decoder-error:ZeroDivisionError=3" in f.evidence["rejects"]


def test_check_answers_for_any_bytes() -> None:
    # The reason API itself never raises (the fuzz suite goes much further).
    rng = random.Random(1)
    payloads = [rng.randbytes(rng.randrange(0, 120)) for _ in range(60)]
    payloads += [b"\x01\x00\x00\x01" + p for p in payloads[:20]]
    for d in all_decoders():
        for p in payloads:
            got = d.check(p, PacketContext(), d.new_state())
            assert isinstance(got, Decoded | Reject), d.name
