"""Every decoder the engine runs, gathered from the protocol modules.

A protocol module joins by defining ``DECODERS: list[Decoder]`` at module level; nothing else
needs editing to add a format.  A module may also define ``REGISTERED: dict[tuple[str, int], str]``
((transport, port) → service name): ports of protocols mirrorwatch does not decode, to which the
heuristic formats yield all the same.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from detector.protocols.base import Decoder


@cache
def all_decoders() -> tuple[Decoder, ...]:
    import detector.protocols as pkg

    found: list[Decoder] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"detector.protocols.{info.name}")
        found.extend(getattr(module, "DECODERS", ()))
    return tuple(sorted(found, key=lambda d: (d.priority, d.name)))


@cache
def registered_ports() -> dict[tuple[str, int], str]:
    """(transport, port) → the protocol registered there: every port a decoder with a content
    signature declares, and the ``REGISTERED`` tables of the modules."""
    import detector.protocols as pkg

    table: dict[tuple[str, int], str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in ("base", "registry"):
            continue
        module = importlib.import_module(f"detector.protocols.{info.name}")
        table.update(getattr(module, "REGISTERED", {}))
    for d in all_decoders():
        if not d.heuristic:
            for port in d.ports:
                table.setdefault((d.transport, port), d.name)
    return table


def port_owner(decoder: Decoder, transport: str, sport: int, dport: int) -> str | None:
    """The protocol registered on one of the packet's ports, unless that is ``decoder``'s own.

    A guess (a heuristic format, or a match weaker than a magic number) yields to it, as
    Wireshark's heuristic dissectors yield to registered ports: a guess never takes a packet
    from the service that owns its port."""
    if dport in decoder.ports or sport in decoder.ports:
        return None
    table = registered_ports()
    return table.get((transport, dport)) or table.get((transport, sport))


def decoders_for(transport: str) -> tuple[Decoder, ...]:
    return tuple(d for d in all_decoders() if d.transport == transport)


def gre_decoders() -> dict[int, tuple[Decoder, ...]]:
    table: dict[int, list[Decoder]] = {}
    for d in decoders_for("gre"):
        for t in d.gre_types:
            table.setdefault(t, []).append(d)
    return {k: tuple(v) for k, v in table.items()}


def ip_decoders() -> dict[int, tuple[Decoder, ...]]:
    table: dict[int, list[Decoder]] = {}
    for d in decoders_for("ip"):
        for p in d.ip_protos:
            table.setdefault(p, []).append(d)
    return {k: tuple(v) for k, v in table.items()}
