"""What every capture source of ``watch`` shares: its counters, its start error, the notices it
raises while running, and the interface the loop drives it through.

Kept apart from the sources themselves (capture.py: a tcpdump child or an open stream;
afpacket.py: the kernel ring) so neither imports the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from detector.capture.reader import InputStats, PacketBatch


class CaptureStartError(Exception):
    """A capture could not be started (tool missing, no such interface, no permission)."""


@dataclass(frozen=True)
class Notice:
    """A change in a capture's state worth a line in the event log (interface down, up, gone)."""

    interface: str
    state: str
    message: str


class SourceStats:
    """What one source delivered (the reader's counts and errors), and what its capture tool
    says it captured and dropped."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.input = InputStats(name)
        self.tool: dict[str, int] = {}
        # "up", or "down" while the interface is down (the kernel ring resumes by itself).
        self.state = "up"

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "interface": self.name,
            "read_packets": self.input.packets,
            "read_bytes": self.input.bytes,
        }
        out.update(self.tool)
        if self.state != "up":
            out["state"] = self.state
        if self.input.errors:
            out["errors"] = list(self.input.errors)
        return out


class NoticeBoard:
    """Notices raised by a reader thread, taken by the main thread that writes events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Notice] = []

    def post(self, notice: Notice) -> None:
        with self._lock:
            self._items.append(notice)

    def take(self) -> list[Notice]:
        with self._lock:
            items, self._items = self._items, []
        return items


class Source(Protocol):
    """A capture source as the loop drives it."""

    name: str
    stats: SourceStats
    stopping: bool
    notices: NoticeBoard

    def start(self) -> None: ...

    def batches(self, stats: InputStats) -> Iterator[PacketBatch]: ...

    def request_stats(self) -> int: ...

    def wait_stats(self, ticket: int, timeout: float) -> None: ...

    def running(self) -> bool: ...

    def failed(self) -> str | None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
