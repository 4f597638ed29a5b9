"""Photo facts on scikit-image's sample photos (inside its wheel, nothing downloaded): labels, text, people,
colours, light, sharpness and codes. Most tests call one part on a small copy to stay fast; one test runs
the whole `photo_facts`."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

skimage_data = pytest.importorskip("skimage.data")

from vqa_chat.photo import facts, labels, looks, ocr, people  # noqa: E402


def photo(name: str, side: int = 512) -> Image.Image:
    image = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
    scale = side / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return photo("astronaut")


@pytest.fixture(scope="module")
def astronaut_facts(astronaut) -> facts.PhotoFacts:
    return facts.photo_facts(astronaut)


def test_chelsea_is_a_cat():
    top = labels.top(labels.probabilities(photo("chelsea")))
    assert top[0][2] == "cat"
    assert top[0][1] > 0.2


def test_coffee_is_espresso_or_a_cup():
    name, probability, group = labels.top(labels.probabilities(photo("coffee")))[0]
    assert name == "espresso" or group == "cup"


def test_names_and_groups_cover_imagenet():
    names, groups = labels.names(), labels.groups()
    assert len(names) == len(groups) == 1000 and all(names)
    assert names[281] == "tabby cat" and groups[281] == "cat" and groups[207] == "dog"
    assert groups[817] == "car" and groups[0] == "fish" and groups[400] is None
    listed = [i for indices in labels.GROUP_LISTS.values() for i in indices]
    ranged = [i for ranges in labels.GROUP_RANGES.values() for a, b in ranges for i in range(a, b + 1)]
    assert len(set(listed + ranged)) == len(listed) + len(ranged)  # no class in two families


def test_astronaut_is_one_person(astronaut_facts):
    assert len(astronaut_facts.people) == 1
    assert astronaut_facts.people[0].kind == "face"
    assert astronaut_facts.people[0].where in ("centre", "left")
    assert json.loads(json.dumps(astronaut_facts.to_json()))["width"] == 512
    assert len(astronaut_facts.labels) == 5 and astronaut_facts.seconds > 0


def test_no_person_in_an_animal_or_on_coins(astronaut):
    on_animal = people.find_people(np.asarray(astronaut), animal_share=0.9)  # an animal's "face" scores high:
    assert not any(p.sure for p in on_animal)  # on an animal photo a face is at most a hint
    assert people.find_people(np.asarray(photo("coins")), animal_share=0.0) == []  # a head on a coin
    assert people.find_people(np.asarray(photo("chelsea")), animal_share=0.0) == []


def test_page_is_read():
    lines = ocr.read_lines(photo("page", 384))  # its own size: 4 of its 6 lines are found, fast
    text = " ".join(line[0] for line in lines).lower()
    for word in ("region-based", "segmentation", "markers", "coins", "background"):
        assert word in text
    assert lines[0][0].startswith("Region")  # reading order: the title first
    assert all(0 <= v <= 1 for line in lines for v in line[2])


def test_no_lone_letter_read_in_fur_after_turning():
    cat = photo("chelsea", 1024)  # 1024 x 681: its centre square, where the quarter-turned pass read a "D"
    left = (cat.width - cat.height) // 2
    assert ocr.read(cat.crop((left, 0, left + cat.height, cat.height))).lines == []


def stars(size=(640, 480)) -> Image.Image:
    """A flag's field of stars (white five-pointed stars on blue, drawn): the recogniser reads them as "★"."""
    field = Image.new("RGB", size, (40, 50, 110))
    draw = ImageDraw.Draw(field)
    for row in range(5):
        for col in range(7):
            cx, cy = 50 + col * 90 + (45 if row % 2 else 0), 50 + row * 90
            radii = [22 if i % 2 == 0 else 9 for i in range(10)]
            draw.polygon([(cx + r * np.sin(i * np.pi / 5), cy - r * np.cos(i * np.pi / 5))
                          for i, r in enumerate(radii)], fill="white")
    return field


