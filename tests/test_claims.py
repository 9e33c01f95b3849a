"""The pieces of a scan are shared out between its processes: each read once, a slowed process's
unbegun tail taken over by another, and the engine that takes it over samples on."""

from __future__ import annotations

import itertools
import os
import pickle
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from mwtest import uplink_capture
from scapy.all import IP, UDP, Ether, Raw, raw
from test_pcapng_parts import interface, packet, section

from detector import claims, parts
from detector.capture import reader
from detector.capture.reader import InputStats, PacketBatch, open_stream, read_batches
from detector.claims import BEGAN, Claims
from detector.engine import Engine
from detector.parts import fold, read_runs, result_of, run_parts

MB = 1 << 20


@pytest.fixture(scope="module")
def uplink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uplink_capture(tmp_path_factory.mktemp("claims") / "uplink.pcap", 20000)


def _taken_over_whenever_possible(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new engine costs nothing and any cut will do: every unbegun tail is taken over.
    monkeypatch.setattr(claims, "ENGINE_COST_BYTES", 0)
    monkeypatch.setattr(claims, "MIN_GAIN_SECONDS", -1.0)


def test_a_run_is_taken_piece_by_piece_and_then_not_at_all() -> None:
    c = Claims([MB] * 6, [(0, 3), (3, 6)])
    assert [c.take(0), c.take(0), c.take(0), c.take(0)] == [0, 1, 2, None]
    assert c.begun() == 3 * MB
    c.close()


def test_the_tail_is_cut_where_both_end_together() -> None:
    """Run 0 has read one piece and half of the next in a second (15 MB/s); eight pieces of 10
    MB are unbegun.  A reader as fast, done with run 1, takes the last three (it pays for a new
    engine, 16 MiB of reading, first); one twice as fast takes the last five.  Where what is left
    is less than a new engine costs, nothing is taken."""
    found = {}
    for speed in (1, 2):
        c = Claims([10 * MB] * 12, [(0, 10), (10, 12)])
        for run in (0, 1):
            c.take(run), c.take(run)  # two pieces begun...
            c.read(run, 5 * MB)  # ...and half of the second read
        now = c._at(0, BEGAN)
        c._put(0, BEGAN, now - 1_000_000_000)
        c._put(1, BEGAN, now - 1_000_000_000 // speed)
        assert c.take(1) is None
        assert c.take_over(1) == 2
        found[speed] = c._at(2, 0)
        # The new run is the tail of run 0, which now ends where it begins.
        assert c._at(0, 2) == found[speed] and c._at(2, 2) == 10
        c.close()
    assert found == {1: 7, 2: 5}
    small = Claims([MB] * 4, [(0, 2), (2, 4)])
    small.take(0), small.take(1), small.take(1)
    small.read(0, MB // 2)
    for run in (0, 1):
        small._put(run, BEGAN, small._at(run, BEGAN) - 1_000_000_000)
    assert small.take(1) is None
    assert small.take_over(1) is None  # one unbegun MiB does not pay for a new engine
    small.close()


def test_processes_that_take_over_each_others_tails_read_every_piece_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _taken_over_whenever_possible(monkeypatch)
    n = 400
    c = Claims([MB] * n, [(0, n // 2), (n // 2, n)])
    read, write = os.pipe()

    def take_all(run: int) -> list[int]:
        got: list[int] = []
        current: int | None = run
        while current is not None:
            while (i := c.take(current)) is not None:
                got.append(i)
            current = c.take_over(current)
        return got

    pid = os.fork()
    if pid == 0:
        os.close(read)
        with open(write, "wb") as out:
            out.write(pickle.dumps(take_all(1)))
        os._exit(0)
    os.close(write)
    mine = take_all(0)
    with open(read, "rb") as f:
        theirs = pickle.loads(f.read())
    os.waitpid(pid, 0)
    assert sorted(mine + theirs) == list(range(n))
    assert c.runs >= 2
    c.close()


@pytest.fixture(scope="module")
def uplink_ng(uplink: Path) -> Path:
    """The uplink capture written again as pcapng: its pieces start on blocks, each with the
    section and interface in force there."""
    ng = uplink.with_suffix(".pcapng")
    with ng.open("wb") as out:
        out.write(section("<") + interface(1, "<"))
        for b in read_batches(open_stream(str(uplink)), InputStats("uplink")):
            out.write(b"".join(packet(b.packet(i), float(b.ts[i]), 0, "<") for i in range(len(b))))
    return ng


@pytest.mark.parametrize(("form", "mapped"), [("pcap", True), ("pcap", False), ("pcapng", True)])
def test_runs_taken_over_report_what_one_engine_does(
    uplink: Path, uplink_ng: Path, monkeypatch: pytest.MonkeyPatch, form: str, mapped: bool
) -> None:
    """Run 1 is read first, in this process, then takes over tails of run 0, whose owner reads
    what is left last: engines over pieces read as stretches of one file, folded in capture
    order."""
    capture = uplink if form == "pcap" else uplink_ng
    monkeypatch.setattr(reader, "MAP_FILES", mapped)
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", MB)
    monkeypatch.setattr(parts, "PIECE_BYTES", 2 * MB)
    _taken_over_whenever_possible(monkeypatch)
    groups = parts.plan([str(capture)], 2)
    pieces = [p for g in groups for p in g]
    assert len(pieces) >= 8 and all(a.end == b.start for a, b in itertools.pairwise(pieces))
    joins = [False] + [True] * (len(pieces) - 1)
    half = len(groups[0])
    c = Claims([parts._size(p) for p in pieces], [(0, half), (half, len(pieces))], joins)
    later = read_runs(c, 1, pieces)
    earlier = read_runs(c, 0, pieces)
    c.close()
    # Run 1's own pieces, then tails of run 0, each from a new engine, as long as some remain.
    assert later[0][0] == half and len(later) >= 2
    assert all(first < half for first, _ in later[1:])
    results = [r for _, r in sorted(earlier + later, key=lambda x: x[0])]
    whole = result_of(*run_parts([parts.Part(str(capture))]))
    assert sum(i.packets for r in results for i in r.inputs) == whole.stats.packets
    one, many = fold([whole]), fold(results)
    assert [(s.protocol, s.packets, s.bytes) for s in one.streams] == [
        (s.protocol, s.packets, s.bytes) for s in many.streams
    ]


def _copy(i: int) -> bytes:
    inner = Ether() / IP(src=f"10.0.{i % 7}.5", dst="10.0.9.6", id=i) / UDP() / Raw(b"x" * 40)
    outer = Ether() / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=40000, dport=37008)
    return raw(outer / (b"\x01\x00\x00\x01\x01" + raw(inner)))


def test_an_engine_told_what_others_decoded_samples_its_streams_on() -> None:
    """Told that other engines decoded 600 packets of the stream, an engine samples it at the
    late stride from its first packets here, each standing for as many; told while the stream
    is being decoded in full, it turns to the sample then."""
    frames = [_copy(i) for i in range(1000)]
    ts = 2000.0 + np.arange(1000) * 1e-3
    first = Engine()
    first.process(PacketBatch.of_frames(frames[:600], ts=1000.0 + np.arange(600) * 1e-3))
    ((key, decoded),) = first.decoded_counts(8)
    assert decoded >= first.detection.full_decode
    fresh, told, late = Engine(), Engine(), Engine()
    told.decoded_elsewhere({key: 600})
    for e in (fresh, told):
        e.process(PacketBatch.of_frames(frames, ts=ts))
    late.process(PacketBatch.of_frames(frames[:50], ts=ts[:50]))
    late.decoded_elsewhere({key: 600})
    late.process(PacketBatch.of_frames(frames[50:], ts=ts[50:]))
    (a,), (b,), (c,) = [[st.evidence for st in e.streams.values()] for e in (fresh, told, late)]
    assert a.packets == b.packets == c.packets == 1000
    det = told.detection
    assert a.decoded > det.full_decode > 10 * b.decoded
    assert 50 <= c.decoded < 50 + 2 * -(-950 // det.late_sample_stride)
    for s in (b, c):
        assert abs(s.carried_packets - 1000) <= det.late_sample_stride


def test_without_a_file_to_lock_each_process_keeps_to_its_own_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where neither an in-memory nor a temporary file can be made, the scan still runs: every
    run is read by its own process, and none is taken over."""
    import tempfile

    def refused(*args: object, **kwargs: object) -> NoReturn:
        raise OSError("not here")

    monkeypatch.setattr(os, "memfd_create", refused)
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    _taken_over_whenever_possible(monkeypatch)
    c = Claims([MB] * 4, [(0, 2), (2, 4)])
    assert not c.shared
    assert [c.take(1), c.take(1), c.take(1)] == [2, 3, None]
    assert c.take_over(1) is None and c.take(0) == 0
    c.tell(0, [(7, 100)])
    assert c.told_elsewhere(1) == {}
    c.close()
