"""A labelled set of photos with and without people, made from photos inside installed wheels.

Sources: scikit-image's sample data (astronaut, camera, coffee, chelsea, rocket, coins, page, text, hubble,
horse, the 25 x 25 px LFW face and non-face crops), matplotlib's grace_hopper.jpg, and gradio's demo images
(lion, cheetahs, tower, groot). People are few in those wheels (the astronaut, Grace Hopper, the
cameraman, LFW's crops), so most people photos are transformations of them: JPEG q90 re-saves, scaling
down, crops, mirroring, darkening, small rotations, a small person pasted into a scene, and portraits
tiled into one picture for counts.

Each photo is labelled by hand with its true person count and two honest flags: `clear` (every person in
it is clearly visible to a person looking at the photo) and `face` (at least one face is clearly visible,
frontal or nearly). A "hard" photo has clear=False: small, low-resolution, turned away, covered or dark.
scikit-image is a test dependency (`pip install scikit-image`); matplotlib and gradio are requirements.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


@dataclass
class Sample:
    name: str
    image: Image.Image
    count: int  # true number of people
    clear: bool  # every person in it clearly visible (no people: True unless it is a lookalike)
    face: bool  # a face clearly visible
    note: str  # what it is, for the table


def skimage_photo(name: str) -> Image.Image:
    from skimage import data  # a test dependency, imported only here

    pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(pixels).convert("RGB")


def package_photo(package: str, *parts: str) -> Image.Image:
    """A photo shipped inside an installed package, by its path inside the package folder."""
    module = __import__(package)
    return Image.open(Path(module.__file__).parent.joinpath(*parts)).convert("RGB")


def grace_hopper() -> Image.Image:
    return package_photo("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")


def gradio_photo(name: str) -> Image.Image:
    return package_photo("gradio", "media_assets", "images", name)


# --- transformations -------------------------------------------------------------------------------------
def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    """The photo re-saved as JPEG (as a phone or a chat app would) and read back."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def scaled(image: Image.Image, side: int) -> Image.Image:
    """The photo with its long side `side` px."""
    scale = side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def crop(image: Image.Image, x0: float, y0: float, x1: float, y1: float) -> Image.Image:
    """A crop by fractions of the width and height."""
    w, h = image.size
    return image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))


def darker(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Turned by a few degrees, the corners filled with the photo's mean colour."""
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=fill)


def pasted(scene: Image.Image, person: Image.Image, x: float, y: float, height: float) -> Image.Image:
    """`person` scaled to `height` (fraction of the scene's height) with its top-left corner at (x, y)."""
    out = scene.copy()
    small = scaled(person, round(height * scene.height * max(person.size) / person.height))
    out.paste(small, (round(x * scene.width), round(y * scene.height)))
    return out


