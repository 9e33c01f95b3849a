"""Capture straight from the kernel: an AF_PACKET socket with a TPACKET_V3 ring.

The kernel fills blocks of frames in a ring shared with this process; a block is handed over
when it is full or after RETIRE_MS, so there is no system call per packet and no pipe to copy
through (the tcpdump child path costs a write and a read per packet and could not keep up with
1 Gb/s beside the engine on two cores).  Ready blocks are copied out, given back to the kernel
at once, and handed to the engine as one batch.  The block timeout is never 0: a ring that waits
for full blocks starves on sparse traffic.

Needs CAP_NET_RAW (root); ``watch --capture auto`` falls back to the tcpdump child without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import select
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import numpy as np

from detector.capture.reader import PAD, InputStats, PacketBatch
from detector.live.capture import CaptureStartError, SourceStats

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
# Ring: BLOCKS blocks of BLOCK_SIZE bytes (64 MiB in all, like the tcpdump child's -B default).
BLOCK_SIZE = 1 << 20
FRAME_SIZE = 1 << 11
RETIRE_MS = 50
# Blocks gathered into one engine batch at most (the engine's cost per batch is mostly fixed).
BATCH_BLOCKS = 8
POLL_MS = 200

# struct tpacket_block_desc / tpacket_hdr_v1 and struct tpacket3_hdr, the fields read here.
BLOCK_STATUS, BLOCK_NUM_PKTS, BLOCK_FIRST = 8, 12, 16
PKT = struct.Struct("=IIIIIIHH")  # next_offset, sec, nsec, snaplen, len, status, mac, net


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def compile_filter(iface: str, bpf: str) -> list[tuple[int, int, int, int]]:
    """The classic BPF program of a tcpdump filter expression (tcpdump -ddd compiles it)."""
    try:
        out = subprocess.run(
            ["tcpdump", "-i", iface, "-ddd", bpf], capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise CaptureStartError(
            "compiling --filter needs tcpdump (apt-get install tcpdump)"
        ) from exc
    if out.returncode != 0:
        raise CaptureStartError(f"bad --filter {bpf!r}: {out.stderr.strip()}")
    lines = out.stdout.split("\n")
    count = int(lines[0])
    prog = [tuple(int(x) for x in line.split()) for line in lines[1 : count + 1]]
    return [(a, b, c, d) for a, b, c, d in prog]


class AfPacketSource:
    """One interface captured through a TPACKET_V3 ring; yields engine batches."""

    ends_normally = False

    def __init__(self, name: str, bpf: str | None = None, ring_bytes: int = 64 << 20) -> None:
        self.name = name
        self.bpf = bpf
        self.blocks = max(4, ring_bytes // BLOCK_SIZE)
        self.stats = SourceStats(name)
        self.stopping = False
        self.sock: socket.socket | None = None
        self.ring: mmap.mmap | None = None
        self._filter: ctypes.Array[_SockFilter] | None = None
        self._next = 0
        self._error: str | None = None

    # -- set up ---------------------------------------------------------------------------

    def start(self) -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise CaptureStartError(
                f"capture on {self.name}: no permission for a packet socket (run as root or "
                "give mirrorwatch CAP_NET_RAW, or use --capture tcpdump)"
            ) from exc
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = struct.pack(
                "=7I", BLOCK_SIZE, self.blocks, FRAME_SIZE,
                BLOCK_SIZE // FRAME_SIZE * self.blocks, RETIRE_MS, 0, 0,
            )  # fmt: skip
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            if self.bpf:
                self._attach_filter(sock, compile_filter(self.name, self.bpf))
            self.ring = mmap.mmap(sock.fileno(), BLOCK_SIZE * self.blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            sock.bind((self.name, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            hint = " (check the name with `ip link`)" if exc.errno == 19 else ""
            raise CaptureStartError(f"capture on {self.name} failed: {exc.strerror}{hint}") from exc
        self.sock = sock
        self._read_drops()  # the counters start from zero here

    def _attach_filter(self, sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
        self._filter = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
        fprog = _SockFprog(len(prog), ctypes.cast(self._filter, ctypes.POINTER(_SockFilter)))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))

    # -- reading --------------------------------------------------------------------------

    def batches(self, stats: InputStats) -> Iterator[PacketBatch]:
        """Batches until stopped; each is the frames of one or more ring blocks."""
        assert self.sock is not None and self.ring is not None
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        while not self.stopping:
            chunks = self._take_blocks()
            if not chunks:
                poller.poll(POLL_MS)
                continue
            batch = _batch(chunks)
            self._count(batch)
            if len(batch):
                yield batch
        # What the kernel still holds when we stop: wait for it to retire the open block.
        time.sleep(2 * RETIRE_MS / 1000)
        chunks = self._take_blocks()
        if chunks:
            batch = _batch(chunks)
            self._count(batch)
            if len(batch):
                yield batch

    def _count(self, batch: PacketBatch) -> None:
        self.stats.tool["captured"] = self.stats.tool.get("captured", 0) + len(batch)

    def _take_blocks(self) -> list[bytes]:
        """Copy out the ready blocks (at most BATCH_BLOCKS) and give them back to the kernel."""
        ring = self.ring
        assert ring is not None
        chunks = []
        for _ in range(BATCH_BLOCKS):
            base = self._next * BLOCK_SIZE
            status = struct.unpack_from("=I", ring, base + BLOCK_STATUS)[0]
            if not status & TP_STATUS_USER:
                break
            chunks.append(ring[base : base + BLOCK_SIZE])
            struct.pack_into("=I", ring, base + BLOCK_STATUS, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % self.blocks
        return chunks

    # -- counters and life cycle ----------------------------------------------------------

    def _read_drops(self) -> None:
        if self.sock is None:
            return
        with contextlib.suppress(OSError):
            got = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            packets, drops, _freeze = struct.unpack("=III", got)
            tool = self.stats.tool
            # The kernel resets these counters on every read: keep the running totals.
            tool["received_by_filter"] = tool.get("received_by_filter", 0) + packets
            tool["dropped_by_kernel"] = tool.get("dropped_by_kernel", 0) + drops

    def request_stats(self) -> int:
        self._read_drops()
        return 0

    def wait_stats(self, ticket: int, timeout: float) -> None:
        pass

    def running(self) -> bool:
        return self.sock is not None

    def failed(self) -> str | None:
        return self._error

    def stop(self) -> None:
        self.stopping = True
        self._read_drops()

    def close(self) -> None:
        self._read_drops()
        if self.ring is not None:
            with contextlib.suppress(BufferError, ValueError):
                self.ring.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _batch(chunks: list[bytes]) -> PacketBatch:
    """The frames of copied ring blocks as one batch (Ethernet link type)."""
    buf = b"".join(chunks) + bytes(PAD)
    offs: list[int] = []
    caps: list[int] = []
    lens: list[int] = []
    tss: list[float] = []
    unpack = PKT.unpack_from
    for i, block in enumerate(chunks):
        base = i * BLOCK_SIZE
        n, first = struct.unpack_from("=II", block, BLOCK_NUM_PKTS)
        pos = first
        for _ in range(n):
            nxt, sec, nsec, snap, length, _status, mac, _net = unpack(block, pos)
            offs.append(base + pos + mac)
            caps.append(snap)
            lens.append(max(length, snap))
            tss.append(sec + nsec * 1e-9)
            if not nxt:
                break
            pos += nxt
    return PacketBatch(
        data=np.frombuffer(buf, dtype=np.uint8),
        offsets=np.asarray(offs, dtype=np.int64),
        caplen=np.asarray(caps, dtype=np.int64),
        wirelen=np.asarray(lens, dtype=np.int64),
        ts=np.asarray(tss, dtype=np.float64),
        linktype=np.full(len(offs), 1, dtype=np.int32),
    )
