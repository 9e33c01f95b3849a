"""MPLS LSP ping / traceroute (RFC 8029), UDP 3503.

Echo requests and replies carry TLVs that quote labels, FECs and sometimes whole IP headers, so
bytes after its 32-byte header can look like an IP packet behind a shim, or like flow records.
It is no capture and no tunnel: mirrorwatch reports nothing for it, and declares the port so
that heuristic formats leave it alone.
"""

from __future__ import annotations

LSP_PING_PORT = 3503
REGISTERED: dict[tuple[str, int], str] = {("udp", LSP_PING_PORT): "mpls-lsp-ping"}
