"""How a photo looks: dominant colour names (centre-weighted), light level, sharpness.

Colours: every pixel of a small copy is named with one of the 11 basic colour terms from its hue,
saturation and value, and each name's share is weighted towards the centre (where people aim the camera).
Light: mean luminance (Rec. 601 weights). Sharpness: variance of the Laplacian of a grey copy whose long
side is at most SHARP_SIDE px, so the number depends little on the photo's size (blurred ~1, sharp photos
100s); smaller pictures are measured as they are. Text polarity: whether read text is light on a dark
ground (a lit screen: more light would not help).
"""

from __future__ import annotations

import cv2
import numpy as np

COLOUR_SIDE = 96  # the long side (px) of the copy whose pixels are named
MIN_SHARE = 0.05  # colours with a smaller centre-weighted share are not listed
SHARP_SIDE = 512  # the long side (px) of the grey copy the Laplacian is taken on
BLURRY_BELOW = 50.0  # variance of the Laplacian under this counts as blurry
LIGHT_LEVELS = ((0.1, "very dark"), (0.22, "dark"), (0.72, "normal"), (0.88, "bright"))  # upper bounds
DARK_GROUND = 0.35  # text counts as light on dark when the ground around its strokes is darker than this
HUES = ((15, "red"), (40, "orange"), (68, "yellow"), (165, "green"), (255, "blue"), (290, "purple"),
        (340, "pink"), (360, "red"))  # hue upper bounds in degrees


def resized(rgb: np.ndarray, side: int) -> np.ndarray:
    """A copy whose long side is `side` px (never enlarged)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """The basic colour term of each pixel of an RGB uint8 array [H, W, 3] -> array of str [H, W]."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue, sat, val = hsv[..., 0] * 360 / 256, hsv[..., 1] / 255, hsv[..., 2] / 255
    names = np.full(hue.shape, "red", dtype=object)
    for bound, name in reversed(HUES):
        names[hue < bound] = name
    warm = np.isin(names, ("red", "orange", "yellow"))
    names[warm & (val < 0.6) & (sat > 0.25)] = "brown"  # dark orange / red / yellow
    names[(names == "red") & (sat < 0.5) & (val > 0.7)] = "pink"  # pale red
    names[sat < 0.2] = "grey"
    names[(sat < 0.2) & (val > 0.85)] = "white"
    names[val < 0.18] = "black"
    return names


def centre_weights(h: int, w: int) -> np.ndarray:
    """A Gaussian bump over the picture: 1 at the centre, 0.14 at the middle of each edge, 0.02 at corners."""
    ys = (np.arange(h) + 0.5) / h - 0.5
    xs = (np.arange(w) + 0.5) / w - 0.5
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * 0.25 ** 2))


def colours(rgb: np.ndarray) -> list[tuple[str, float]]:
    """Dominant colour names with their centre-weighted share (0..1), largest first."""
    small = resized(rgb, COLOUR_SIDE)
    names = colour_names(small)
    weights = centre_weights(*names.shape)
    total = float(weights.sum())
    shares = {str(name): float(weights[names == name].sum()) / total for name in np.unique(names)}
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    return [(name, round(share, 3)) for name, share in ranked if share >= MIN_SHARE]


def brightness(rgb: np.ndarray) -> float:
    """Mean luminance 0..1."""
    small = resized(rgb, COLOUR_SIDE).astype(np.float32) / 255
    return float((small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())


def light(level: float) -> str:
    """The light word for a mean luminance."""
    for bound, word in LIGHT_LEVELS:
        if level < bound:
            return word
    return "very bright"


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of a grey copy with a long side of at most SHARP_SIDE px (0..255 grey
    levels). A smaller picture is not enlarged: that would blur it."""
    grey = cv2.cvtColor(resized(rgb, SHARP_SIDE), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def light_on_dark(rgb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> bool:
    """True when most of the text in `boxes` (fractions of the picture) is light on a dark ground, as on a
    lit screen or a backlit display: each box is split into its two grey levels (Otsu), the fewer pixels
    being the strokes; weighted by box area."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    light = dark = 0.0
    for x0, y0, x1, y1 in boxes:
        top, left = int(y0 * h), int(x0 * w)
        crop = grey[top:max(top + 1, int(y1 * h)), left:max(left + 1, int(x1 * w))]
        if crop.size < 16:
            continue
        level, _ = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        above = crop > level
        strokes_light = above.mean() < 0.5  # the fewer pixels are the strokes
        ground = crop[~above] if strokes_light else crop[above]
        if strokes_light and ground.size and ground.mean() < DARK_GROUND * 255:
            light += crop.size
        else:
            dark += crop.size
    return light > dark
