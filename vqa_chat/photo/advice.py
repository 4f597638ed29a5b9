"""Retake advice from a photo's measured facts, and the answers about the photo itself (light, quality).

Advice comes only from the measured light, sharpness and cut-off text, never because the classifier is
unsure, and only when it helps: no light or blur advice once text or a code was read (the photo was good
enough for what matters), no light advice when the text is light on a dark ground (a lit screen: more
light would not help). It names the one thing to change; cut-off text says which way to move the camera.
"""

from __future__ import annotations

import re

from vqa_chat.photo.facts import EDGE, PhotoFacts
from vqa_chat.photo.text_answers import read_something, runs_off, text_cut
from vqa_chat.photo.wording import PLACES, join

FRAMING = re.compile(r"\b(?:cut|crop\w*|frame\w*|whole|entire|all|everything|visible|get it"
                     r"|in the (?:picture|photo|shot))\b")  # a question about what the frame holds


def advice(facts: PhotoFacts, kinds: tuple[str, ...]) -> str | None:
    """One piece of advice, for the one thing to change, and only when it helps: text cut off at an edge
    (which way to move), else the light when nothing was read and the text is not a lit screen, else the
    blur when nothing was read."""
    if "cut" in kinds and text_cut(facts):
        return text_cut(facts)
    if read_something(facts):  # what matters was read: the light and sharpness were good enough for it
        return None
    if "light" in kinds and facts.light in ("very dark", "dark") and not facts.light_text:
        return f"The photo is {facts.light}. Try again with more light."
    if "light" in kinds and facts.light == "very bright":
        return "The photo is very bright. Try again out of direct light."
    if "blur" in kinds and facts.blurry:
        return "The photo is blurry. Try again holding the camera steady."
    return None


def retake_advice(facts: PhotoFacts) -> str | None:
    """What to change and retake, only when the light, the sharpness or cut-off text call for it."""
    return advice(facts, ("light", "blur", "cut"))


def light_answer(facts: PhotoFacts) -> str:
    said = advice(facts, ("light",))
    if said:
        return said
    if facts.light in ("very dark", "dark", "very bright") and read_something(facts):
        return f"The photo is {facts.light}, but its {'code' if not facts.text else 'text'} reads clearly."
    return "The photo is bright, but fine." if facts.light == "bright" else "The light looks fine."


def _person_cut(facts: PhotoFacts) -> str | None:
    """Which edge the first person cut by the frame runs off, and which way to move."""
    for person in facts.people:
        x0, y0, x1, y1 = person.box
        edges = [e for e, hit in (("left", x0 < EDGE), ("right", x1 > 1 - EDGE), ("top", y0 < EDGE),
                                  ("bottom", y1 > 1 - EDGE)) if hit]
        if edges:
            return runs_off(f"The person {PLACES.get(person.where, '')}".strip(), edges)
    return None


def quality_answer(facts: PhotoFacts, question: str = "") -> str:
    """The one thing to change, or what the photo is like; whether text is cut by the frame; asked about
    the framing, whether a person is, and for anything else that it cannot be checked (the classifier does
    not say where the thing is)."""
    problems = [word for word, bad in ((facts.light, facts.light in ("very dark", "dark", "very bright")),
                                       ("blurry", facts.blurry)) if bad]
    if not problems:
        state = "The photo looks clear: sharp and well lit."
    else:
        but = ", but what it shows reads clearly." if read_something(facts) else "."
        state = f"The photo is {join(problems)}{but}"
    said = [retake_advice(facts) or state]
    if facts.text and not facts.text_cut_off:
        said.append("No text is cut off.")
    if not FRAMING.search(question):
        return " ".join(said)
    person = _person_cut(facts)
    if person:
        said.append(person)
    elif not facts.text and not facts.people and not facts.codes:
        said.append("Whether the whole object is in the frame I can't measure: the object guess does not "
                    "say where it is.")
    return " ".join(said)
