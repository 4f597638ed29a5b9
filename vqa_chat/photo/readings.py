"""What read text means: dates (best before, use by...), prices, clock times and pack sizes, by patterns.

Dates in the common printed forms: 12/03/2027, 2027-03-12, 12.03.27, 12 MAR 2027, MAR 12 2027, MAR 2027,
03/2027; month and year alone as digits ("03/27", "12 2025") only next to a date word (EXP, BEST BEFORE).
A date with dots, or a day over 12, is day first; a slashed date whose two numbers could both be the month
is said both ways ("12 March or 3 December 2027"), never guessed. The date word may be on the line before
the date (a label printed "BEST BEFORE" over "12 2025"). Prices: a currency sign or code with a number
($3.49, 3,49 €, £2, EUR 5), or a number with two decimals standing alone on its line or next to a price
word ("3.49", "NOW 3.49"). Times: hours:minutes ("12:45", "7:05 PM").
"""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
MON = r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\.?"
YEAR = r"(\d{4}|\d{2})"
FIRST_YEAR, LAST_YEAR = 1990, 2099  # a "date" outside these years is some other number
CENTURY_PIVOT = 70  # a two-digit year from this up is in the 1900s
KINDS = (  # (what the date is, the words printed before it); the first that matches names it
    ("Best before", r"BEST\s*BEFORE|BEST\s*BY|BEST\s*IF\s*USED\s*BY|BBE|BB|MHD|DLUO|BEST\s*BEF"),
    ("Use by", r"USE\s*BY|USE\s*BEFORE|CONSUME\s*BY"),
    ("Expires", r"EXP\w*|EXPIRY|EXPIRES|EXPIRATION"),
    ("Sell by", r"SELL\s*BY|DISPLAY\s*UNTIL"),
    ("Made", r"PACKED|PKD|MFD|MFG|MANUFACTURED|PRODUCED|PROD|MADE"),
)
CURRENCY = r"[$£€¥₹]|USD|EUR|GBP|CHF|CAD|AUD"
AMOUNT = r"\d{1,6}(?:[.,]\d{2})?"
PRICE_WORDS = r"PRICE|NOW|ONLY|EACH|SALE|TOTAL|PRIX|PREIS|PRECIO|OFFER|SPECIAL"
CLOCK = r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d)?(?:\s?([AP])\.?M\b\.?)?(?![\d:])"
UNITS = r"kg|g|mg|ml|cl|l|fl\.? ?oz|oz|lbs?"


@dataclass
class Date:
    kind: str  # "Best before", "Use by", "Expires", "Sell by", "Made" or "" (a date without a date word)
    said: str  # the date in words: "12 March 2027", "March 2027", "12 March or 3 December 2027"
    written: str  # as printed
    last: datetime.date | None  # the last day it covers (a month's last day); None when day and month
    # could be either way round


@dataclass
class Time:
    said: str  # "12:45", "7:05 PM"
    alone: bool  # the line holds the time and little else (a clock or a display)


def _year(text: str) -> int:
    """A printed year; two digits are 20xx, or 19xx from CENTURY_PIVOT up ("95": 1995)."""
    if len(text) != 2:
        return int(text)
    return int(text) + (1900 if int(text) >= CENTURY_PIVOT else 2000)


def _day(day: int, month: int, year: int) -> tuple[str, datetime.date] | None:
    try:
        return f"{day} {MONTHS[month - 1]} {year}", datetime.date(year, month, day)
    except (ValueError, IndexError):
        return None


def _month(month: int, year: int) -> tuple[str, datetime.date] | None:
    if not (1 <= month <= 12 and FIRST_YEAR <= year <= LAST_YEAR):
        return None
    return f"{MONTHS[month - 1]} {year}", datetime.date(year, month, calendar.monthrange(year, month)[1])


def _month_name(text: str) -> int:
    return next(i for i, name in enumerate(MONTHS, 1) if name.upper().startswith(text[:3]))


