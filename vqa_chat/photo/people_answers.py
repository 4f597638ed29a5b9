"""How many people, said as honestly as the detectors allow (people.py grades the evidence):

- persons the detectors are sure of are counted: "One person, in the centre.";
- weaker evidence is hedged: "There may be one person, on the left." (or "..., and maybe one more ...");
- no evidence gives a negative that admits the detectors' limits, never a flat "no people": they miss
  people who are small, turned away or in shadow.
"""

from __future__ import annotations

from vqa_chat.photo.facts import PhotoFacts, Region
from vqa_chat.photo.wording import PLACES, join, number

NONE_SEEN = "I don't see anyone, but I can miss people who are small, turned away or in shadow."


def spots(regions: list[Region]) -> str:
    """Where they are: "in the centre" for one, "one on the left and two on the right" for several."""
    if len(regions) == 1:
        return PLACES.get(regions[0].where, "")
    said = [f"{number(sum(r.where == w for r in regions))} {PLACES[w]}" for w in PLACES
            if any(r.where == w for r in regions)]
    return join(said)


def counted(regions: list[Region]) -> str:
    """ "One person, in the centre" / "Two people: one on the left and one on the right" (no full stop)."""
    if len(regions) == 1:
        return f"One person, {spots(regions)}"
    return f"{number(len(regions)).capitalize()} people: {spots(regions)}"


def people_answer(facts: PhotoFacts) -> str:
    """The people in the photo: counted when sure, hedged on weaker evidence, an honest negative without."""
    sure = [r for r in facts.people if r.sure]
    hints = [r for r in facts.people if not r.sure]
    if not sure and not hints:
        return NONE_SEEN
    if not sure:
        if len(hints) == 1:
            return f"There may be one person, {spots(hints)}."
        return f"There may be {number(len(hints))} people: {spots(hints)}."
    if not hints:
        return f"{counted(sure)}."
    more = f"one more {spots(hints)}" if len(hints) == 1 else f"{number(len(hints))} more"
    return f"{counted(sure)}, and maybe {more}."
