"""Where text lines sit: reading order (rows, columns, tables) and boxes of a turned picture mapped back.

A line is any tuple whose item 2 is its box (x0, y0, x1, y1 as fractions of the picture's width/height).
Reading order: lines whose vertical extents mostly overlap are one row, read left to right, rows top to
bottom; but when an empty vertical strip (a gutter) splits the lines into two columns, each stretch of
them between lines that cross the gutter (a title over both) is read column by column. Two sides whose
lines sit in the same rows are a table (a name and its price) and stay read row by row, unless both sides
look like prose: three or more lines each, of PROSE_CHARACTERS or more on average. So a table whose two
columns both hold long entries is read column by column.
"""

from __future__ import annotations

MIN_GUTTER = 0.03  # an empty vertical strip at least this wide (fraction of the width) splits columns
SAME_ROW = 0.5  # lines overlapping vertically by this share of the shorter one are in one row
PROSE_CHARACTERS = 10  # two sides whose lines hold this many characters on average read like prose


def _overlap(a: tuple, b: tuple) -> bool:
    (_, ay0, _, ay1), (_, by0, _, by1) = a, b
    return min(ay1, by1) - max(ay0, by0) > SAME_ROW * min(ay1 - ay0, by1 - by0)


def rows(lines: list) -> list:
    """Lines top to bottom; lines whose vertical extents mostly overlap are one row, read left to right."""
    grouped: list[list] = []
    for line in sorted(lines, key=lambda item: item[2][1]):
        if grouped and _overlap(line[2], grouped[-1][0][2]):
            grouped[-1].append(line)
        else:
            grouped.append([line])
    return [line for row in grouped for line in sorted(row, key=lambda item: item[2][0])]


def gutter(lines: list) -> float | None:
    """The x (fraction) of the widest empty vertical strip with two or more lines on each side, or None."""
    spans = sorted((line[2][0], line[2][2]) for line in lines)
    best, reach = None, None
    for i, (x0, x1) in enumerate(spans):
        wide = reach is not None and x0 - reach >= MIN_GUTTER and i >= 2 and len(spans) - i >= 2
        if wide and (best is None or x0 - reach > best[0]):
            best = (x0 - reach, (x0 + reach) / 2)
        reach = x1 if reach is None else max(reach, x1)
    return best[1] if best else None


def _prose(lines: list) -> bool:
    return len(lines) >= 3 and sum(len(line[0]) for line in lines) >= PROSE_CHARACTERS * len(lines)


def _is_table(left: list, right: list) -> bool:
    """True when the two sides' lines share rows (a name and its value), and they do not read like prose."""
    small, big = sorted((left, right), key=len)
    shared = sum(any(_overlap(a[2], b[2]) for b in big) for a in small)
    if shared < 0.5 * len(small):
        return False
    return not (_prose(left) and _prose(right))


def _stretch(lines: list, x: float) -> list:
    left = [line for line in lines if line[2][2] <= x]
    right = [line for line in lines if line[2][0] >= x]
    if not left or not right or _is_table(left, right):
        return rows(lines)
    return reading_order(left) + reading_order(right)


def reading_order(lines: list) -> list:
    """The lines in the order a person reads them: rows, or columns split by a gutter (module docstring)."""
    x = gutter([line for line in lines if not (line[2][0] < _mid(lines) < line[2][2])]) if lines else None
    if x is None:
        return rows(lines)
    out, stretch = [], []
    for line in sorted(lines, key=lambda item: item[2][1]):
        if line[2][0] < x < line[2][2]:  # crosses the gutter: a heading over both columns
            out += _stretch(stretch, x) + [line]
            stretch = []
        else:
            stretch.append(line)
    return out + _stretch(stretch, x)


def _mid(lines: list) -> float:
    """The middle of the text's horizontal extent (lines crossing it are left out when finding a gutter)."""
    return (min(line[2][0] for line in lines) + max(line[2][2] for line in lines)) / 2


def unturn(box: tuple, turn: int) -> tuple[float, float, float, float]:
    """A box measured on the picture turned by `turn` degrees counter-clockwise (PIL's rotate with expand)
    as a box on the picture as given."""
    x0, y0, x1, y1 = box
    if turn == 90:
        return (1 - y1, x0, 1 - y0, x1)
    if turn == 180:
        return (1 - x1, 1 - y1, 1 - x0, 1 - y0)
    if turn == 270:
        return (y0, 1 - x1, y1, 1 - x0)
    return (x0, y0, x1, y1)


def turn_box(box: tuple, turn: int) -> tuple[float, float, float, float]:
    """A box on the picture as given, measured on the picture turned by `turn` degrees counter-clockwise
    (the inverse of `unturn`)."""
    x0, y0, x1, y1 = box
    if turn == 90:
        return (y0, 1 - x1, y1, 1 - x0)
    if turn == 180:
        return (1 - x1, 1 - y1, 1 - x0, 1 - y0)
    if turn == 270:
        return (1 - y1, x0, 1 - y0, x1)
    return (x0, y0, x1, y1)
