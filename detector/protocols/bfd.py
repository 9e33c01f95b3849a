"""Bidirectional Forwarding Detection (RFC 5880/5881/5883), UDP 3784 control, 3785 echo, 4784
multihop.

An echo packet is addressed by its sender to itself and looped back by the neighbour's
forwarding plane, so the same IP packet passes the link twice: it is a liveness probe, not a
copy.  Declared here so that plain-copy detection and the heuristic formats leave it alone.
"""

from __future__ import annotations

BFD_CONTROL, BFD_ECHO, BFD_MULTIHOP = 3784, 3785, 4784
REGISTERED: dict[tuple[str, int], str] = {
    ("udp", BFD_CONTROL): "bfd",
    ("udp", BFD_ECHO): "bfd-echo",
    ("udp", BFD_MULTIHOP): "bfd-multihop",
}
