"""Small wording helpers shared by the photo answers: numbers as words, lists, "a"/"an", and photo text
quoted verbatim (exactly as read, long payloads shortened at VERBATIM_LIMIT)."""

from __future__ import annotations

import regex  # grapheme clusters (\X), which `re` lacks

PLACES = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Text from the photo is quoted exactly as read, up to this many characters per OCR line or code payload;
# longer ones are cut there with "…" and their full length said (/facts keeps the whole text). 300 keeps
# whole a printed line (OCR reads line by line), a Wi-Fi code and an ordinary web address, while a code that
# holds a page of text is not read out in full, in the chat and by the screen reader, for every question.
VERBATIM_LIMIT = 300


def number(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def a(name: str) -> str:
    """The name with "a" or "an" ("an Egyptian Mau"), none for plurals ("sunglasses")."""
    low = name.lower()
    if low.endswith("s") and not low.endswith(("ss", "us", "is")):
        return name
    vowel = low[:1] in tuple("aeiou") and not low.startswith(("uni", "use", "eu", "one"))
    return ("an " if vowel else "a ") + name


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


def quoted(lines: list[str]) -> str:
    return ", ".join(verbatim(line) for line in lines)


def capital(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]