def tiled(photos: list[Image.Image], columns: int, cell: int = 256, gap: int = 16,
          background: tuple[int, int, int] = (200, 200, 200)) -> Image.Image:
    """Photos side by side in a grid (a group picture for counts), each fitted into a `cell` px square."""
    rows = -(-len(photos) // columns)
    sheet = Image.new("RGB", (columns * (cell + gap) + gap, rows * (cell + gap) + gap), background)
    for i, photo in enumerate(photos):
        small = scaled(photo, cell)
        x = gap + (i % columns) * (cell + gap) + (cell - small.width) // 2
        y = gap + (i // columns) * (cell + gap) + (cell - small.height) // 2
        sheet.paste(small, (x, y))
    return sheet


def covered(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """A grey rectangle over `box` (fractions): a person whose face cannot be seen."""
    out = image.copy()
    w, h = image.size
    ImageDraw.Draw(out).rectangle((box[0] * w, box[1] * h, box[2] * w, box[3] * h), fill=(90, 90, 90))
    return out


def lfw(first: int, count: int, side: int = 112) -> list[Image.Image]:
    """LFW crops from scikit-image (0-99 faces, 100-199 non-faces), enlarged from 25 px to `side` px."""
    from skimage import data

    crops = (data.lfw_subset()[first:first + count] * 255).astype(np.uint8)
    return [Image.fromarray(c).convert("RGB").resize((side, side), Image.Resampling.BICUBIC) for c in crops]


def smiley() -> Image.Image:
    """A drawn face (circle, two eyes, a smile) on paper: a drawing, no person."""
    image = Image.new("RGB", (400, 400), (245, 240, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse((80, 60, 320, 340), fill=(250, 215, 160), outline=(40, 40, 40), width=6)
    draw.ellipse((140, 140, 175, 185), fill=(40, 40, 40))
    draw.ellipse((225, 140, 260, 185), fill=(40, 40, 40))
    draw.arc((140, 180, 260, 290), 20, 160, fill=(40, 40, 40), width=6)
    return image


# --- the set ---------------------------------------------------------------------------------------------
ASTRONAUT_FACE = (0.32, 0.08, 0.56, 0.36)  # her face, as fractions of skimage's astronaut
CAMERAMAN = (0.2, 0.05, 0.75, 1.0)  # the cameraman's figure in skimage's camera


def people_photos() -> list[Sample]:
    astronaut, grace, camera = skimage_photo("astronaut"), grace_hopper(), skimage_photo("camera")
    portrait = crop(astronaut, 0.15, 0.0, 0.75, 0.62)  # head and shoulders, in uniform
    rocket, tower = skimage_photo("rocket"), gradio_photo("tower.jpg")
    s = Sample
    return [
        s("astronaut", astronaut, 1, True, True, "portrait, original PNG"),
        s("astronaut_q90", jpeg(astronaut), 1, True, True, "portrait, JPEG q90"),
        s("astronaut_mirror", ImageOps.mirror(astronaut), 1, True, True, "portrait, mirrored"),
        s("astronaut_small", scaled(astronaut, 200), 1, True, True, "portrait at 200 px"),
        s("astronaut_rot5", rotated(astronaut, 5), 1, True, True, "portrait turned 5 degrees"),
        s("astronaut_portrait_q90", jpeg(portrait), 1, True, True, "head and shoulders crop, JPEG q90"),
        s("astronaut_dim", darker(astronaut, 0.45), 1, True, True, "portrait in dim light (45 %)"),
        s("grace", grace, 1, True, True, "portrait in uniform (matplotlib JPEG)"),
        s("grace_q90", jpeg(grace), 1, True, True, "portrait in uniform, JPEG q90 again"),
        s("grace_small", scaled(grace, 240), 1, True, True, "portrait at 240 px"),
        s("grace_rot_m4", rotated(grace, -4), 1, True, True, "portrait turned -4 degrees"),
        s("grace_head_mirror", ImageOps.mirror(crop(grace, 0.1, 0.0, 0.9, 0.6)), 1, True, True,
          "head crop, mirrored"),
        s("grace_big_q90", jpeg(grace.resize((1024, 1200), Image.Resampling.BICUBIC)), 1, True, True,
          "portrait enlarged to 1,200 px, JPEG q90"),
        s("cameraman", camera, 1, True, False, "a man with a camera, face half turned"),
        s("cameraman_q90_mirror", jpeg(ImageOps.mirror(camera)), 1, True, False,
          "cameraman mirrored, JPEG q90"),
        s("two_portraits", tiled([astronaut, grace], 2), 2, True, True, "two portraits side by side"),
        s("three_portraits_q90", jpeg(tiled([grace, astronaut, ImageOps.mirror(grace)], 3)), 3, True, True,
          "three portraits, JPEG q90"),
        s("four_portraits", tiled([portrait, grace, ImageOps.mirror(portrait), scaled(grace, 200)], 2), 4,
          True, True, "four portraits in a 2 x 2 grid"),
        s("two_and_cameraman", tiled([grace, camera, astronaut], 3), 3, True, True,
          "two portraits and the cameraman"),
        # hard: small, low resolution, turned away, covered, dark
        s("lfw_six", tiled(lfw(0, 6), 3, cell=112, gap=24), 6, False, True,
          "six 25 px LFW faces enlarged (blurry)"),
        s("lfw_crowd", tiled(lfw(10, 15), 5, cell=96, gap=8), 15, False, True,
          "a crowd of 15 enlarged LFW faces"),
        s("small_in_rocket", pasted(rocket, crop(astronaut, 0.1, 0.0, 0.8, 1.0), 0.08, 0.55, 0.22), 1,
          False, False, "a small person pasted into the rocket scene"),
        s("far_in_rocket", pasted(rocket, crop(astronaut, 0.1, 0.0, 0.8, 1.0), 0.6, 0.6, 0.15), 1, False,
          False, "a person far away in the rocket scene"),
        s("grace_far", pasted(skimage_photo("motorcycle"), grace, 0.1, 0.3, 0.1), 1, False, False,
          "a small portrait on the wall of a workshop"),
        s("tiny_at_tower", pasted(tower, crop(camera, *CAMERAMAN), 0.6, 0.78, 0.16), 1, False, False,
          "a tiny cameraman by the tower"),
        s("face_covered", covered(astronaut, ASTRONAUT_FACE), 1, False, False,
          "astronaut with her face covered (body only)"),
        s("cameraman_back", ImageOps.mirror(covered(camera, (0.35, 0.1, 0.6, 0.35))), 1, False, False,
          "cameraman with his head hidden (body only)"),
        s("astronaut_very_dark", darker(astronaut, 0.12), 1, False, True, "portrait at 12 % brightness"),
        s("grace_blurred", grace.filter(ImageFilter.GaussianBlur(6)), 1, False, True,
          "portrait out of focus"),
        s("astronaut_rot25", rotated(portrait, 25), 1, False, True, "portrait tilted 25 degrees"),
    ]


def empty_photos() -> list[Sample]:
    chelsea = skimage_photo("chelsea")
    s = Sample
    plain = [
        ("chelsea", chelsea, "cat"), ("chelsea_q90_mirror", jpeg(ImageOps.mirror(chelsea)), "cat, JPEG q90"),
        ("chelsea_dark", darker(chelsea, 0.1), "cat at 10 % brightness (a dark photo)"),
        ("coffee", skimage_photo("coffee"), "a cup of coffee"), ("rocket", skimage_photo("rocket"), "rocket"),
        ("page", skimage_photo("page"), "page of text"), ("text", skimage_photo("text"), "text on a wall"),
        ("hubble", skimage_photo("hubble_deep_field"), "galaxies"),
        ("motorcycle", skimage_photo("motorcycle"), "a motorcycle in a workshop"),
        ("horse", skimage_photo("horse"), "a horse silhouette (drawing)"),
        ("brick", skimage_photo("brick"), "a brick wall"), ("grass", skimage_photo("grass"), "grass"),
        ("moon", skimage_photo("moon"), "the moon's surface"),
        ("retina", skimage_photo("retina"), "a retina (medical)"),
        ("lion", gradio_photo("lion.jpg"), "lion"), ("cheetah", gradio_photo("cheetah.jpg"), "cheetah"),
        ("cheetah2", package_photo("gradio", "test_data", "cheetah2.jpg"), "cheetah, close"),
        ("tower", gradio_photo("tower.jpg"), "Eiffel tower"),
        ("triangle", Image.open(Path(__file__).parents[2] / "assets" / "examples" / "blue_triangle.png")
         .convert("RGB"), "a drawn triangle"),
        ("coffee_dark_q90", jpeg(darker(skimage_photo("coffee"), 0.15)), "coffee, dark, JPEG q90"),
    ]
    lookalikes = [  # things with a face-like pattern that are not people
        ("coins", skimage_photo("coins"), "coins with heads on them"),
        ("groot", gradio_photo("groot.jpeg"), "a tree creature's face (film character)"),
        ("smiley", smiley(), "a drawn smiley face"),
        ("lfw_nonfaces", tiled(lfw(100, 12), 4, cell=112, gap=24), "12 LFW non-face crops"),
    ]
    return [s(n, i, 0, True, False, note) for n, i, note in plain] + \
        [s(n, i, 0, False, False, note) for n, i, note in lookalikes]


def people_set() -> list[Sample]:
    return people_photos() + empty_photos()
