"""Copies no decoder reads: found by comparing streams with the span's own traffic.

Plain copies (``detector.flows.copies``) are ordinary frames re-addressed to a collector; encrypted
copies (``detector.flows.encrypted``) are a tunnel whose byte rate follows the span.  Neither has
a header of its own, so the engine reports them; their facts are declared here with the others.
"""

from __future__ import annotations

from detector.protocols.base import ProtocolSpec

TEE_COPY = ProtocolSpec(
    "tee-copy",
    "ambiguous",
    sid=12,
    doc="tee-copy.md",
    samples=("tee-copies.pcap",),
    no_dissector="The copies are ordinary frames re-addressed to a collector: there is no header "
    "to decode; the packets above are the copies themselves.",
    kind="mirror",
    # One packet seen twice may also be a packet routed past a span that sees both sides.
    guessed=True,
)
ENCRYPTED_COPY = ProtocolSpec(
    "encrypted-copy",
    "correlated",
    sid=14,
    doc="encrypted-copy.md",
    samples=("encrypted-copy-wireguard.pcap", "encrypted-copy-tls.pcap"),
    kind="mirror",
)
SPECS = (TEE_COPY, ENCRYPTED_COPY)
