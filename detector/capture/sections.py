"""Where a part of a pcapng file starts: the first block at or after a byte offset, and what a
reader starting there must be told first.

A pcapng packet block names its interface by index; the link type, timestamp resolution and
snap length of that interface are in an Interface Description Block earlier in the section
(anywhere earlier: an interface can be added mid-file), and the byte order is the Section
Header's.  Only a walk of the block chain from the start of the file finds the real block
boundaries (a packet's bytes can look like a block header) and every description in force, so
this walks it, reading block headers only and stepping over bodies by their length.  A part
read after the section header and the descriptions found here sees what a reader of the whole
file sees at that block.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from detector.capture.reader import BYTE_ORDERS, IDB, MAX_BLOCK, SHB

# Bytes read at a time by the walk.
CHUNK = 8 << 20


class _HeaderWalk:
    """Block headers of a pcapng file, from its start."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.data = b""
        self.base = 0  # file offset of data[0]
        self.head = struct.Struct("<II").unpack_from
        self.pos = 0  # where the next block starts, in data
        self.section = b""  # the section header in force, as it is in the file
        self.interfaces: list[bytes] = []  # the section's interface descriptions, in order

    def hold(self, pos: int, need: int) -> bool:
        """Keep ``data[pos:]`` and read on until ``need`` bytes from ``pos`` are held; False at
        the end of the file."""
        if pos > len(self.data):
            self.f.seek(self.base + pos)
        self.data = self.data[pos:]
        self.base += pos
        while len(self.data) < need:
            chunk = self.f.read(max(CHUNK, need - len(self.data)))
            if not chunk:
                return False
            self.data += chunk
        return True

    def to(self, target: int) -> int | None:
        """Walk on to the first block that starts at or after ``target``: its file offset, or
        None where the file ends or its chain breaks before (a reader stops there too)."""
        pos = self.pos
        while self.base + pos < target:
            if pos + 12 > len(self.data):
                if not self.hold(pos, 12):
                    return None
                pos = 0
            data, head, kept = self.data, self.head, (SHB, IDB)
            goal = min(target - self.base, len(data) - 11)
            # Most blocks are packets: step over them by their length.
            while pos < goal:
                btype, blen = head(data, pos)
                if btype in kept or blen < 12 or blen % 4 or blen > MAX_BLOCK:
                    break
                pos += blen
            else:
                continue
            pos = self._kept_block(pos)
            if pos < 0:
                return None
        self.pos = pos
        return self.base + pos

    def _kept_block(self, pos: int) -> int:
        """The section header or interface description at ``pos`` taken note of (or a broken
        chain): where the next block starts, -1 if there is none."""
        btype, blen = self.head(self.data, pos)
        if btype == SHB:
            endian = BYTE_ORDERS.get(self.data[pos + 8 : pos + 12])
            if endian is None:
                return -1
            self.head = struct.Struct(endian + "II").unpack_from
            btype, blen = self.head(self.data, pos)
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            return -1
        if not self.hold(pos, blen):
            return -1
        block = self.data[:blen]
        if btype == SHB:
            self.section, self.interfaces = block, []
        else:
            self.interfaces.append(block)
        return blen


def sections_at(path: str, targets: list[int]) -> list[tuple[int, bytes]]:
    """For each of ``targets`` (increasing), in one walk: the file offset of the first block
    that starts at or after it, and the blocks to read before that one (its section header and
    the interface descriptions in force there).  The list ends early where the file ends or its
    chain breaks."""
    found: list[tuple[int, bytes]] = []
    with open(path, "rb") as f:
        walk = _HeaderWalk(f)
        for target in targets:
            at = walk.to(target)
            if at is None:
                break
            found.append((at, walk.section + b"".join(walk.interfaces)))
    return found
