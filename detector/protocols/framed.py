"""Formats whose check ends with the one frame a packet carries (TZSP, ERSPAN).

Such a decoder reads its own header in :meth:`CarriedFrameDecoder.read` and hands back the
carried frame with what its check makes of the frame once parsed.  One packet alone is checked
by parsing the frame there and then (``carried_frame``); the sampled packets of the streams
already found are checked together, their frames parsed as one batch
(:func:`detector.decode.carried.carried_frames`).  Both give the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from detector.decode.carried import carried_frames
from detector.decode.frames import InnerPacket, carried_frame
from detector.protocols.base import Decoded, Decoder, InnerLink, PacketContext, Reject


@dataclass(repr=False, eq=False, slots=True)
class FrameToCheck:
    """A check that waits for its carried frame: the link the format says it is, its bytes,
    and what the check makes of it parsed (None: it is not a frame of that link)."""

    link: InnerLink
    data: bytes
    finish: Callable[[InnerPacket | None], Decoded | Reject]


class CarriedFrameDecoder(Decoder):
    """A decoder whose check ends with one carried frame.  ``read`` must keep no state (the
    engine may read a stream's packets before it finishes their checks)."""

    def read(
        self, payload: bytes, ctx: PacketContext, state: object | None
    ) -> Decoded | Reject | FrameToCheck:
        """The check up to the carried frame: a verdict, or the frame still to check."""
        raise NotImplementedError

    def check(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | Reject:
        got = self.read(payload, ctx, state)
        return (
            got.finish(carried_frame(got.link, got.data)) if isinstance(got, FrameToCheck) else got
        )


def check_together(
    checks: Sequence[tuple[CarriedFrameDecoder, bytes, PacketContext, object | None]],
) -> list[Decoded | Reject]:
    """``decoder.check(payload, ctx, state)`` of each (decoder, payload, ctx, state), the
    frames they carry parsed together."""
    waiting: dict[InnerLink, list[tuple[int, FrameToCheck]]] = {}
    done: list[Decoded | Reject | None] = []
    for i, (decoder, payload, ctx, state) in enumerate(checks):
        # A decoder whose check is not read-then-parse (a subclass's own) is asked for it.
        whole = type(decoder).check is not CarriedFrameDecoder.check
        got = decoder.check(payload, ctx, state) if whole else decoder.read(payload, ctx, state)
        if isinstance(got, FrameToCheck):
            waiting.setdefault(got.link, []).append((i, got))
            done.append(None)
        else:
            done.append(got)
    for link, pending in waiting.items():
        parsed = carried_frames(link, [p.data for _, p in pending])
        for (i, p), inner in zip(pending, parsed, strict=True):
            done[i] = p.finish(inner)
    return [d for d in done if d is not None]
