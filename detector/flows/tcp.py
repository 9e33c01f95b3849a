"""In-order delivery of one direction of a TCP connection, for formats framed in a byte stream.

Only connections already recognised as a handover or remote-capture stream are reassembled, so
the cost is paid for those few.  Retransmissions and overlaps are trimmed, out-of-order segments
wait (bounded); when the wait grows too large the gap is skipped and reported, and the decoder
resynchronises on the next PDU boundary.
"""

from __future__ import annotations

MOD = 1 << 32


def _rel(a: int, b: int) -> int:
    """Signed distance from sequence number b to a, modulo 2**32."""
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


class TcpReassembler:
    def __init__(self, max_pending_bytes: int = 1 << 20) -> None:
        self.max_pending = max_pending_bytes
        self.next: dict[int, int] = {}
        self.pending: dict[int, dict[int, bytes]] = {}
        self.gaps = 0

    def start(self, key: int, seq: int) -> None:
        self.next[key] = seq % MOD
        self.pending[key] = {}

    def push(self, key: int, seq: int, data: bytes) -> tuple[bytes, bool]:
        """Add a segment; return the bytes now in order and whether a gap was skipped."""
        nxt = self.next.get(key)
        if nxt is None or not data:
            return b"", False
        pend = self.pending[key]
        rel = _rel(seq, nxt)
        if rel < 0:
            if rel + len(data) <= 0:
                return b"", False  # pure retransmission
            data, rel = data[-rel:], 0
        if rel > 0:
            if seq % MOD not in pend or len(pend[seq % MOD]) < len(data):
                pend[seq % MOD] = data
            if sum(len(v) for v in pend.values()) <= self.max_pending:
                return b"", False
            # Waited too long for the missing bytes: skip to the earliest buffered segment.
            self.gaps += 1
            nxt = min(pend, key=lambda s: _rel(s, nxt))
            out, _ = self._drain(key, nxt, b"")
            return out, True
        return self._drain(key, nxt, data)

    def _drain(self, key: int, nxt: int, data: bytes) -> tuple[bytes, bool]:
        pend = self.pending[key]
        out = [data] if data else []
        nxt = (nxt + len(data)) % MOD
        while pend:
            ready = [s for s in pend if _rel(s, nxt) <= 0]
            if not ready:
                break
            for s in ready:
                chunk = pend.pop(s)
                over = -_rel(s, nxt)
                if over < len(chunk):
                    out.append(chunk[over:])
                    nxt = (nxt + len(chunk) - over) % MOD
        self.next[key] = nxt
        return b"".join(out), False

    def forget(self, key: int) -> None:
        self.next.pop(key, None)
        self.pending.pop(key, None)
