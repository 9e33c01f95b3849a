"""In-order delivery of one direction of a TCP connection, for formats framed in a byte stream.

Only connections already recognised as a handover or remote-capture stream are reassembled, so
the cost is paid for those few.  Retransmissions and overlaps are trimmed, out-of-order segments
wait (bounded per stream and in total); when the wait grows too large the gap is skipped and
reported, and the decoder resynchronises on the next PDU boundary.

Sequence numbers are unwrapped into positions from the stream's first byte, and waiting
segments are kept in a heap by position: each segment is pushed and popped once, so the cost is
linear in the segments (one-byte segments sent last first cost no more than any others).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

MOD = 1 << 32
# Bookkeeping charged per waiting segment on top of its bytes (a dict slot, a heap entry, the
# bytes object): one-byte segments must not fit a million into a 1 MiB budget.
SEGMENT_OVERHEAD = 96


def _rel(a: int, b: int) -> int:
    """Signed distance from sequence number b to a, modulo 2**32."""
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


@dataclass(repr=False, eq=False)
class TcpBuffer:
    """One direction of one connection: where it is, and the segments that wait for a gap."""

    seq: int  # sequence number of the next byte wanted
    pos: int = 0  # its position from the stream's first byte
    heap: list[int] = field(default_factory=list)  # positions of waiting segments
    waiting: dict[int, bytes] = field(default_factory=dict)
    cost: int = 0  # bytes charged for the waiting segments

    def pending_bytes(self) -> int:
        return sum(len(v) for v in self.waiting.values())


class TcpReassembler:
    """Puts segments in order for any number of streams, each with its own ``TcpBuffer``,
    under a budget of waiting bytes per stream and over every stream together."""

    def __init__(self, max_pending_bytes: int = 1 << 20, max_total_bytes: int = 32 << 20) -> None:
        self.max_pending = max_pending_bytes
        self.max_total = max_total_bytes
        self.total = 0  # bytes charged over every stream
        self.shed_bytes = 0  # waiting bytes given up because a budget was reached

    def start(self, seq: int) -> TcpBuffer:
        """A buffer for a stream whose next byte is ``seq`` (it waits on this budget)."""
        return TcpBuffer(seq % MOD)

    def push(self, st: TcpBuffer, seq: int, data: bytes) -> tuple[bytes, bool]:
        """Add a segment; return the bytes now in order and whether a gap was skipped."""
        if not data:
            return b"", False
        rel = _rel(seq, st.seq)
        if rel < 0:
            if rel + len(data) <= 0:
                return b"", False  # pure retransmission
            data, rel = data[-rel:], 0
        if rel == 0:
            return self._drain(st, data), False
        at = st.pos + rel
        old = st.waiting.get(at)
        if old is None or len(old) < len(data):
            charge = len(data) + (SEGMENT_OVERHEAD if old is None else -len(old))
            if old is None:
                heapq.heappush(st.heap, at)
            st.waiting[at] = data
            st.cost += charge
            self.total += charge
        if st.cost <= self.max_pending and self.total <= self.max_total:
            return b"", False
        # Waited too long for the missing bytes (or every stream together holds too much):
        # skip to the earliest waiting segment.
        if st.cost <= self.max_pending:
            self.shed_bytes += st.cost
        first = st.heap[0]
        st.seq = (st.seq + first - st.pos) % MOD
        st.pos = first
        return self._drain(st, b""), True

    def _drain(self, st: TcpBuffer, data: bytes) -> bytes:
        out = [data] if data else []
        end = st.pos + len(data)
        while st.heap and st.heap[0] <= end:
            at = heapq.heappop(st.heap)
            chunk = st.waiting.pop(at)
            st.cost -= len(chunk) + SEGMENT_OVERHEAD
            self.total -= len(chunk) + SEGMENT_OVERHEAD
            over = end - at
            if over < len(chunk):
                out.append(chunk[over:])
                end += len(chunk) - over
        st.seq = (st.seq + end - st.pos) % MOD
        st.pos = end
        return b"".join(out)

    def forget(self, st: TcpBuffer | None) -> None:
        """The stream is gone: its waiting bytes leave the budget."""
        if st is not None:
            self.total -= st.cost
            st.cost = 0
            st.heap.clear()
            st.waiting.clear()
