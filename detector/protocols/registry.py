"""Every decoder the engine runs, gathered from the protocol modules.

A protocol module joins by defining ``DECODERS: list[Decoder]`` at module level; nothing else
needs editing to add a format.
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
