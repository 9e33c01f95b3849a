"""Evidence captures of a live watch (``--evidence DIR``), within a size cap.

A finding's captures are written (through the same writer as ``scan --evidence``) when it is
first reported, when it escalates, when its stream ends and at exit; a finding's files are
rewritten in place, so the directory holds one set per finding.  When the directory grows past
its cap the least recently written captures are removed first: the newest evidence is kept.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from detector.findings import Finding
from detector.report.evidence_pcap import write_evidence

if TYPE_CHECKING:
    from detector.evidence import StreamEvidence

CAPTURE_SUFFIXES = (".pcap", ".pcapng")


class EvidenceStore:
    def __init__(self, directory: str, max_bytes: int, max_packets: int = 200) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.max_packets = max_packets
        self.written = 0
        self.removed = 0
        self._warned = False

    def check(self) -> str | None:
        """Why the directory cannot be used (checked before the watch starts), or None."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".mirrorwatch-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return f"--evidence {self.dir}: {exc.strerror}"
        return None

    def save(self, pairs: list[tuple[Finding, StreamEvidence]]) -> None:
        if not pairs:
            return
        # write_evidence takes a scan result: the few fields it reads, for these findings.
        result: Any = SimpleNamespace(
            report=SimpleNamespace(findings=[f for f, _ in pairs]),
            evidence={f.id: ev for f, ev in pairs},
        )
        try:
            self.written += len(write_evidence(result, self.dir, self.max_packets))
        except OSError as exc:
            if not self._warned:  # once: a full disk must not stop the watch
                self._warned = True
                print(f"mirrorwatch watch: cannot write evidence in {self.dir}: {exc.strerror}",
                      file=sys.stderr)  # fmt: skip
            return
        self._rotate()

    def _rotate(self) -> None:
        files = []
        for p in self.dir.iterdir():
            if p.suffix in CAPTURE_SUFFIXES and p.is_file():
                st = p.stat()
                files.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
            self.removed += 1

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.suffix in CAPTURE_SUFFIXES)