def test_symbols_without_letters_or_digits_are_not_text():
    assert ocr.read(stars()).lines == []  # a flag behind a portrait was read out as 'It says "★★".'
    assert not ocr._kept("★★", 0.97) and not ocr._kept("•", 0.99) and not ocr._kept("///", 0.9)
    assert ocr._kept("4€", 0.9) and ocr._kept("Ωμ", 0.9) and ocr._kept("7", 0.95)


def test_reading_order_rows_then_left_to_right():
    right = ("world", 0.9, (0.5, 0.1, 0.9, 0.2))
    left = ("hello", 0.9, (0.1, 0.11, 0.4, 0.21))
    below = ("below", 0.9, (0.1, 0.4, 0.4, 0.5))
    assert [line[0] for line in ocr.reading_order([below, right, left])] == ["hello", "world", "below"]


def test_dark_copy_is_dark(astronaut):
    dark = (np.asarray(astronaut).astype(np.float32) * 0.3).astype(np.uint8)
    assert looks.light(looks.brightness(np.asarray(astronaut))) == "normal"
    assert looks.light(looks.brightness(dark)) in ("dark", "very dark")
    assert looks.light(looks.brightness(dark // 3)) == "very dark"


def test_blurred_copy_is_blurry(astronaut):
    sharp = looks.sharpness(np.asarray(astronaut))
    blurred = looks.sharpness(np.asarray(astronaut.filter(ImageFilter.GaussianBlur(4))))
    assert sharp >= looks.BLURRY_BELOW > blurred


def test_solid_red_is_red():
    assert looks.colours(np.full((64, 64, 3), (220, 20, 30), np.uint8))[0] == ("red", 1.0)
    mixed = np.zeros((90, 90, 3), np.uint8)
    mixed[:, :] = (250, 250, 250)
    mixed[22:67, 22:67] = (30, 60, 200)  # a blue square over the middle half of a white picture
    assert [name for name, _ in looks.colours(mixed)] == ["blue", "white"]


def test_qr_code_is_read():
    code = cv2.QRCodeEncoder.create().encode("https://example.org/menu")
    canvas = np.full((600, 800, 3), 255, np.uint8)
    big = cv2.resize(code, None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    canvas[100:100 + big.shape[0], 200:200 + big.shape[1]] = big[:, :, None]
    assert facts.find_codes(canvas) == [facts.Code("QR code", "https://example.org/menu")]


EAN_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111",
         "0001011")  # EAN-13 left-hand odd-parity digit patterns (1 = bar)
EAN_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL",
              "LGGLGL")  # left-half patterns by the first digit (G = the even-parity set)


def ean13(digits: str, module: int = 4, height: int = 300) -> np.ndarray:
    """An EAN-13 barcode drawn on a white 1024 x 768 picture."""
    right = ["".join("1" if c == "0" else "0" for c in code) for code in EAN_L]
    even = [code[::-1] for code in right]
    d = [int(c) for c in digits]
    left = "".join((EAN_L if p == "L" else even)[x] for p, x in zip(EAN_PARITY[d[0]], d[1:7]))
    bits = "101" + left + "01010" + "".join(right[x] for x in d[7:]) + "101"
    row = np.repeat(np.array([0 if b == "1" else 255 for b in bits], np.uint8), module)
    canvas = np.full((768, 1024, 3), 255, np.uint8)
    top, x = (768 - height) // 2, (1024 - row.size) // 2
    canvas[top:top + height, x:x + row.size] = row[None, :, None]
    return canvas


def test_barcode_is_read():
    assert facts.find_codes(ean13("4006381333931")) == [facts.Code("barcode", "4006381333931")]


def test_text_touching_an_edge_is_cut_off():
    inside = facts.TextLine("ok", 0.9, (0.2, 0.2, 0.8, 0.3))
    assert not facts.cut_off([inside])
    assert facts.cut_off([inside, facts.TextLine("cut", 0.9, (0.5, 0.5, 1.0, 0.6))])
