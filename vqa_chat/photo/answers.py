"""Answers about a real photo from its photo facts (facts.py): routed answers, Describe, retake advice.

`intent(question)` (router.py: plain word rules) says which fact answers a question. `answer(question,
facts)` answers each part of a message ("what is this and what colour is it?") from that fact, hedged by
the classifier's probabilities (SURE / MAYBE bands, families merged: "Probably a cat (90 % sure), perhaps a
tabby cat."), and says "I can't answer that offline." when no fact answers it (naming the backend that can,
when the caller knows one: `instead`).
Retake advice comes only from the measured light, sharpness and cut-off text, never because the
classifier is unsure, and only when it helps: no light advice once text or a code was read, or when the
text is light on a dark ground (a lit screen); it names the one thing to change. This module keeps what
the photo shows (the hedged guess, colours, "is there a ...", Describe) and routes each question; the
answers about text, dates, prices, times and codes live in text_answers.py, the advice in advice.py, the
people in people_answers.py and the shared wording (verbatim quotes) in wording.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vqa_chat.photo.advice import advice as _advice
from vqa_chat.photo.advice import light_answer, quality_answer, retake_advice
from vqa_chat.photo.facts import Label, PhotoFacts
from vqa_chat.photo.people_answers import people_answer
from vqa_chat.photo.router import COLOUR_NAMES, INTENTS, intent, normalise, parts, route
from vqa_chat.photo.text_answers import (
    TEXT_CARRIERS,
    code_answer,
    code_sentences,
    date_answer,
    label_lead,
    price_answer,
    read_text,
    time_answer,
)
from vqa_chat.photo.text_answers import (
    clear_lines as _clear_lines,
)
from vqa_chat.photo.wording import a as _a
from vqa_chat.photo.wording import join as _join
from vqa_chat.photo.wording import number as _number
from vqa_chat.photo.wording import quoted as _quoted
from vqa_chat.photo.wording import verbatim

__all__ = ["INTENTS", "answer", "describe", "intent", "retake_advice", "unknown_answer"]

UNKNOWN_ANSWER = "I can't answer that offline."
SURE = 0.6  # the most likely thing (or family) at least this probable: "Probably a lion (85 % sure)."
MAYBE = 0.25  # at least this probable: "It might be a lion or a tiger."; below: "I can't tell what this is."
SECOND = 0.05  # the second guess is named only when at least this probable


# --- answers --------------------------------------------------------------------------------------------
BASIC_COLOURS = {"gray": "grey", "violet": "purple", "navy": "blue", "turquoise": "blue", "teal": "green",
                 "maroon": "red", "beige": "brown", "tan": "brown", "gold": "yellow", "golden": "yellow",
                 "silver": "grey", "cream": "white"}  # asked colour -> the basic term facts use
SYNONYMS = {"puppy": "dog", "doggy": "dog", "doggie": "dog", "kitten": "cat", "kitty": "cat",
            "bike": "bicycle", "automobile": "car", "cellphone": "phone", "mobile": "phone",
            "telephone": "phone", "mug": "cup", "tv": "television", "glasses": "sunglasses",
            "laptop": "computer", "sneaker": "shoe", "boot": "shoe"}  # a word people say -> one labels use
ADVICE_FOR = {"identify": ("light", "blur", "cut"), "read": ("light", "blur", "cut"), "colour": ("light",),
              "people": ("light", "blur"), "code": ("light", "blur"), "presence": ("light", "blur"),
              "date": ("light", "blur", "cut"), "price": ("light", "blur", "cut"), "time": ("light", "blur")}


def _pct(p: float) -> str:
    """A probability as a whole percentage rounded down (never 0 or 100): "85 %"."""
    return f"{min(99, max(1, int(p * 100 + 1e-6)))} %"


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


@dataclass
class Guess:  # ImageNet labels merged by family ("cat" for tabby cat + Egyptian Mau), or one label
    word: str  # the family word, or the label's name
    probability: float  # summed over the family's labels
    detail: str | None  # the likeliest member's name when `word` is a family of several


def guesses(labels: list[Label]) -> list[Guess]:
    families: dict[str, list[Label]] = {}
    for label in labels:
        families.setdefault(label.group or label.name, []).append(label)
    out = []
    for word, members in families.items():
        total = sum(m.probability for m in members)
        if len(members) > 1:
            out.append(Guess(word, total, members[0].name if members[0].name.lower() != word else None))
        else:
            out.append(Guess(members[0].name, total, None))
    return sorted(out, key=lambda g: -g.probability)


def best_guess(labels: list[Label]) -> Guess | None:
    """The likeliest label when it alone is sure, else the likeliest family (or label)."""
    if labels and labels[0].probability >= SURE:
        return Guess(labels[0].name, labels[0].probability, None)
    found = guesses(labels)
    return found[0] if found else None


def what_it_is(facts: PhotoFacts) -> str:
    """The hedged guess: "Probably a lion (85 % sure).", "It might be a X or a Y.", "I can't tell ..."."""
    top, found = best_guess(facts.labels), guesses(facts.labels)
    if top is None or top.probability < MAYBE:
        return "I can't tell what this is."
    if top.probability >= SURE:
        detail = f", perhaps {_a(top.detail)}" if top.detail else ""
        return f"Probably {_a(top.word)} ({_pct(top.probability)} sure){detail}."
    if len(found) > 1 and found[1].probability >= SECOND:
        return f"It might be {_a(top.word)} or {_a(found[1].word)}."
    return f"It might be {_a(top.word)}."


def colours_sentence(facts: PhotoFacts) -> str:
    """The top 1-3 colour names: "Mostly white, with some grey and brown." or "Red, white and blue." """
    names = [name for name, _ in facts.colours[:3]]
    if not names:
        return "I can't tell the colours."
    if facts.colours[0][1] >= 0.5:
        rest = f", with some {_join(names[1:])}" if len(names) > 1 else ""
        return f"Mostly {names[0]}{rest}."
    return f"{_join(names).capitalize()}."


def colour_answer(text: str, facts: PhotoFacts) -> str:
    """The main colours; a yes/no question about one colour ("is it red?") answered from them."""
    main = colours_sentence(facts)
    asked = [BASIC_COLOURS.get(w, w) for w in text.split() if w in COLOUR_NAMES]
    if len(asked) != 1 or not facts.colours:
        return main
    names = [name for name, _ in facts.colours[:3]]
    if asked[0] == names[0]:
        return f"Yes, {main[0].lower()}{main[1:]}"
    if asked[0] in names:
        return f"Partly. {main}"
    return f"I don't see much {asked[0]}. {main}"


PRESENCE_START = (r"^(?:(?:is|are) there|there (?:is|are)|(?:is|are) (?:this|that|it|these|those)"
                  r"|(?:this|that|it) (?:is|are)|(?:do|can|could|did) (?:you|i) see|see|find|spot"
                  r"|(?:am i|are we) holding|does (?:it|this|that) (?:have|contain|show))\b")
PLACE_WORDS = r"\b(?:in|on|at|under|near|by|next|behind|inside|here|there|anywhere|outside|with)\b"
NOT_THINGS = {"a", "an", "the", "any", "some", "my", "one", "real", "really", "actually", "picture", "photo",
              "image", "pic", "of", "thing", "kind", "sort", "type"}


def _things(text: str) -> list[str]:
    """The thing(s) a presence question asks about: "is it a dog or a cat" -> ["dog", "cat"]."""
    rest = re.sub(PRESENCE_START, "", text)
    rest = re.split(PLACE_WORDS, rest)[0]
    alternatives = [" ".join(w for w in alt.split() if w not in NOT_THINGS) for alt in rest.split(" or ")]
    return [alt for alt in alternatives if alt]


def _label_words(label: Label) -> set[str]:
    return {_singular(w) for w in re.findall(r"[a-z]+", f"{label.name} {label.group}".lower())}


def _matching(thing: str, labels: list[Label]) -> tuple[list[Label], str]:
    """The labels that are `thing` (its family or name exactly, else sharing a word) and what to call them."""
    said = [SYNONYMS.get(w, w) for w in (_singular(w) for w in thing.split())]
    phrase = " ".join(said)
    found = [label for label in labels if phrase in (label.group, label.name.lower())]
    found = found or [label for label in labels if set(said) & _label_words(label)]
    if not found:
        return found, phrase
    family = len(found) > 1 and found[0].group and all(f.group == found[0].group for f in found)
    return found, found[0].group if family else found[0].name


def presence_answer(text: str, facts: PhotoFacts) -> str:
    """Yes only from a matching label, with its probability; else what it looks like, or "I can't tell"."""
    things = _things(text)
    if not things:
        return describe(facts)
    best = None  # (probability, what to call it)
    for thing in things:
        members, word = _matching(thing, facts.labels)
        p = sum(m.probability for m in members)
        if members and (best is None or p > best[0]):
            best = (p, word)
    if best and best[0] >= MAYBE:
        said = f"it looks like {_a(best[1])} ({_pct(best[0])})."
        if best[0] < SURE:
            return f"Maybe: {said}"
        return f"Yes, {said}" if len(things) == 1 else said[0].upper() + said[1:]
    top = best_guess(facts.labels)
    if top and top.probability >= SURE:
        seen = f"{_a(top.word)} ({_pct(top.probability)})"
        return f"I don't see {_a(_singular(things[0]))}; it looks like {seen}."
    if best:
        return f"I can't tell; {_a(best[1])} is one of my guesses, but only {_pct(best[0])}."
    guess = what_it_is(facts)
    return "I can't tell." if guess.startswith("I can't") else f"I can't tell. {guess}"


def _sure(facts: PhotoFacts) -> bool:
    top = best_guess(facts.labels)
    return top is not None and top.probability >= SURE


def _label_leads(facts: PhotoFacts) -> bool:
    """The label is the answer when the classifier is unsure, or sure only of a thing that carries printed
    text (a carton, a bottle, a sign: its label names it better than the class does)."""
    top = best_guess(facts.labels)
    return not _sure(facts) or (top is not None and top.word in TEXT_CARRIERS)


def identify_answer(facts: PhotoFacts) -> str:
    """The hedged guess; led by what the label says when the label is the answer; when the guess is not
    sure, the people too, first when the detectors are sure of them ("Two people: ... I also see what
    might be a military uniform.")."""
    lead = label_lead(facts) if _label_leads(facts) else None
    guess = what_it_is(facts)
    if not lead and not _sure(facts) and any(p.sure for p in facts.people):  # the people are what it is
        said = [people_answer(facts)]
        if guess.startswith("It might be "):  # of a person, the classes name clothes and things held
            said.append("I also see what " + guess.removeprefix("It "))
        return " ".join(said)
    said = [lead] + ([] if guess.startswith("I can't") else [guess]) if lead else [guess]
    if not _sure(facts) and facts.people:
        said.append(people_answer(facts))
    return " ".join(said)


def describe(facts: PhotoFacts) -> str:
    """Describe on a real photo in about three short sentences: what it is (left out when unsure and there
    are people, text or a code to say instead), people, text, codes, colours; retake advice when light,
    sharpness or cut-off text call for it."""
    top = best_guess(facts.labels)
    unsure = top is None or top.probability < MAYBE
    sentences = [] if unsure and (facts.people or _clear_lines(facts) or facts.codes) else [what_it_is(facts)]
    if facts.people:
        sentences.append(people_answer(facts))
    lines = _clear_lines(facts)
    if lines:
        many = f"There are {_number(len(lines))} lines of text, starting {verbatim(lines[0])}."
        sentences.append(f"It says {_quoted(lines)}." if len(lines) <= 2 else many)
    sentences += code_sentences(facts)
    if facts.colours:
        sentences.append(colours_sentence(facts))
    advice = retake_advice(facts)
    return " ".join(sentences[:2] + [advice] if advice else sentences[:3])


def describe_extras(facts: PhotoFacts, advise: bool = True) -> str:
    """What a model's own description lacks (BLIP-2 reads text poorly): the text read, and retake advice when
    the light, sharpness or cut-off text call for it. "" when there is nothing to add."""
    lines = _clear_lines(facts)
    said = [f"The text reads {_quoted(lines)}."] if lines else []
    advice = retake_advice(facts) if advise else None
    return " ".join(said + [advice] if advice else said)


ANSWERS = {
    "identify": lambda text, facts: identify_answer(facts),
    "describe": lambda text, facts: describe(facts),
    "read": lambda text, facts: read_text(facts),
    "colour": colour_answer,
    "people": lambda text, facts: people_answer(facts),
    "light": lambda text, facts: light_answer(facts),
    "quality": lambda text, facts: quality_answer(facts, text),
    "code": lambda text, facts: code_answer(facts),
    "date": lambda text, facts: date_answer(facts),
    "price": lambda text, facts: price_answer(facts),
    "time": lambda text, facts: time_answer(facts),
    "presence": presence_answer,
}


def unknown_answer(instead: str | None = None) -> str:
    """No fact answers it: "I can't answer that offline; the BLIP-2 backend can." (`instead`: the label of a
    backend that answers about any photo, from the registry; None: no such backend to name)."""
    return f"{UNKNOWN_ANSWER[:-1]}; the {instead} backend can." if instead else UNKNOWN_ANSWER


def answer(question: str, facts: PhotoFacts, advise: bool = True, instead: str | None = None) -> str:
    """Each part of the question answered from the facts it asks about, then retake advice when the light,
    sharpness or cut-off text matter to those answers (`advise=False`: not a photo, e.g. a drawing); a part no
    fact answers names the backend that can (`instead`, see `unknown_answer`)."""
    said, kinds = [], set()
    for text in (normalise(p) for p in parts(question)):
        if not text:
            continue
        name = route(text)
        reply = unknown_answer(instead) if name == "unknown" else ANSWERS[name](text, facts)
        if reply not in said:
            said.append(reply)
        kinds.update(ADVICE_FOR.get(name, ()))
    advice = _advice(facts, tuple(sorted(kinds))) if advise else None
    if advice and not any(advice in reply or "Try again" in reply for reply in said):  # Describe, light,
        said.append(advice)  # quality give their own
    return " ".join(said) or unknown_answer(instead)
