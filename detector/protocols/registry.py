"""Every decoder the engine runs, gathered from the protocol modules.

A protocol module joins by defining ``DECODERS: list[Decoder]`` at module level; nothing else
needs editing to add a format.  A module may also define ``REGISTERED: dict[tuple[str, int], str]``
((transport, port) → service name): ports of protocols mirrorwatch does not decode, to which the
heuristic formats yield all the same, and ``SPECS`` for protocols no decoder reports.

The protocol-keyed tables of the rest of the product (the verdict's roles and usual ports, EVE
signature numbers, Wireshark's readings) are derived here from the decoders' ``emits``.
"""

from __future__ import annotations

import importlib
import pkgutil
import types
from collections.abc import Callable
from dataclasses import replace
from functools import cache

from detector.protocols.base import Decoder, Dissection, Log, ProtocolSpec, Role


@cache
def _modules() -> tuple[types.ModuleType, ...]:
    import detector.protocols as pkg

    return tuple(
        importlib.import_module(f"detector.protocols.{info.name}")
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)
        if info.name not in ("base", "registry")
    )


@cache
def all_decoders() -> tuple[Decoder, ...]:
    found: list[Decoder] = []
    for module in _modules():
        found.extend(getattr(module, "DECODERS", ()))
    return tuple(sorted(found, key=lambda d: (d.priority, d.name)))


def _resolved(spec: ProtocolSpec, d: Decoder | None, seen: ProtocolSpec | None) -> ProtocolSpec:
    """``spec`` with its kind, usual ports and whether it is guessed filled in from its
    decoder(s): a protocol that several decoders report (over UDP and TCP) is usual on all their
    ports, and guessed when any of them guesses it."""
    kind = spec.kind or (d.kind if d is not None else None)
    ports = spec.ports
    if ports is None:
        ports = tuple(sorted({*(d.ports if d is not None else ()), *(seen.ports if seen else ())}))
    guessed = spec.guessed
    if guessed is None:
        guessed = (d is not None and d.heuristic) or bool(seen and seen.guessed)
    if seen is not None and _declared(seen) != _declared(spec):
        raise ValueError(f"protocol {spec.name!r} is declared twice, differently")
    return replace(spec, kind=kind, ports=ports, guessed=guessed)


def _declared(spec: ProtocolSpec) -> ProtocolSpec:
    """What a spec says of itself, without what is filled in from its decoders."""
    return replace(spec, ports=None, kind=None, guessed=None)


@cache
def protocol_specs() -> dict[str, ProtocolSpec]:
    """Every protocol a finding can report, by name, with its kind and usual ports resolved."""
    table: dict[str, ProtocolSpec] = {}
    for d in all_decoders():
        for spec in d.emits:
            table[spec.name] = _resolved(spec, d, table.get(spec.name))
    for module in _modules():
        for spec in getattr(module, "SPECS", ()):
            table[spec.name] = _resolved(spec, None, table.get(spec.name))
    return table


@cache
def table_specs() -> dict[str, ProtocolSpec]:
    """The reported protocols and the aliases (names in the tables, never a finding's)."""
    table = dict(protocol_specs())
    for d in all_decoders():
        for spec in d.aliases:
            table.setdefault(spec.name, _resolved(spec, d, None))
    return table


def where(test: Callable[[ProtocolSpec], bool]) -> frozenset[str]:
    """The reported protocols whose spec passes ``test``."""
    return frozenset(name for name, spec in protocol_specs().items() if test(spec))


def with_role(role: Role) -> frozenset[str]:
    return where(lambda spec: spec.role == role)


def guessed() -> frozenset[str]:
    """Protocols recognised without a magic number (``ProtocolSpec.guessed``)."""
    return where(lambda spec: bool(spec.guessed))


def logs(*which: Log) -> frozenset[str]:
    """Protocols written as logs (``ProtocolSpec.log``): of the kinds ``which``, or any."""
    return where(lambda spec: spec.log is not None and (not which or spec.log in which))


def usual_ports() -> dict[str, tuple[int, ...]]:
    """Protocol → the ports it is usually sent to (where it has any)."""
    return {name: spec.ports for name, spec in protocol_specs().items() if spec.ports}


def signature_numbers() -> dict[str, int]:
    """Protocol → its EVE signature number, aliases included."""
    return {name: spec.sid for name, spec in table_specs().items()}


def dissections() -> dict[str, Dissection]:
    """Protocol → how Wireshark reads it, for those it can read."""
    return {name: s.wireshark for name, s in table_specs().items() if s.wireshark is not None}


def no_dissector() -> dict[str, str]:
    """Protocol → why Wireshark cannot read it (or may not: a dissector that not every build
    has)."""
    return {name: s.no_dissector for name, s in table_specs().items() if s.no_dissector}


@cache
def registered_ports() -> dict[tuple[str, int], str]:
    """(transport, port) → the protocol registered there: every port a decoder with a content
    signature declares, and the ``REGISTERED`` tables of the modules."""
    table: dict[tuple[str, int], str] = {}
    for module in _modules():
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
    """GRE protocol type → the decoders that read it."""
    return _by_number("gre", lambda d: d.gre_types)


def ip_decoders() -> dict[int, tuple[Decoder, ...]]:
    """IP protocol number → the decoders that read it."""
    return _by_number("ip", lambda d: d.ip_protos)


def _by_number(
    transport: str, numbers: Callable[[Decoder], frozenset[int]]
) -> dict[int, tuple[Decoder, ...]]:
    table: dict[int, list[Decoder]] = {}
    for d in decoders_for(transport):
        for n in numbers(d):
            table.setdefault(n, []).append(d)
    return {k: tuple(v) for k, v in table.items()}
