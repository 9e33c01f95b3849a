"""Scanning on a Dask cluster gives the findings a local scan gives."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mwtest import PCAPS, uplink_capture
from test_pcapng_parts import interface, packet, section

from detector import cluster, parts
from detector.capture.reader import InputStats, open_stream, read_batches
from detector.cli import main
from detector.detection import Detection
from detector.flows import table
from detector.parts import Part
from detector.scan import scan_paths

distributed = pytest.importorskip("distributed", reason="the cluster extra (Dask) is not installed")

SAMPLES = ["tzsp.pcap", "erspan-2.pcap", "netflow-v9.pcap", "mirror-with-natives.pcap",
           "pcli.pcap", "tzsp.pcap.gz", "two-links.pcapng"]  # fmt: skip


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    # Two single-threaded workers in this process: they start in a fraction of a second, and a
    # task still travels pickled through the scheduler as it does between machines.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as lc:
        yield lc.scheduler_address


@pytest.fixture(scope="module")
def uplink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uplink_capture(tmp_path_factory.mktemp("cluster") / "uplink.pcap", 20000)


def _same_findings(local: object, remote: object, exact_watched: bool) -> None:
    one, two = local.report, remote.report  # type: ignore[attr-defined]
    assert [(f.id, f.kind, f.protocol, f.severity) for f in one.findings] == [
        (f.id, f.kind, f.protocol, f.severity) for f in two.findings
    ]
    for f, g in zip(one.findings, two.findings, strict=True):
        assert (f.packets, f.bytes, f.first_seen, f.last_seen) == (
            g.packets, g.bytes, g.first_seen, g.last_seen,
        ), f.id  # fmt: skip
        if exact_watched and f.packets <= Detection().full_decode:
            assert sorted(map(str, f.watched)) == sorted(map(str, g.watched)), f.id
        else:
            # A stream cut between tasks, past the packets decoded in full: its watched hosts
            # are a sample (each engine samples its part), alike in size.
            assert bool(f.watched) == bool(g.watched), f.id
    for key in ("packets", "bytes", "ip_packets", "non_ip_packets", "hosts"):
        assert one.stats[key] == two.stats[key], key
    assert [(i.path, i.packets, i.errors) for i in one.inputs] == [
        (i.path, i.packets, i.errors) for i in two.inputs
    ]


def test_samples_one_task_each_report_what_one_engine_does(
    scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "TASK_BYTES", 1)  # every file a task of its own
    files = [str(PCAPS / name) for name in SAMPLES]
    assert len(cluster.cluster_plan(files)) == len(files)
    local = scan_paths(files, jobs=1)
    remote = scan_paths(files, cluster=scheduler)
    assert remote.report.stats["workers"] == len(files)
    assert {f.kind for f in local.report.findings} >= {"mirror", "flow-export", "intercept"}
    _same_findings(local, remote, exact_watched=True)


def _cut_in_three_reports_what_one_engine_does(
    capture: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parts, "SPLIT_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(cluster, "TASK_BYTES", capture.stat().st_size // 3 + 1)
    tasks = cluster.cluster_plan([str(capture)])
    assert len(tasks) == 3
    pieces = [p for t in tasks for p in t]
    assert pieces[0].start == 0 and pieces[-1].end is None
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    local = scan_paths([str(capture)], jobs=1)
    remote = scan_paths([str(capture)], cluster=scheduler)
    assert len(local.report.findings) >= 3  # the mirror streams and the flow export
    _same_findings(local, remote, exact_watched=False)


def test_a_large_pcap_cut_in_pieces_reports_what_one_engine_does(
    scheduler: str, uplink: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cut_in_three_reports_what_one_engine_does(uplink, scheduler, monkeypatch)


def test_a_large_pcapng_cut_in_pieces_reports_what_one_engine_does(
    scheduler: str, uplink: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The uplink capture written again as pcapng: each task must start on a block of the real
    # chain and carry the section and interface in force there.
    ng = tmp_path / "uplink.pcapng"
    with ng.open("wb") as out:
        out.write(section("<") + interface(1, "<"))
        for b in read_batches(open_stream(str(uplink)), InputStats("uplink")):
            out.write(b"".join(packet(b.packet(i), float(b.ts[i]), 0, "<") for i in range(len(b))))
    _cut_in_three_reports_what_one_engine_does(ng, scheduler, monkeypatch)


def test_a_task_hashes_flow_keys_with_the_salt_it_carries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = [Part(str(PCAPS / "tzsp.pcap"))]
    monkeypatch.setattr(table, "SALT", table.U64(1))
    here = cluster.run_task(task, 12345, None, None)
    monkeypatch.setattr(table, "SALT", table.U64(2))  # a worker process drew another salt
    there = cluster.run_task(task, 12345, None, None)
    other = cluster.run_task(task, 999, None, None)
    assert np.array_equal(np.sort(here.flow_keys), np.sort(there.flow_keys))
    assert not np.array_equal(np.sort(here.flow_keys), np.sort(other.flow_keys))


def test_a_worker_of_another_version_stops_the_scan(
    scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "worker_version", lambda: "0.0.0-other")
    r = CliRunner().invoke(main, ["scan", "-q", "--cluster", scheduler, str(PCAPS / "tzsp.pcap")])
    assert r.exit_code == 2
    assert "workers without mirrorwatch" in r.stderr and "0.0.0-other" in r.stderr


def test_standard_input_and_an_unreachable_scheduler_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = CliRunner().invoke(main, ["scan", "-q", "--cluster", "tcp://127.0.0.1:9", "-"])
    assert r.exit_code == 2 and "standard input" in r.stderr
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    r = CliRunner().invoke(
        main, ["scan", "-q", "--cluster", "tcp://127.0.0.1:9", str(PCAPS / "tzsp.pcap")]
    )
    assert r.exit_code == 2 and "cannot reach the Dask scheduler" in r.stderr
