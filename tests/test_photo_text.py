"""Text and codes in photos made here (PIL text in matplotlib's DejaVu fonts, OpenCV's QR encoder): cut-off
signs, lit screens, QR codes, labelled tins, dates and prices, turned text, a digital clock, columns and
tables; and what dates, prices and times are read as (readings.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from vqa_chat.photo import codes, facts, ocr, readings
from vqa_chat.photo.answers import answer, retake_advice

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font(size: int, name: str = "DejaVuSans-Bold.ttf") -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def sign(text: str, xy: tuple[int, int], size: int = 110) -> Image.Image:
    """White letters on a green sign filling a 640 x 480 photo, drawn from `xy` (may run off an edge)."""
    image = Image.new("RGB", (640, 480), (30, 90, 40))
    ImageDraw.Draw(image).text(xy, text, font=font(size), fill="white")
    return image


def lines_picture(lines: list[tuple[str, tuple[int, int], int]], size=(800, 600), ground="white",
                  ink="black", name="DejaVuSans.ttf") -> Image.Image:
    image = Image.new("RGB", size, ground)
    draw = ImageDraw.Draw(image)
    for text, xy, points in lines:
        draw.text(xy, text, font=font(points, name), fill=ink)
    return image


def qr_picture(text: str, module: int) -> np.ndarray:
    """A QR code with `module`-px modules in the middle of a white 640 x 480 picture."""
    code = cv2.QRCodeEncoder.create().encode(text)
    big = cv2.resize(code, None, fx=module, fy=module, interpolation=cv2.INTER_NEAREST)
    canvas = np.full((480, 640, 3), 255, np.uint8)
    y, x = (480 - big.shape[0]) // 2, (640 - big.shape[1]) // 2
    canvas[y:y + big.shape[0], x:x + big.shape[1]] = big[:, :, None]
    return canvas


@pytest.mark.parametrize("xy, edge, move", [
    ((150, 180), "right", "to the right"), ((-380, 180), "left", "to the left"),
    ((80, -40), "top", "up"), ((80, 420), "bottom", "down"),
])
def test_cut_off_sign_says_the_edge_and_which_way_to_move(xy, edge, move):
    seen = facts.photo_facts(sign("PHARMACY", xy, 80 if edge in ("top", "bottom") else 110))
    assert seen.text and seen.text_edges == [edge]
    said = answer("what does it say?", seen)
    assert said.endswith(f"The text runs off the {edge} edge: move the camera a little {move}, or step back.")


def test_whole_sign_is_not_cut_off():
    seen = facts.photo_facts(sign("PHARMACY", (60, 180), 80))
    assert [line.text for line in seen.text] == ["PHARMACY"] and not seen.text_cut_off
    assert answer("what does it say?", seen) == 'One line: "PHARMACY".'


def test_light_text_on_a_black_screen_is_read_with_no_darkness_advice():
    screen = lines_picture([("Battery 80%", (190, 150), 44), ("Wi-Fi on", (230, 250), 44)], (640, 480),
                           ground=(5, 5, 8), ink=(235, 235, 235), name="DejaVuSans-Bold.ttf")
    seen = facts.photo_facts(screen)
    assert seen.light == "very dark" and seen.light_text
    assert answer("what does it say?", seen) == 'Two lines: "Battery 80%", "Wi-Fi on".'
    assert retake_advice(seen) is None
    assert answer("what is this?", seen).startswith('A screen: "Battery 80% Wi-Fi on".')


def test_a_qr_code_the_multi_reader_misses_is_read_with_no_no_text():
    picture = qr_picture("Hello from the tin", 6)
    grey = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    found, texts, _, _ = cv2.QRCodeDetector().detectAndDecodeMulti(grey)
    assert not found or not any(texts)  # OpenCV's multi-code reader alone misses it
    assert codes.find_codes(picture) == [codes.Code("QR code", "Hello from the tin")]
    seen = facts.photo_facts(Image.fromarray(picture))
    said = answer("what does it say?", seen)
    assert said == 'A QR code: "Hello from the tin". No other text.'
    assert answer("what is this?", seen) == 'A QR code: "Hello from the tin".'
    assert "Try again" not in answer("scan the code", seen)  # very bright, but the code was read


def test_a_small_qr_code_is_read_from_an_upscaled_copy():
    code = cv2.QRCodeEncoder.create().encode("https://example.org/menu")
    small = cv2.resize(code, (60, 60), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 255, np.uint8)
    canvas[200:260, 300:360] = small[:, :, None]
    assert codes._read(canvas[:, :, 0]) == ([], True)  # located, not decoded at its own size
    assert codes.find_codes(canvas) == [codes.Code("QR code", "https://example.org/menu")]


def test_what_is_this_on_a_labelled_tin_leads_with_the_label():
    tin = Image.new("RGB", (640, 480), (200, 190, 170))
    draw = ImageDraw.Draw(tin)
    draw.rounded_rectangle((170, 40, 470, 450), 30, fill=(190, 20, 30), outline=(120, 120, 120), width=6)
    draw.ellipse((170, 20, 470, 70), fill=(170, 170, 175))
    for text, y, points in (("TOMATO", 150, 64), ("SOUP", 230, 64), ("305 g", 400, 28)):
        draw.text((320, y), text, font=font(points), fill="white", anchor="mm")
    seen = facts.photo_facts(tin)
    assert seen.labels[0].probability < 0.6  # the classifier is unsure of a drawn tin
    assert answer("What is this?", seen).startswith('A label: "TOMATO SOUP", 305 g.')


def test_dates_and_prices_on_a_label_are_said_as_such():
    label = lines_picture([("FRESH MILK", (60, 60), 56), ("BEST BEFORE 12.03.27", (60, 200), 34),
                           ("$3.49", (60, 300), 48)], (640, 480), ground=(250, 248, 240),
                          name="DejaVuSans-Bold.ttf")
    seen = facts.photo_facts(label)
    assert answer("when does it expire?", seen).startswith("Best before 12 March 2027.")
    assert answer("how much is it?", seen) == "The price is $3.49."
    assert answer("what does it say?", seen).endswith("Best before 12 March 2027. The price is $3.49.")


COLUMNS = [("Opening hours and prices", (40, 30), 40), ("Monday closed", (40, 130), 30),
           ("Tuesday late", (40, 190), 30), ("Friday early", (40, 250), 30),
           ("Adults pay more", (440, 120), 30), ("Children go free", (440, 168), 30),
           ("Dogs welcome", (440, 216), 30), ("Cafe upstairs", (440, 264), 30)]


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_turned_text_is_read_upright_in_reading_order(turn):
    reading = ocr.read(lines_picture(COLUMNS).rotate(turn, expand=True))
    assert [line[0] for line in reading.lines] == [text for text, _, _ in COLUMNS]  # heading, then columns
    assert reading.turn == (360 - turn) % 360


def test_a_short_word_turned_sideways_is_read():
    picture = lines_picture([("OK", (200, 150), 90), ("No 5", (200, 285), 90)], (800, 600),
                            ground=(240, 235, 220), name="DejaVuSans-Bold.ttf")
    assert [line[0] for line in ocr.read(picture.rotate(90, expand=True)).lines] == ["OK", "No 5"]


def test_a_price_table_is_read_row_by_row():
    rows = [("Soup", "3.49"), ("Salad", "4.99"), ("Bread", "1.20")]
    picture = lines_picture([item for i, (name, price) in enumerate(rows)
                             for item in ((name, (60, 100 + i * 80), 44), (price, (560, 100 + i * 80), 44))])
    assert [line[0] for line in ocr.read_lines(picture)] == [word for row in rows for word in row]


def test_a_digital_clock_is_read():
    clock = Image.new("RGB", (640, 480), (10, 10, 10))
    draw = ImageDraw.Draw(clock)
    draw.rounded_rectangle((80, 140, 560, 340), 20, fill=(25, 25, 25))
    draw.text((320, 240), "12:45", font=font(150, "DejaVuSansMono-Bold.ttf"), fill=(255, 60, 40), anchor="mm")
    seen = facts.photo_facts(clock)
    assert answer("what time is it?", seen) == "The display shows 12:45."
    assert retake_advice(seen) is None  # a lit display in the dark: more light would not help


@pytest.mark.parametrize("line, kind, said", [
    ("12/03/2027", "", "12 March or 3 December 2027"), ("2027-03-12", "", "12 March 2027"),
    ("MAR 2027", "", "March 2027"), ("12.03.27", "", "12 March 2027"),
    ("BEST BEFORE 25/12/2026", "Best before", "25 December 2026"),
    ("EXP 03/27", "Expires", "March 2027"), ("USE BY 12 MAR 2027", "Use by", "12 March 2027"),
    ("Mar 12, 2027", "", "12 March 2027"), ("sell by 12/25/2026", "Sell by", "25 December 2026"),
])
def test_dates_in_common_formats(line, kind, said):
    assert [(d.kind, d.said) for d in readings.dates([line])] == [(kind, said)]


def test_a_date_word_on_the_line_above_names_the_date():
    found = readings.dates(["BEST BEFORE", "12 2025"])
    assert [(d.kind, d.said, d.last) for d in found] == [("Best before", "December 2025",
                                                           datetime.date(2025, 12, 31))]
    assert readings.dates(["Tel 12 2025"]) == []  # month and year as bare digits only next to a date word


@pytest.mark.parametrize("line, found", [
    ("3.49", ["3.49"]), ("$3.49", ["$3.49"]), ("3,49 €", ["3,49 €"]), ("£2", ["£2"]), ("NOW 2.99", ["2.99"]),
    ("EUR 5", ["EUR 5"]), ("Fat 3.50 g", []), ("12.03.27", []), ("OPEN 9:00", []), ("Page 12", []),
])
def test_prices(line, found):
    assert readings.prices([line]) == found


def test_times_and_sizes():
    assert [(t.said, t.alone) for t in readings.times(["12:45"])] == [("12:45", True)]
    assert [(t.said, t.alone) for t in readings.times(["7:05 pm"])] == [("7:05 PM", True)]
    assert [t.alone for t in readings.times(["OPEN 9:00-17:00"])] == [False, False]
    assert readings.times(["3.49", "12.03.27"]) == []
    assert readings.sizes(["TOMATO SOUP 305g", "1.5 l"]) == ["305 g", "1.5 l"]
