"""Answers about the text and codes in a real photo: read it all, dates, prices, clock times, codes, what a
labelled thing is called, and which edge text runs off (with the way to move the camera).

What read text means (a date, a price, a time) comes from readings.py. One story per answer: a code that
was read is never followed by "I don't see any text".
"""

from __future__ import annotations

import datetime
import re

from vqa_chat.photo.facts import PhotoFacts, TextLine
from vqa_chat.photo.readings import dates, prices, sizes, times
from vqa_chat.photo.wording import a, capital, join, number, quoted, verbatim

TEXT_CONFIDENCE = 0.5  # OCR lines below this are left out of what is read (and counted as unclear)
NAME_HEIGHT = 0.6  # lines at least this share of the tallest line's height make up a label's name
NAME_LINES = 3  # at most this many lines make up a label's name
PAGE_LINES = 5  # this many clear lines or more are a page of text, not a label
PROSE = 25  # ... and so are two or more whose lines average this many characters
MOVES = {"top": "up", "bottom": "down", "left": "to the left", "right": "to the right"}
OPPOSITE = ({"left", "right"}, {"top", "bottom"})
WHERE_DATES_ARE = "Dates are often printed on the lid, the base or a seam: try another side."
TEXT_CARRIERS = {  # ImageNet labels of things that carry printed text: their label says more than the class
    "beer bottle", "ring binder", "cardboard box / carton", "envelope", "lotion", "packet", "pill bottle",
    "soda bottle", "sunscreen", "water bottle", "wine bottle", "website", "comic book", "crossword",
    "traffic or street sign", "menu", "monitor", "CRT monitor", "mobile phone", "scoreboard", "digital clock",
    "odometer", "milk can", "plastic bag", "dust jacket", "notebook computer", "library", "bookcase",
    "bookstore"}


def clear(facts: PhotoFacts) -> list[TextLine]:
    return [line for line in facts.text if line.confidence >= TEXT_CONFIDENCE and line.text.strip()]


def clear_lines(facts: PhotoFacts) -> list[str]:
    return [line.text for line in clear(facts)]


def read_something(facts: PhotoFacts) -> bool:
    """True when some text or a code was read: the photo's light was good enough for what matters."""
    return bool(clear(facts) or facts.codes)


# --- cut off ----------------------------------------------------------------------------------------------
def runs_off(what: str, edges: list[str]) -> str | None:
    """ "The text runs off the right edge: move the camera a little to the right, or step back." """
    sides = [edge for edge in MOVES if edge in edges]
    if not sides:
        return None
    where = f"the {join(sides)} edge{'s' * (len(sides) > 1)}"
    if any(pair <= set(sides) for pair in OPPOSITE):
        return f"{what} runs off {where}: step back so that all of it fits."
    move = join([MOVES[side] for side in sides])
    return f"{what} runs off {where}: move the camera a little {move}, or step back."


def text_cut(facts: PhotoFacts) -> str | None:
    return runs_off("The text", facts.text_edges) if facts.text_cut_off else None


# --- codes ------------------------------------------------------------------------------------------------
def code_sentences(facts: PhotoFacts) -> list[str]:
    return [capital(f"{a(c.kind)}: {verbatim(c.data)}.") for c in facts.codes if c.data]


def code_answer(facts: PhotoFacts) -> str:
    said = code_sentences(facts)
    if not said:
        return "I don't see a QR code or barcode."
    if len(said) == 1:
        return said[0]
    return f"{capital(number(len(said)))} codes: " + "; ".join(s[:-1] for s in said) + "."


# --- reading ----------------------------------------------------------------------------------------------
def date_sentence(date) -> str:
    kind = date.kind or "A date:"
    if date.last is None:  # day and month could be either way round: as printed, then both readings
        return f"{kind} {date.written} ({date.said})."
    return f"{kind} {date.said}."


def meaning(lines: list[str]) -> list[str]:
    """The dates and prices in read lines, said as such."""
    said = [date_sentence(d) for d in dates(lines)]
    found = prices(lines)
    if found:
        said.append(f"The price is {found[0]}." if len(found) == 1 else f"Prices: {join(found)}.")
    return said