def _numeric(a: int, b: int, year: int, dots: bool) -> tuple[str, datetime.date | None] | None:
    """A day/month pair in words (and the day): day first with dots or a first number over 12, month first
    with a second number over 12, both readings (and no day) when either could be the month."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return None
    if dots or a > 12 or a == b:
        return _day(a, b, year)
    if b > 12:
        return _day(b, a, year)
    return (f"{a} {MONTHS[b - 1]} or {b} {MONTHS[a - 1]} {year}", None) if _day(a, b, year) else None


def _dates_in(text: str, keyword: bool) -> list[tuple[str, str, datetime.date | None]]:
    """(said, written, last day) for each date in one upper-cased line; month-year digits only with
    `keyword`."""
    found, rest = [], text

    def take(pattern: str, said) -> None:
        nonlocal rest
        for m in list(re.finditer(pattern, rest)):
            words = said(m)
            if words:
                found.append((words[0], m.group(0).strip(), words[1]))
                rest = rest.replace(m.group(0), " " * len(m.group(0)), 1)

    take(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b",  # year first: 2027-03-12
         lambda m: _numeric(int(m[3]), int(m[2]), int(m[1]), True))
    take(r"\b(\d{1,2})([/.\-])(\d{1,2})\2" + YEAR + r"\b",
         lambda m: _numeric(int(m[1]), int(m[3]), _year(m[4]), m[2] == "."))
    take(r"\b(\d{1,2})\s*[-/ ]?\s*" + MON + r"\s*[-/ ]?\s*" + YEAR + r"\b",
         lambda m: _numeric(int(m[1]), _month_name(m[2]), _year(m[3]), True))
    take(r"\b" + MON + r"\s+(\d{1,2}),?\s+(\d{4})\b",
         lambda m: _numeric(int(m[2]), _month_name(m[1]), int(m[3]), True))
    take(r"\b" + MON + r"\s*[-/ ]?\s*" + YEAR + r"\b", lambda m: _month(_month_name(m[1]), _year(m[2])))
    take(r"\b(\d{1,2})\s*[/\-.]\s*(\d{4})\b", lambda m: _month(int(m[1]), int(m[2])))
    if keyword:
        take(r"\b(\d{1,2})\s*[/\- ]\s*(\d{2}|\d{4})\b", lambda m: _month(int(m[1]), _year(m[2])))
    return found


def _kind(text: str) -> str:
    return next((kind for kind, words in KINDS if re.search(rf"\b(?:{words})\b", text)), "")


def dates(lines: list[str]) -> list[Date]:
    """The dates in the lines (in reading order), each with the date word printed before it, if any."""
    out = []
    for i, line in enumerate(lines):
        text = line.upper()
        kind = _kind(text)
        if not kind and i and not re.search(r"[A-Z]{2,}", re.sub(MON, "", text)):  # a line of just a date
            kind = _kind(lines[i - 1].upper())
        for said, written, last in _dates_in(text, bool(kind)):
            found = Date(kind, said, written, last)
            if found not in out:
                out.append(found)
    return out


def _without_dates(line: str) -> str:
    text = line.upper()
    for _, written, _ in _dates_in(text, bool(_kind(text))):
        text = text.replace(written, " ")
    return text


def prices(lines: list[str]) -> list[str]:
    """The prices in the lines, as printed ("$3.49", "3,49 €", "£2", "3.49"), each once."""
    out = []
    for line in lines:
        text = re.sub(r"\d{1,2}:\d{2}", " ", _without_dates(line))  # a time is not a price
        signs = re.finditer(rf"({CURRENCY})\s?({AMOUNT})(?![\d.,])", text)
        found = [f"{m[1]}{' ' * (len(m[1]) > 1)}{m[2]}" for m in signs]  # "$3.49", "EUR 5"
        found += [f"{m[1]} {m[2]}" for m in re.finditer(rf"(?<![\d.,])({AMOUNT})\s?({CURRENCY})", text)]
        if not found:
            bare = re.findall(rf"(?<![\d.,/\-])(\d{{1,4}}[.,]\d{{2}})(?![\d.,/%]|\s?(?:{UNITS})\b)", text,
                              flags=re.IGNORECASE)
            alone = re.fullmatch(r"\s*\d{1,4}[.,]\d{2}\s*", text)
            if bare and (alone or re.search(rf"\b(?:{PRICE_WORDS})\b", text)):
                found = bare
        out += [price for price in found if price not in out]
    return out


def times(lines: list[str]) -> list[Time]:
    """Clock times ("12:45", "7:05 PM") in the lines; `alone` when the line is the time and little else."""
    out = []
    for line in lines:
        for m in re.finditer(CLOCK, line.upper()):
            said = f"{m[1]}:{m[2]}" + (f" {m[3]}M" if m[3] else "")
            rest = line[:m.start()] + line[m.end():]
            out.append(Time(said, len(re.sub(r"[^A-Za-z0-9]", "", rest)) <= 3))
    return out


def sizes(lines: list[str]) -> list[str]:
    """Pack sizes ("305 g", "1.5 l", "12 fl oz"), as printed with a space before the unit, each once."""
    out = []
    for line in lines:
        for m in re.finditer(rf"(?<![\d.,])(\d+(?:[.,]\d+)?)\s?({UNITS})\b", line, flags=re.IGNORECASE):
            size = f"{m[1]} {m[2]}"
            if size not in out:
                out.append(size)
    return out
