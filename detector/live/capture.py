"""Sources for ``watch``: a capture child writing pcap into a pipe, or a stream already open.

The child (tcpdump) holds the capture privileges; this process only reads the pipe.  The pipe is
raised to 1 MiB so a slow batch does not push back into the kernel ring at once.  The child's
stderr is read by a thread: its start line tells that the capture is open, and the counters it
prints (on SIGUSR1 and at exit) give the kernel drop figures.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import re
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO

from detector.capture.reader import InputStats, PacketBatch, read_batches
from detector.live.source import CaptureStartError, NoticeBoard, Source, SourceStats

__all__ = ["CaptureChild", "CaptureStartError", "Source", "SourceStats", "StreamSource"]

TCPDUMP = "tcpdump"
PIPE_SIZE = 1 << 20
# Kernel capture buffer asked of tcpdump (-B, KiB; libpcap's default is 2 MiB).  Bursts and the
# moments this process falls behind must fit in it: bench/live.py at 40k packets/s on two shared
# cores lost 4.6 % with 16 MiB, 0.9 % with 64 MiB, 0.3 % with 128 MiB.
BUFFER_KIB = 65536
# Reads from a capture pipe wait up to LINGER seconds for ENOUGH bytes (see Coalescing).
LINGER = 0.05
ENOUGH = 2 << 20
# A busy sensor starts and stops tcpdump slowly: these bound a hung child, not a slow one.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# tcpdump -U --immediate-mode: without immediate mode libpcap holds packets in its ring block for
# up to a second, and a stop soon after a burst loses it.  tcpdump's own read timeout (1 s) is
# kept: a timeout of 0 can starve a TPACKET_V3 capture on sparse traffic.
STATS_RE = re.compile(
    r"(\d+) packets? (captured|received by filter|dropped by kernel|dropped by interface)"
)
STAT_NAMES = {
    "captured": "captured",
    "received by filter": "received_by_filter",
    "dropped by kernel": "dropped_by_kernel",
    "dropped by interface": "dropped_by_interface",
}


class Coalescing(io.RawIOBase):
    """A pipe read that, once data is there, lingers briefly for more.

    The engine's cost per batch has a large fixed part (a few milliseconds of numpy calls), so
    batches of a handful of packets would cap a live watch far below the engine's rate.  The
    first read blocks as usual; further reads go on until ``enough`` bytes are in or ``linger``
    seconds have passed, which adds at most ``linger`` to the time a finding takes.
    """

    def __init__(self, raw: BinaryIO, linger: float = LINGER, enough: int = ENOUGH) -> None:
        super().__init__()
        self.raw = raw
        self.linger = linger
        self.enough = enough

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.raw.fileno()

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = self.raw.readinto(view)  # type: ignore[attr-defined]
        if not n:
            return n or 0
        want = min(len(view), self.enough)
        deadline = time.monotonic() + self.linger
        while n < want:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.raw], [], [], left)[0]:
                break
            got = self.raw.readinto(view[n:])  # type: ignore[attr-defined]
            if not got:
                break  # end of input: the next call returns 0
            n += got
        return int(n)


def tcpdump_argv(
    iface: str,
    bpf: str | None = None,
    buffer_kib: int | None = BUFFER_KIB,
    tool: str = TCPDUMP,
    promisc: bool = True,
) -> list[str]:
    argv = [tool, "-i", iface, "-n", "-U", "--immediate-mode", "-s", "0", "-w", "-"]
    if not promisc:
        argv.append("-p")  # tcpdump puts the interface in promiscuous mode unless told not to
    if buffer_kib:
        argv += ["-B", str(buffer_kib)]
    if bpf:
        argv.append(bpf)
    return argv


class CaptureChild:
    """A capture process whose stdout is a pcap stream.

    ``ready_marker`` is the stderr text that says the capture is open (None: ready at once);
    ``stats_signal`` makes the tool print its counters (tcpdump: SIGUSR1); ``ends_normally``
    says that the child running out is the end of the input rather than a failure.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready_marker: str | None = "listening on",
        stats_signal: int | None = signal.SIGUSR1,
        ends_normally: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready_marker = ready_marker
        self.stats_signal = stats_signal
        self.ends_normally = ends_normally
        self.stats = SourceStats(name)
        self.notices = NoticeBoard()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.lines: deque[str] = deque(maxlen=20)
        self._ready = threading.Event()
        self._stats_seen = threading.Condition()
        self._stats_count = 0
        self._stderr_thread: threading.Thread | None = None

    @property
    def stream(self) -> BinaryIO:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout

    def batches(self, stats: InputStats) -> Iterator[PacketBatch]:
        return read_batches(Coalescing(self.stream), stats, live=True)

    def start(self) -> None:
        try:
            # A new session: a Ctrl-C on the terminal reaches only us, and we stop the child
            # ourselves after the last batch, so its exit counters are complete.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise CaptureStartError(
                f"{self.argv[0]} not found: install it (Debian: apt-get install tcpdump)"
            ) from exc
        except PermissionError as exc:
            raise CaptureStartError(f"{self.argv[0]}: cannot run it: {exc.strerror}") from exc
        assert self.proc.stdout is not None
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, name=f"stderr-{self.name}", daemon=True
        )
        self._stderr_thread.start()
        if self.ready_marker is None:
            self._ready.set()
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._stderr_thread.join(1.0)
                if self._ready.is_set():
                    break
                self.stop()
                raise CaptureStartError(self._start_failure())

    def _start_failure(self) -> str:
        said = "; ".join(line for line in self.lines if line) or "no message"
        msg = f"capture on {self.name} failed: {said}"
        low = said.lower()
        if "permission" in low or "not permitted" in low:
            msg += " (run as root, or give the capture tool CAP_NET_RAW)"
        elif "no such device" in low:
            msg += " (check the name with `ip link`)"
        elif self.proc is not None and self.proc.returncode is None:
            msg = f"capture on {self.name} did not start within {READY_TIMEOUT:.0f} s: {said}"
        return msg

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            self.lines.append(line)
            if self.ready_marker and self.ready_marker in line:
                self._ready.set()
            found = STATS_RE.findall(line)
            if found:
                with self._stats_seen:
                    tool = self.stats.tool
                    for n, what in found:
                        # The tool's counters only grow: an answer to a request sent just
                        # before the stop may be printed after the exit counters, and must
                        # not take them back.
                        name = STAT_NAMES[what]
                        tool[name] = max(tool.get(name, 0), int(n))
                    # The kernel drop count comes last, both in the one-line answer to
                    # SIGUSR1 and in the lines printed at exit.
                    if "dropped by kernel" in line:
                        self._stats_count += 1
                        self._stats_seen.notify_all()

    def request_stats(self) -> int:
        """Ask the tool for its counters; returns a ticket for ``wait_stats``."""
        with self._stats_seen:
            ticket = self._stats_count
        if self.stats_signal is not None and self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.stats_signal)
        return ticket

    def wait_stats(self, ticket: int, timeout: float) -> None:
        if self.stats_signal is None:
            return
        with self._stats_seen:
            self._stats_seen.wait_for(lambda: self._stats_count > ticket, timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def failed(self) -> str | None:
        """Why the child ended on its own, or None (still running, stopped by us, or a normal
        end of input)."""
        if self.proc is None or self.stopping or self.running() or self.ends_normally:
            return None
        said = "; ".join(line for line in self.lines if line and "listening on" not in line)
        return f"capture on {self.name} ended (exit {self.proc.returncode}): {said or 'no message'}"

    def stop(self) -> None:
        """SIGINT (tcpdump flushes and prints its counters), then SIGKILL if it lingers."""
        self.stopping = True
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(STOP_TIMEOUT)  # its exit counters: ends at end of file

    def close(self) -> None:
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()


class StreamSource:
    """A pcap stream that is already open (stdin, a FIFO, a file): no child to manage."""

    ends_normally = True

    def __init__(self, name: str, stream: BinaryIO) -> None:
        self.name = name
        self.stream = stream
        self.stats = SourceStats(name)
        self.notices = NoticeBoard()
        self.stopping = False

    def batches(self, stats: InputStats) -> Iterator[PacketBatch]:
        return read_batches(Coalescing(self.stream), stats, live=True)

    @classmethod
    def open(cls, path: str) -> StreamSource:
        try:
            if path == "-":
                # Unbuffered: a buffered reader would wait to fill its buffer from a pipe.
                return cls("stdin", open(0, "rb", buffering=0, closefd=False))
            return cls(path, open(path, "rb", buffering=0))
        except OSError as exc:
            raise CaptureStartError(f"{path}: cannot open: {exc.strerror}") from exc

    def start(self) -> None:
        pass

    def request_stats(self) -> int:
        return 0

    def wait_stats(self, ticket: int, timeout: float) -> None:
        pass

    def running(self) -> bool:
        return False

    def failed(self) -> str | None:
        return None

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()


def pipe_size(fd: int) -> int | None:
    """The pipe's buffer size (for the tests and the summary), None when not a pipe."""
    try:
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except OSError:
        return None