def read_text(facts: PhotoFacts) -> str:
    """Every clearly read line verbatim, in reading order, then what the dates and prices are, then any
    code's contents; unclear lines counted, not guessed."""
    lines, codes = clear_lines(facts), code_sentences(facts)
    unclear = len(facts.text) - len(lines)
    if not facts.text:
        return " ".join(codes + ["No other text."]) if codes else "I don't see any text."
    if not lines:
        return " ".join(["There is some text, but I can't read it clearly."] + codes)
    count = "One line" if len(lines) == 1 else f"{capital(number(len(lines)))} lines"
    said = [f"{count}: {quoted(lines)}."]
    if unclear:
        said.append(f"{capital(number(unclear))} unclear line{'s' * (unclear > 1)} left out.")
    return " ".join(said + meaning(lines) + codes)


def date_answer(facts: PhotoFacts, today: datetime.date | None = None) -> str:
    """The dates read, said as dates ("Best before March 2027."), and whether the first has passed."""
    lines = clear_lines(facts)
    found = dates(lines)
    if not found:
        start = "I can't find a date in the text I can read." if lines else "I can't read any text here."
        return f"{start} {WHERE_DATES_ARE}"
    said = [date_sentence(d) for d in found[:3]]
    first = next((d for d in found if d.kind and d.kind != "Made"), found[0])
    if first.last is not None and first.kind != "Made":
        passed = first.last < (today or datetime.date.today())
        said.append("That date has passed." if passed else "That date has not passed yet.")
    return " ".join(said)


def price_answer(facts: PhotoFacts) -> str:
    lines = clear_lines(facts)
    found = prices(lines)
    if found:
        return f"The price is {found[0]}." if len(found) == 1 else f"Prices: {join(found)}."
    if lines:
        return f"I can't find a price in the text I can read: {quoted(lines[:3])}."
    return "I can't read a price here: I don't see any text."


def time_answer(facts: PhotoFacts) -> str:
    """The time on a digital clock or display; other times in the text named as such, never as the time."""
    found = times(clear_lines(facts))
    shown = [t.said for t in found if t.alone]
    if shown:
        return f"The display shows {shown[0]}."
    if found:
        return f"I don't see a clock display; the text mentions {join([t.said for t in found])}."
    return "I can't tell the time: I read it only from a digital clock or display, and I don't see one here."


# --- what a labelled thing is -----------------------------------------------------------------------------
def _height(line: TextLine, facts: PhotoFacts) -> float:
    """The line's letter height in pixels (its box's width when the text was turned a quarter)."""
    x0, y0, x1, y1 = line.box
    return (x1 - x0) * facts.width if facts.text_turn in (90, 270) else (y1 - y0) * facts.height


def _is_words(text: str) -> bool:
    """True when a line holds words, not only a date, price, size or date word."""
    if dates([text]) or prices([text]) or re.search(r"\b(?:BEST|USE|SELL|EXP\w*)\b", text.upper()):
        return False
    return len(re.findall(r"[A-Za-z]", re.sub(r"\d+(?:[.,]\d+)?\s?[A-Za-z]{1,2}\b", "", text))) >= 2


def label_lead(facts: PhotoFacts) -> str | None:
    """What the label names, to lead an answer to "what is this?": 'A label: "TOMATO SOUP", 305 g.', or
    "A display showing 12:45.", 'A screen: "..."' (light text in a dark photo), 'A page of text, starting
    "..."', or a code's contents; None without clear text or a code."""
    lines = clear(facts)
    texts = [line.text for line in lines]
    if not lines:
        return code_sentences(facts)[0] if code_sentences(facts) else None
    shown = [t.said for t in times(texts) if t.alone]
    if shown:
        return f"A display showing {shown[0]}."
    if len(lines) >= PAGE_LINES or (len(lines) >= 2 and sum(map(len, texts)) >= PROSE * len(lines)):
        return f"A page of text, starting {verbatim(lines[0].text)}."
    words = [line for line in lines if _is_words(line.text)]
    if not words:
        return None
    tallest = max(_height(line, facts) for line in words)
    name = [line.text for line in words if _height(line, facts) >= NAME_HEIGHT * tallest][:NAME_LINES]
    extra = sizes(texts)[:1] + [f"price {p}" for p in prices(texts)[:1]]
    kind = "A screen" if facts.light_text and facts.light in ("very dark", "dark") else "A label"
    return f"{kind}: {verbatim(' '.join(name))}" + "".join(f", {e}" for e in extra) + "."
