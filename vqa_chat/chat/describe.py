"""Describe mode: one button (or shortcut) for a detailed description of the current image.

- Our custom model was trained on exactly `Question: Describe this image in detail. Answer:` (prompts/
  describe.txt inside prompts/question.txt), so it simply answers that question.
- BLIP-2 answers short questions best, so its description is composed (`ComposedDescription`, for every
  backend whose capabilities say `composes_descriptions`): an unprompted caption, a prompted caption
  ("this is a picture of"), and a few focused questions (colours, people, any writing), each turned into a
  plain sentence from the templates in prompts/describe_blip2.txt. Sentences come out one by one as they
  are ready.

Either way the description becomes a normal turn `Question: Describe this image in detail. Answer: ...`, so
follow-up questions continue the same conversation.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import cache

from vqa_chat.engine.types import GenerationSettings
from vqa_chat.prompts import PROMPTS_DIR, load_prompt

PART_MAX_TOKENS = 24  # each part of a composed description is a short answer
NUMBERS = {"zero": 0, "no": 0, "none": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def describe_question() -> str:
    """The question a description turn asks (prompts/describe.txt)."""
    return load_prompt("describe")


@cache
def composed_templates() -> dict[str, str]:
    """prompts/describe_blip2.txt as {name: text}; comments and blank lines skipped."""
    out = {}
    for line in (PROMPTS_DIR / "describe_blip2.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, text = line.partition(":")
        out[name.strip()] = text.strip()
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) - {"a", "an", "the", "of", "in", "on", "with"}


def similar(a: str, b: str) -> bool:
    """Two captions that say mostly the same thing (so the second adds nothing)."""
    wa, wb = _words(a), _words(b)
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) >= 0.6


def count_people(answer: str) -> int | None:
    first = (re.findall(r"[a-z]+|\d+", answer.lower()) or [""])[0]
    if first.isdigit():
        return int(first)
    return NUMBERS.get(first)


def clean(answer: str) -> str:
    return answer.strip().strip(".").strip()


def sentence(name: str, answer: str, extra: dict | None = None) -> str:
    """One sentence of the description from part `name`'s answer ("" when it adds nothing)."""
    t = composed_templates()
    answer = clean(answer)
    if name == "people":
        n = count_people(answer)
        if n is None:
            return ""
        if n == 0:
            return t["people.none"]
        people = "is one person" if n == 1 else f"are {NUMBER_WORDS.get(n, str(n))} people"
        return t["people.say"].format(people=people)
    if not answer:
        return ""
    return t[f"{name}.say"].format(answer=answer, Answer=answer[:1].upper() + answer[1:], **(extra or {}))


class ComposedDescription:
    """Iterate for the description's text pieces (a sentence at a time); `.caption` is the plain caption.

    `stream(prompt, settings, stop)` is the backend's generator (already bound to the image tokens).
    """

    def __init__(self, stream, settings: GenerationSettings, stop: threading.Event | None = None):
        self.stream = stream
        self.settings = replace(
            settings, max_new_tokens=min(settings.max_new_tokens, PART_MAX_TOKENS), num_beams=1, plain=False
        )
        self.stop = stop
        self.caption = ""
        self.sentences: list[str] = []

    def ask(self, name: str) -> str:
        prompt = composed_templates()[name]
        return "".join(self.stream(prompt, self.settings, self.stop)).strip()

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def parts(self) -> Iterator[str]:
        """The sentences in order, each only when it adds something."""
        self.caption = clean(self.ask("caption"))
        yield sentence("caption", self.caption)
        picture = clean(self.ask("picture"))
        if picture and not similar(picture, self.caption):
            yield sentence("picture", picture)
        yield sentence("colours", self.ask("colours"))
        yield sentence("people", self.ask("people"))
        has_text = self.ask("has_text").lower()
        if has_text.startswith("yes"):
            yield sentence("text", self.ask("text"))
        elif has_text.startswith("no"):
            yield composed_templates()["text.none"]

    def __iter__(self) -> Iterator[str]:
        for text in self.parts():
            if text:
                self.sentences.append(text)
                yield text if len(self.sentences) == 1 else " " + text
            if self.stopped():
                return


def composed_description(
    backend, image_embeds, settings: GenerationSettings, stop=None
) -> ComposedDescription:
    """A `ComposedDescription` of the image behind `image_embeds` (the backend's cached encoding)."""

    def stream(prompt, part_settings, part_stop):
        return backend.stream(image_embeds, prompt, part_settings, part_stop)

    return ComposedDescription(stream, settings, stop)
