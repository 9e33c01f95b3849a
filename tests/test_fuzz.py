"""Property tests: no bytes make a decoder, a prefilter, the reader or a whole scan raise.

Inputs are random bytes and mutations of the real payloads and captures in pcaps/.  The CI run is
derandomised and bounded (a few seconds); ``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the examples
for a longer hunt, and ``bench/fuzz.py --minutes N`` runs a long randomised campaign that keeps
every crashing input in tests/fuzz_regressions/, which the last test here replays.
"""

from __future__ import annotations

import random
from pathlib import Path

import fuzztargets as ft
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import fuzz, heads

from detector.prefilter_route import PrefilterRoute
from detector.protocols import registry
from detector.protocols.base import Decoder, StreamDecoder


@st.composite
def mutated_payload(draw: st.DrawFn) -> bytes:
    seeds = ft.seed_payloads()
    seed = seeds[draw(st.integers(0, len(seeds) - 1))]
    return ft.mutate(seed, draw(st.randoms(use_true_random=False)), seeds)


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    files = [data for _, data in ft.seed_files()]
    data = files[draw(st.integers(0, len(files) - 1))]
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(1, 4))):
        data = ft.mutate(data, rng, tuple(files))
    return data


payloads = st.one_of(st.binary(max_size=1600), mutated_payload())


@fuzz(120)
@given(payloads)
def test_every_decoder_survives_any_payload(payload: bytes) -> None:
    ft.every_decoder(payload)


@fuzz(60)
@given(st.lists(payloads, min_size=2, max_size=5))
def test_decoder_state_survives_a_hostile_sequence(sequence: list[bytes]) -> None:
    # Templates, partial PDUs and sequence numbers carry over from one payload to the next.
    for d in ft.decoders():
        ft.decode_one(d, sequence)


@fuzz(60)
@given(mutated_payload(), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_stream_decoders_survive_any_segmentation(data: bytes, cuts: list[int]) -> None:
    for d in ft.decoders():
        if isinstance(d, StreamDecoder):
            ft.feed_stream(d, data * 2, cuts)


@fuzz(100)
@given(st.lists(payloads, min_size=1, max_size=8))
def test_prefilters_never_miss_what_decode_accepts(batch: list[bytes]) -> None:
    ft.prefilter_all(batch)
    head, length = heads(batch)
    for d in ft.decoders():
        if d.transport not in ("udp", "tcp") or isinstance(d, StreamDecoder):
            continue
        passed = d.prefilter(head, length)
        for i, p in enumerate(batch):
            if not passed[i]:
                assert d.decode(p, ft.CTX, d.new_state()) is None, ft.decoder_id(d)


# Ports a row may come on: a decoder's own, one registered to another protocol, any other.
PORTS = st.sampled_from([40000, 4789, 37008, 2055, 443, 80, 514, 6000, 1194, 4500, 6635, 57012])


@fuzz(100)
@given(st.lists(st.tuples(payloads, PORTS, PORTS), min_size=1, max_size=8))
def test_routed_prefilters_never_miss_what_decode_accepts(
    rows: list[tuple[bytes, int, int]],
) -> None:
    # The engine gives a decoder only the rows the router gives its prefilter: none it drops
    # may be one the decoder accepts where the engine would try it (its ports allowing).
    batch = [p for p, _, _ in rows]
    head, length = heads(batch)
    sport = np.array([s for _, s, _ in rows], dtype=np.int64)
    dport = np.array([d for _, _, d in rows], dtype=np.int64)
    for transport in ("udp", "tcp"):
        decoders = registry.decoders_for(transport)
        masks = PrefilterRoute(decoders).masks(head, length, sport, dport)
        for d, mask in zip(decoders, masks, strict=True):
            for i, (p, s, t) in enumerate(rows):
                if mask[i] or not ft.engine_tries(d, s, t):
                    continue
                ctx = ft.context(s, t)
                assert d.decode(p, ctx, d.new_state()) is None, (ft.decoder_id(d), s, t)


@pytest.mark.parametrize(("d", "at"), ft.declared_leading_bytes(), ids=ft.leading_id)
def test_leading_bytes_declared_are_the_only_ones_decode_accepts(d: Decoder, at: int) -> None:
    # Every payload of the samples this decoder accepts, with each other first (or second) byte,
    # is rejected (a wrong declaration would hide the format from the engine).
    accepted = [p for p in ft.seed_payloads() if d.decode(p, ft.on_port_context(d), d.new_state())]
    declared = d.first_bytes if at == 0 else d.second_bytes
    assert declared is not None and accepted, ft.decoder_id(d)
    others = [b for b in range(256) if b not in declared]
    for p in accepted:
        # The prefilter window reads 0 past the payload's end.
        assert (p[at] if at < len(p) else 0) in declared, ft.decoder_id(d)
        for b in others:
            changed = p[:at] + bytes([b]) + p[at + 1 :]
            assert d.decode(changed, ft.on_port_context(d), d.new_state()) is None, (
                ft.decoder_id(d),
                b,
            )


@fuzz(60)
@given(mutated_capture())
def test_reader_survives_damaged_captures(data: bytes) -> None:
    ft.read_all(data)


@fuzz(12)
@given(mutated_capture())
def test_scan_and_every_report_survive_damaged_captures(data: bytes) -> None:
    ft.scan_and_render(data)


@fuzz(12)
@given(st.lists(mutated_payload(), min_size=1, max_size=12), st.sampled_from([4739, 37008, 4789]))
def test_scan_survives_hostile_datagrams(batch: list[bytes], dport: int) -> None:
    # Whole datagrams through the engine, verdict and renderers: a decoded field reaches them.
    ft.scan_and_render(ft.pcap_of_payloads(batch, dport))


def test_mutations_change_bytes() -> None:
    rng = random.Random(0)
    seed = ft.seed_payloads()[0]
    assert any(ft.mutate(seed, rng) != seed for _ in range(10))


REGRESSIONS = sorted(ft.REGRESSIONS.glob("*.bin")) if ft.REGRESSIONS.is_dir() else []


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_inputs_that_once_crashed(path: Path) -> None:
    ft.run_regression(path)
