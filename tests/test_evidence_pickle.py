"""Stream evidence crosses from a worker process to the scan as a pickle: nothing may change."""

from __future__ import annotations

import pickle

from detector.evidence import HostTally, StreamEvidence


def _evidence() -> StreamEvidence:
    ev = StreamEvidence(
        key=7, flow_key=9, direction=0, protocol="netflow-v9", kind="metadata-export",
        transport="udp", src="192.0.2.1", dst="198.51.100.2", sport=40000, dport=2055,
    )  # fmt: skip
    ev.hosts = {
        "10.0.0.1": HostTally(3.0, 180.5),
        "02:00:00:00:00:09": HostTally(1.0, 60.0, mac="02:00:00:00:00:09", named_by_mac=True),
    }
    ev.record_hosts = {f"10.1.{i >> 8}.{i & 255}": HostTally(i * 0.5, i * 99.0) for i in range(300)}
    ev.record_hosts["10.1.0.7"].mac = "02:00:00:00:00:07"
    ev.records = 300
    return ev


def _tallies(table: dict[str, HostTally]) -> list[tuple[str, float, float, str | None, bool]]:
    return [(k, t.packets, t.bytes, t.mac, t.named_by_mac) for k, t in table.items()]


def test_host_tables_come_back_whole_and_in_order() -> None:
    ev = _evidence()
    again = pickle.loads(pickle.dumps(ev, protocol=pickle.HIGHEST_PROTOCOL))
    assert _tallies(again.hosts) == _tallies(ev.hosts)
    assert _tallies(again.record_hosts) == _tallies(ev.record_hosts)
    assert all(isinstance(t, HostTally) for t in again.record_hosts.values())
    # Every other field as it was; the original is left alone.
    rest = {k: v for k, v in vars(ev).items() if k not in ("hosts", "record_hosts")}
    assert {k: v for k, v in vars(again).items() if k not in ("hosts", "record_hosts")} == rest
    assert isinstance(ev.hosts["10.0.0.1"], HostTally)


def test_folded_copies_do_not_share_tallies() -> None:
    ev = _evidence()
    again = pickle.loads(pickle.dumps(ev))
    again.absorb(ev)
    assert again.record_hosts["10.1.0.2"].packets == 2.0
    assert ev.record_hosts["10.1.0.2"].packets == 1.0
    assert again.hosts["02:00:00:00:00:09"].named_by_mac
