"""Two questions, two numbers (docs/how-it-works.md, "Identification and certainty").

``identification``: how surely the stream is the format named in ``protocol``, from how it was
recognised: the structure each packet matched (a magic number or several independent fields
score 1, formats without a magic less), the share of decoded packets that validated, how many
did, and whether it travels on the format's usual port.

``certainty``: how surely the verdict (kind, and mirror rather than tunnel) is right, from what
the stream carried: copies matched to originals seen on the link, inner conversations seen in
both directions inside one outer direction, a format that only ever carries copies, a targeted
pattern, and how much evidence there is.

``confidence`` is their product.
"""

from __future__ import annotations

from dataclasses import dataclass

# identification = share × (STRUCTURE_FLOOR + (1 − STRUCTURE_FLOOR) × strength)
#                  × min(1, COUNT_FLOOR + COUNT_STEP × validated) × (1 or OFF_PORT)
STRUCTURE_FLOOR = 0.7
COUNT_FLOOR = 0.8
COUNT_STEP = 0.02
# Formats that have a usual port, seen elsewhere: recognised by content alone.
OFF_PORT = 0.95

# certainty = min(1, BASE[basis] + COPY_WEIGHT × copy match share + BOTH_WAY_WEIGHT × both-way
#             share + TARGETED_BONUS) × (EVIDENCE_FLOOR + (1 − EVIDENCE_FLOOR) × min(1, n / N))
# where n is the carried packets (records for flow exports, PDUs otherwise) and N the verdict's
# min_decide_packets.
BASE: dict[str, float] = {
    "copies-proven": 0.9,  # carried packets matched to originals seen on the link
    "both-ways": 0.8,  # inner conversations both ways inside one outer direction
    "copy-by-construction": 0.8,  # the format only ever carries copies
    "flow-records": 0.9,  # flow records are metadata by construction
    "tunnel": 0.8,  # traffic came back through it, conversations one way per direction
    "intercept-shim": 0.6,  # an intercept header around carried packets
    "one-way": 0.45,  # an ambiguous encapsulation, undecided
    "never-leaves": 0.3,  # exporter and collector are one host: nothing leaves the box
    "other": 0.5,
}
COPY_WEIGHT = 0.1
BOTH_WAY_WEIGHT = 0.1
TARGETED_BONUS = 0.05
EVIDENCE_FLOOR = 0.6


@dataclass(repr=False, eq=False)
class Scores:
    identification: float
    certainty: float

    @property
    def confidence(self) -> float:
        return self.identification * self.certainty


def identification(share: float, strength: float, validated: int, off_port: bool) -> float:
    structure = STRUCTURE_FLOOR + (1.0 - STRUCTURE_FLOOR) * strength
    count = min(1.0, COUNT_FLOOR + COUNT_STEP * validated)
    return _unit(share * structure * count * (OFF_PORT if off_port else 1.0))


def certainty(
    basis: str,
    evidence_count: float,
    decide_packets: int,
    copy_match_share: float = 0.0,
    both_way_share: float = 0.0,
    targeted: bool = False,
) -> float:
    base = BASE.get(basis, BASE["other"])
    base += COPY_WEIGHT * copy_match_share + BOTH_WAY_WEIGHT * both_way_share
    base += TARGETED_BONUS if targeted else 0.0
    amount = min(1.0, evidence_count / max(1, decide_packets))
    return _unit(min(1.0, base) * (EVIDENCE_FLOOR + (1.0 - EVIDENCE_FLOOR) * amount))


def _unit(x: float) -> float:
    return round(max(0.0, min(1.0, x)), 3)
