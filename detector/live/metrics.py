"""Prometheus metrics of a live watch: served on a local port and/or written to a textfile for
node_exporter's textfile collector.

The loop hands a snapshot of its counters to ``Metrics.update`` (about once a second); a scrape
reads the latest snapshot, so it never takes the engine's lock.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from detector.severity import SEVERITY_ORDER


@dataclass
class Snapshot:
    packets: int = 0
    bytes: int = 0
    streams: int = 0
    active_flows: int = 0
    uptime: float = 0.0
    findings_by_severity: dict[str, int] = field(default_factory=dict)
    # Per capture interface: read packets, kernel drops, interface drops, 1 while capturing.
    captures: list[dict[str, Any]] = field(default_factory=list)


class _Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snap = Snapshot()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            s = self.snap
        yield _counter("mirrorwatch_packets", "Packets processed by the engine.", s.packets)
        yield _counter("mirrorwatch_bytes", "Bytes (on the wire) processed by the engine.", s.bytes)
        yield GaugeMetricFamily("mirrorwatch_streams", "Streams being followed.", value=s.streams)
        yield GaugeMetricFamily(
            "mirrorwatch_flows_active", "Flows in the flow table.", value=s.active_flows
        )
        yield GaugeMetricFamily(
            "mirrorwatch_uptime_seconds", "Seconds since the watch started.", value=s.uptime
        )
        found = GaugeMetricFamily(
            "mirrorwatch_findings", "Findings standing, by severity.", labels=["severity"]
        )
        for sev in SEVERITY_ORDER:
            found.add_metric([sev], s.findings_by_severity.get(sev, 0))
        yield found
        read = CounterMetricFamily(
            "mirrorwatch_capture_packets", "Packets read from each capture.", labels=["interface"]
        )
        drops = CounterMetricFamily(
            "mirrorwatch_capture_drops",
            "Packets the capture lost (kernel: the watch fell behind; interface: the NIC).",
            labels=["interface", "where"],
        )
        up = GaugeMetricFamily(
            "mirrorwatch_capture_up", "1 while the capture's interface is up.", labels=["interface"]
        )
        for c in s.captures:
            name = str(c["interface"])
            read.add_metric([name], int(c.get("read_packets", 0)))
            drops.add_metric([name, "kernel"], int(c.get("dropped_by_kernel", 0)))
            drops.add_metric([name, "interface"], int(c.get("dropped_by_interface", 0)))
            up.add_metric([name], 1 if c.get("state", "up") == "up" else 0)
        yield read
        yield drops
        yield up


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class Metrics:
    """The watch's metrics registry, its HTTP endpoint and its textfile (each optional)."""

    def __init__(self, textfile: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = _Collector()
        self.registry.register(self._collector)  # type: ignore[arg-type]
        self.textfile = textfile
        self.port: int | None = None
        self._server: Any = None
        self._warned = False

    def serve(self, address: str, port: int) -> int:
        """Serve /metrics on address:port (port 0: any free port); returns the port."""
        got = start_http_server(port, addr=address, registry=self.registry)
        if isinstance(got, tuple):  # prometheus_client >= 0.20 returns (server, thread)
            self._server = got[0]
            self.port = int(got[0].server_port)
        else:
            self.port = port
        return self.port

    def update(self, snap: Snapshot) -> None:
        with self._collector.lock:
            self._collector.snap = snap
        if self.textfile:
            try:
                write_to_textfile(self.textfile, self.registry)  # a temporary file, renamed
            except OSError as exc:
                if not self._warned:  # once: the watch goes on, its events are what matter
                    self._warned = True
                    print(f"mirrorwatch watch: cannot write metrics to {self.textfile}: "
                          f"{exc.strerror}", file=sys.stderr)  # fmt: skip

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def check_textfile(path: str) -> str | None:
    """Why metrics cannot be written to ``path`` (checked before the watch starts), or None."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"--metrics-textfile {path}: no such directory {folder}"
    if not os.access(folder, os.W_OK):
        return f"--metrics-textfile {path}: cannot write in {folder}"
    return None
