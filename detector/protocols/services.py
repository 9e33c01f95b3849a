"""Registered ports of application protocols that carry arbitrary bytes (files, disk blocks,
RPC arguments, echoed packets) and are never a capture export.

mirrorwatch decodes none of them; they are declared so that a format guessed without a magic
number (``Decoder.heuristic``) yields to them: eight bytes inside an SMB read or an HTTP body that
happen to look like an rpcap header are SMB or HTTP.  Ports of the formats mirrorwatch decodes
are declared by their decoders.
"""

from __future__ import annotations

REGISTERED: dict[tuple[str, int], str] = {
    ("tcp", 20): "ftp-data",
    ("tcp", 21): "ftp",
    ("tcp", 25): "smtp",
    ("tcp", 80): "http",
    ("tcp", 110): "pop3",
    ("tcp", 111): "onc-rpc portmapper",
    ("udp", 111): "onc-rpc portmapper",
    ("tcp", 139): "netbios-ssn (smb)",
    ("tcp", 143): "imap",
    ("tcp", 443): "https",
    ("tcp", 445): "smb",
    ("tcp", 2049): "nfs",
    ("udp", 2049): "nfs",
    ("tcp", 3128): "http proxy",
    ("tcp", 3260): "iscsi",
    ("tcp", 6667): "irc",
    ("tcp", 8080): "http-alt",
}
