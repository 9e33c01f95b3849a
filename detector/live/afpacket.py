"""Capture straight from the kernel: an AF_PACKET socket with a TPACKET_V3 ring.

The kernel fills blocks of frames in a ring shared with this process; a block is handed over
when it is full or after RETIRE_MS, so there is no system call per packet and no pipe to copy
through (the tcpdump child path costs a write and a read per packet and could not keep up with
1 Gb/s beside the engine on two cores).  Ready blocks are copied out, given back to the kernel
at once, and handed to the engine as one batch.  The block timeout is never 0: a ring that waits
for full blocks starves on sparse traffic.

The socket is opened for no protocol, its filter attached and its ring mapped before ``bind``
names the interface and ETH_P_ALL: the kernel hooks the socket in only then, so the ring never
holds a frame the filter would have refused.  The interface is put in promiscuous mode through a
packet membership (dropped by the kernel when the socket closes; CAP_NET_RAW is enough).

Faults: when the interface goes down the kernel flags the socket (POLLERR, ENETDOWN) and stops
delivering; the source says so (a "down" notice) and the kernel resumes delivery by itself when
the interface comes back up ("up").  When the interface disappears (deleted, or replaced by
another of the same name) the capture has ended: ``failed()`` says so and the watch exits 2.

Needs CAP_NET_RAW (root); ``watch --capture auto`` falls back to the tcpdump child without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import select
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import numpy as np

from detector.capture.reader import PAD, InputStats, PacketBatch
from detector.live.source import CaptureStartError, Notice, NoticeBoard, SourceStats

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
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

    def __init__(
        self, name: str, bpf: str | None = None, ring_bytes: int = 64 << 20, promisc: bool = True
    ) -> None:
        self.name = name
        self.bpf = bpf
        self.promisc = promisc
        self.blocks = max(4, ring_bytes // BLOCK_SIZE)
        self.stats = SourceStats(name)
        self.notices = NoticeBoard()
        self.stopping = False
        self.ifindex = 0
        self.sock: socket.socket | None = None
        self.ring: mmap.mmap | None = None
        self._filter: ctypes.Array[_SockFilter] | None = None
        self._next = 0
        self._error: str | None = None

    # -- set up ---------------------------------------------------------------------------

    def start(self) -> None:
        # Compiled before the socket exists: nothing is captured while tcpdump compiles.
        prog = compile_filter(self.name, self.bpf) if self.bpf else None
        try:
            # Protocol 0: the socket receives nothing until bind() names the protocol.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise CaptureStartError(
                f"capture on {self.name}: no permission for a packet socket (run as root or "
                "give mirrorwatch CAP_NET_RAW, or use --capture tcpdump)"
            ) from exc
        try:
            self.ifindex = socket.if_nametoindex(self.name)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if prog:
                self._attach_filter(sock, prog)
            req = struct.pack(
                "=7I", BLOCK_SIZE, self.blocks, FRAME_SIZE,
                BLOCK_SIZE // FRAME_SIZE * self.blocks, RETIRE_MS, 0, 0,
            )  # fmt: skip
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.ring = mmap.mmap(sock.fileno(), BLOCK_SIZE * self.blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            sock.bind((self.name, ETH_P_ALL))
            if self.promisc:
                # struct packet_mreq: ifindex, type, address length, address (unused here).
                mreq = struct.pack("=iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            if self.ring is not None:
                self.ring.close()
                self.ring = None
            sock.close()
            # if_nametoindex says "no interface with this name" without an errno.
            missing = exc.errno in (errno.ENODEV, errno.ENXIO, None)
            hint = " (check the name with `ip link`)" if missing else ""
            why = "no such interface" if missing else (exc.strerror or str(exc))
            raise CaptureStartError(f"capture on {self.name} failed: {why}{hint}") from exc
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
        self._check_link()  # an interface that is down at start flags the socket at once
        while not self.stopping and self._error is None:
            chunks = self._take_blocks()
            if not chunks:
                flagged = any(ev & ~select.POLLIN for _, ev in poller.poll(POLL_MS))
                if flagged or self.stats.state != "up":
                    self._check_link()
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

    # -- the interface's state ------------------------------------------------------------

    def _check_link(self) -> None:
        """Clear the socket's error and follow the interface: down, back up, or gone."""
        sock = self.sock
        assert sock is not None
        with contextlib.suppress(OSError):
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading it clears POLLERR
        try:
            now = socket.if_nametoindex(self.name)
        except OSError:
            now = 0
        if now != self.ifindex:
            self._error = f"capture on {self.name} ended: the interface disappeared" + (
                " (another of the same name took its place)" if now else ""
            )
            self.stats.state = "gone"  # the loop writes the event as it ends the watch
            return
        up = self._is_up(sock)
        if up is False and self.stats.state == "up":
            self.stats.state = "down"
            self.notices.post(
                Notice(
                    self.name, "down", f"{self.name} is down: nothing is captured until it is up"
                )
            )
        elif up and self.stats.state == "down":
            self.stats.state = "up"
            self.notices.post(Notice(self.name, "up", f"{self.name} is up: capture resumed"))

    def _is_up(self, sock: socket.socket) -> bool | None:
        """IFF_UP of the interface (None when the kernel will not say)."""
        try:
            got = fcntl.ioctl(
                sock.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", self.name.encode(), 0)
            )
        except OSError:
            return None
        return bool(struct.unpack_from("H", got, 16)[0] & IFF_UP)

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
