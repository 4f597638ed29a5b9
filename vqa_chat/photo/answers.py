"""Answers about a real photo from its photo facts (facts.py): routed answers, Describe, retake advice.

`intent(question)` (router.py: plain word rules) says which fact answers a question. `answer(question,
facts)` answers each part of a message ("what is this and what colour is it?") from that fact, hedged by
the classifier's probabilities (SURE / MAYBE bands, families merged: "Probably a cat (90 % sure), perhaps a
tabby cat."), and says "I can't answer that offline; the BLIP-2 backend can." when no fact answers it.
Retake advice comes only from the measured light, sharpness and cut-off text, never because the
classifier is unsure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import regex  # grapheme clusters (\X), which `re` lacks

from vqa_chat.photo.facts import Label, PhotoFacts
from vqa_chat.photo.people_answers import people_answer
from vqa_chat.photo.router import COLOUR_NAMES, INTENTS, intent, normalise, parts, route

__all__ = ["INTENTS", "answer", "describe", "intent", "retake_advice"]

UNKNOWN_ANSWER = "I can't answer that offline; the BLIP-2 backend can."
SURE = 0.6  # the most likely thing (or family) at least this probable: "Probably a lion (85 % sure)."
MAYBE = 0.25  # at least this probable: "It might be a lion or a tiger."; below: "I can't tell what this is."
SECOND = 0.05  # the second guess is named only when at least this probable
TEXT_CONFIDENCE = 0.5  # OCR lines below this are left out of what is read (and counted as unclear)
# Text from the photo is quoted exactly as read, up to this many characters per OCR line or code payload;
# longer ones are cut there with "…" and their full length said (/facts keeps the whole text). 300 keeps
# whole a printed line (OCR reads line by line), a Wi-Fi code and an ordinary web address, while a code that
# holds a page of text is not read out in full, in the chat and by the screen reader, for every question.
VERBATIM_LIMIT = 300


# --- answers --------------------------------------------------------------------------------------------
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
BASIC_COLOURS = {"gray": "grey", "violet": "purple", "navy": "blue", "turquoise": "blue", "teal": "green",
                 "maroon": "red", "beige": "brown", "tan": "brown", "gold": "yellow", "golden": "yellow",
                 "silver": "grey", "cream": "white"}  # asked colour -> the basic term facts use
SYNONYMS = {"puppy": "dog", "doggy": "dog", "doggie": "dog", "kitten": "cat", "kitty": "cat",
            "bike": "bicycle", "automobile": "car", "cellphone": "phone", "mobile": "phone",
            "telephone": "phone", "mug": "cup", "tv": "television", "glasses": "sunglasses",
            "laptop": "computer", "sneaker": "shoe", "boot": "shoe"}  # a word people say -> one labels use
ADVICE_FOR = {"identify": ("light", "blur"), "read": ("light", "blur", "cut"), "colour": ("light",),
              "people": ("light", "blur"), "code": ("light", "blur"), "presence": ("light", "blur")}


def _pct(p: float) -> str:
    """A probability as a whole percentage rounded down (never 0 or 100): "85 %"."""
    return f"{min(99, max(1, int(p * 100 + 1e-6)))} %"


def _number(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _a(name: str) -> str:
    """The name with "a" or "an" ("an Egyptian Mau"), none for plurals ("sunglasses")."""
    low = name.lower()
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return name
    vowel = low[:1] in tuple("aeiou") and not low.startswith(("uni", "use", "eu", "one"))
    return ("an " if vowel else "a ") + name


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def _advice(facts: PhotoFacts, kinds: tuple[str, ...]) -> str | None:
    problems, fixes = [], []
    if "light" in kinds and facts.light in ("very dark", "dark"):
        problems.append(facts.light)
        fixes.append("with more light")
    if "light" in kinds and facts.light == "very bright" and not _clear_lines(facts):  # a white page is fine
        problems.append("very bright")
        fixes.append("out of direct light")
    if "blur" in kinds and facts.blurry:
        problems.append("blurry")
        fixes.append("holding the camera steady")
    cut = "cut" in kinds and facts.text_cut_off
    if cut:
        fixes.append("from a little further back")
    if not fixes:
        return None
    if problems:
        said = f"The photo is {_join(problems)}" + (", and some text is cut off." if cut else ".")
    else:
        said = "Some text is cut off at the edge."
    return f"{said} Try again {_join(fixes)}."


def retake_advice(facts: PhotoFacts) -> str | None:
    """What to change and retake, only when the light, the sharpness or cut-off text call for it."""
    return _advice(facts, ("light", "blur", "cut"))


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


def _clear_lines(facts: PhotoFacts) -> list[str]:
    return [line.text for line in facts.text if line.confidence >= TEXT_CONFIDENCE and line.text.strip()]


def verbatim(text: str) -> str:
    """Photo text in quotes exactly as read; over VERBATIM_LIMIT characters, its start with "…" and its length
    ('"https://…" (the first 300 of 4,000 characters)'), cut between graphemes (`regex`'s \\X: never between
    a letter and its accent, or inside an emoji)."""
    if len(text) <= VERBATIM_LIMIT:
        return f'"{text}"'
    cut = 0
    for grapheme in regex.finditer(r"\X", text):
        if grapheme.end() > VERBATIM_LIMIT:
            break
        cut = grapheme.end()
    return f'"{text[:cut]}…" (the first {cut} of {len(text):,} characters)'


def _quoted(lines: list[str]) -> str:
    return ", ".join(verbatim(line) for line in lines)


def read_text(facts: PhotoFacts) -> str:
    """Every clearly read line verbatim, in quotes; unclear lines counted, not guessed."""
    lines = _clear_lines(facts)
    unclear = len(facts.text) - len(lines)
    if not facts.text:
        return "I don't see any text."
    if not lines:
        return "There is some text, but I can't read it clearly."
    count = "One line" if len(lines) == 1 else f"{_number(len(lines)).capitalize()} lines"
    said = f"{count}: {_quoted(lines)}."
    if unclear:
        said += f" {_number(unclear).capitalize()} unclear line{'s' * (unclear > 1)} left out."
    return said


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


def light_answer(facts: PhotoFacts) -> str:
    advice = _advice(facts, ("light",))
    if advice:
        return advice
    return "The photo is bright, but fine." if facts.light == "bright" else "The light looks fine."


def quality_answer(facts: PhotoFacts) -> str:
    advice = retake_advice(facts)
    if advice:
        return advice
    return "The photo looks clear: sharp and well lit." + (" No text is cut off." if facts.text else "")


def code_answer(facts: PhotoFacts) -> str:
    if not facts.codes:
        return "I don't see a QR code or barcode."
    said = [f"{_a(c.kind)}: {verbatim(c.data)}" if c.data else f"{_a(c.kind)} I can't decode"
            for c in facts.codes]
    if len(said) == 1:
        return said[0][0].upper() + said[0][1:] + "."
    return f"{_number(len(said)).capitalize()} codes: " + "; ".join(said) + "."


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


def identify_answer(facts: PhotoFacts) -> str:
    """The hedged guess; when it is not sure, the people and the first lines of any text too."""
    said, lines = [what_it_is(facts)], _clear_lines(facts)
    if not _sure(facts) and facts.people:
        said.append(people_answer(facts))
    if not _sure(facts) and lines:
        said.append(f"The text on it says {_quoted(lines[:2])}.")
    return " ".join(said)


def describe(facts: PhotoFacts) -> str:
    """Describe on a real photo in about three short sentences: what it is (left out when unsure and there
    are people), people, text, colours; retake advice when light, sharpness or cut-off text call for it."""
    top = best_guess(facts.labels)
    unsure = top is None or top.probability < MAYBE
    sentences = [] if unsure and facts.people else [what_it_is(facts)]
    if facts.people:
        sentences.append(people_answer(facts))
    lines = _clear_lines(facts)
    if lines:
        many = f"There are {_number(len(lines))} lines of text, starting {verbatim(lines[0])}."
        sentences.append(f"It says {_quoted(lines)}." if len(lines) <= 2 else many)
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
    "quality": lambda text, facts: quality_answer(facts),
    "code": lambda text, facts: code_answer(facts),
    "presence": presence_answer,
    "unknown": lambda text, facts: UNKNOWN_ANSWER,
}


def answer(question: str, facts: PhotoFacts, advise: bool = True) -> str:
    """Each part of the question answered from the facts it asks about, then retake advice when the light,
    sharpness or cut-off text matter to those answers (`advise=False`: not a photo, e.g. a drawing)."""
    said, kinds = [], set()
    for text in (normalise(p) for p in parts(question)):
        if not text:
            continue
        name = route(text)
        reply = ANSWERS[name](text, facts)
        if reply not in said:
            said.append(reply)
        kinds.update(ADVICE_FOR.get(name, ()))
    advice = _advice(facts, tuple(sorted(kinds))) if advise else None
    if advice and not any("Try again" in reply for reply in said):  # Describe, light, quality give their own
        said.append(advice)
    return " ".join(said) or UNKNOWN_ANSWER
