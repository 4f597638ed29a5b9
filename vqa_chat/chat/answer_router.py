"""Which source answers a turn, and what is checked once the answer is in.

Three sources, chosen once per turn (`route`):
- the model, streamed (`Backend.stream`, with the session's state and a token log for the confidence check);
- a composed description (describe mode on a backend whose capabilities compose descriptions: describe.py);
- the photo's measured facts (photo/answers.py), when the picture or the question is not what the model
  knows: the one domain decision, `Backend.knows`, made here once per question (the CLI and evaluate make
  the same call, and the CLI answers from the facts with `from_facts`, as here).
After a model's answer (`check`): how sure it was (confidence.py), its other likely answers, and from the
photo facts the text a description missed and retake advice (only when light or sharpness call for it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field

from vqa_chat import backends
from vqa_chat.backends.base import Backend, Known
from vqa_chat.chat import confidence, describe
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.image_slot import ImageSlot
from vqa_chat.engine.types import GenerationSettings, TokenLog
from vqa_chat.photo import answers
from vqa_chat.photo.facts import PhotoFacts

log = logging.getLogger(__name__)

MODEL, PHOTO_FACTS = "model", "photo facts"  # a turn's source (Turn.source)


@dataclass
class Route:
    """Where one turn's answer comes from, decided before it starts."""

    pieces: Iterable[str]  # the answer's text, piece by piece (not started yet)
    known: Known  # what the model knows of the picture and the question
    description: describe.ComposedDescription | None = None  # a composed description: judged by its caption
    scores: TokenLog = field(default_factory=TokenLog)  # the model's answer's token log-probs, as it streams

    @property
    def advise(self) -> bool:
        return self.known.advise


def route(
    backend: Backend, slot: ImageSlot, turn: Turn, encoding, settings: GenerationSettings,
    stop: threading.Event, state=None,
) -> Generator[str, None, Route]:  # fmt: skip
    """The source of `turn`'s answer (a generator: it says "Looking at the photo…" while photo facts are
    measured, and returns the Route). Sets `turn.source`."""
    question = turn.question if turn.mode == "ask" else None  # a description asks about the picture only
    known = backend.knows(encoding, slot.image, question)
    if not known.model_answers:  # not what the model knows: answered from measured facts instead
        turn.source = PHOTO_FACTS
        facts = yield from facts_of(slot)
        return Route([from_facts(turn.question, facts, known, turn.backend, turn.mode)], known)
    turn.source = MODEL
    if turn.mode == "describe" and backend.capabilities.composes_descriptions:
        description = describe.composed_description(backend, encoding, settings, stop)
        return Route(description, known, description)
    scores = TokenLog()
    pieces = backend.stream(encoding, turn.prompt, settings, stop, state=state, log=scores)
    return Route(pieces, known, scores=scores)


def from_facts(question: str, facts: PhotoFacts | None, known: Known, backend: str, mode: str = "ask") -> str:
    """The answer from the photo's facts (None: they could not be measured) to a question the model
    `backend` does not know, or its description (mode "describe")."""
    instead = backends.any_photo_instead(backend)
    if facts is None:
        can = f"; the {instead} backend can." if instead else "."
        return f"I can't look at this photo offline right now{can}"
    if mode == "describe":
        return answers.describe(facts)
    return answers.answer(question, facts, advise=known.advise, instead=instead)


def check(turn: Turn, backend: Backend, encoding, plan: Route, slot: ImageSlot) -> Iterator[str]:
    """After a model's finished answer: its confidence (from the token log recorded while it streamed; a
    composed description by its caption, scored now), its other likely answers, and what the photo facts
    add (a generator: it says "Looking at the photo…" while they are measured)."""
    if plan.description is None:
        confidence.check(turn, backend.name, plan.scores.logprobs)
    else:
        caption = describe.composed_templates()["caption"]
        confidence.check_given(turn, backend, encoding, caption, plan.description.caption)
    if turn.mode == "ask":
        top = backend.top_answers(encoding, turn.prompt)
        turn.alternatives = [(a, p) for a, p in top if a != turn.answer.lower()][:4]
    if turn.mode == "describe" or (turn.unsure and plan.advise):
        facts = yield from facts_of(slot)
        if facts is not None and turn.mode == "describe":
            turn.facts_note = answers.describe_extras(facts, plan.advise)
        elif facts is not None:
            turn.facts_note = answers.retake_advice(facts) or ""


def facts_of(slot: ImageSlot) -> Generator[str, None, PhotoFacts | None]:
    """The picture's photo facts, measured once (a generator returning them, or None if that failed: the
    answer is kept, only what the facts would add is missing)."""
    if slot.facts is not None:
        return slot.facts
    yield "Looking at the photo…"
    try:
        return slot.photo_facts()
    except Exception:
        log.exception("photo facts failed")
        return None
