"""Turn whatever a user uploads into a clean RGB picture, or a message saying why we can't.

Every odd input becomes a plain `PIL.Image.Image` in RGB: EXIF orientation applied, metadata (EXIF, GPS,
ICC, comments) dropped by copying the pixels into a fresh image, the first frame of animations,
CMYK / 16-bit / float / palette / grayscale converted, transparency composited on white, huge pictures
downscaled. Anything unreadable (corrupt, truncated, not an image, a decompression bomb) raises
`ImageError` whose text is safe to show in the chat.
"""

from __future__ import annotations

import logging
import os
import time
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MAX_SIDE = 1024  # longest side after loading; the vision encoders resize to 224-384 px anyway
MAX_PIXELS = 64_000_000  # declared width x height above this is refused before decoding (bomb guard)
MAX_FILE_BYTES = 50 * 1024 * 1024  # 50 MB
SETTLE_TRIES, SETTLE_SECONDS = 6, 0.05  # reads of a file that may still be being written, and the wait


class ImageError(ValueError):
    """The upload can't be used; str(error) is a user-readable sentence."""


def load_image(
    source: str | os.PathLike | IO[bytes],
    max_side: int = MAX_SIDE,
    notes: list[str] | None = None,
) -> Image.Image:
    """Open `source` (a path or a binary file object) as a metadata-free RGB image.

    Things the user may want to know (first frame of an animation, downscaled, rotated, transparency
    flattened) are appended to `notes` when a list is given.
    """
    notes = [] if notes is None else notes
    if isinstance(source, (str, os.PathLike)):
        # Gradio re-saves an upload into its cache without an atomic rename (truncate, then write), so a
        # request may find the file of an identical picture half-written: read again a few times first.
        for _ in range(SETTLE_TRIES - 1):
            found: list[str] = []
            try:
                image = _open(source, max_side, found)
            except ImageError:
                time.sleep(SETTLE_SECONDS)
                continue
            notes.extend(found)
            return image
    return _open(source, max_side, notes)


def _open(source, max_side: int, notes: list[str]) -> Image.Image:
    _check_file(source)
    try:
        with Image.open(source) as im:
            return _clean(im, max_side, notes)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(_too_many_pixels_message()) from e
    except UnidentifiedImageError as e:
        raise ImageError(
            "That file is not an image I can read. Please use a JPEG, PNG, WebP, GIF, BMP or TIFF picture."
        ) from e
    except MemoryError as e:
        raise ImageError("That image is too large to open here. Please use a smaller picture.") from e
    except Exception as e:  # truncated data, broken chunks, odd codecs: Pillow raises many types
        log.info("could not decode image: %r", e)
        raise ImageError(
            "That image file seems to be damaged or incomplete, so I can't read it. Please try another file."
        ) from e


def _check_file(source) -> None:
    if not isinstance(source, (str, os.PathLike)):
        return
    try:
        size = os.path.getsize(source)
    except OSError as e:
        raise ImageError("I couldn't open that file. Please upload it again.") from e
    if size == 0:
        raise ImageError("That file is empty. Please upload a picture.")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"That file is over {MAX_FILE_BYTES // 2**20} MB. Please use a smaller picture.")


def _too_many_pixels_message() -> str:
    return (
        f"That image has too many pixels to open safely (the limit is {MAX_PIXELS // 1_000_000} megapixels). "
        "Please use a smaller picture."
    )


def _clean(im: Image.Image, max_side: int, notes: list[str]) -> Image.Image:
    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError("That image has no pixels. Please use another picture.")
    if width * height > MAX_PIXELS:
        raise ImageError(_too_many_pixels_message())
    if getattr(im, "is_animated", False) and getattr(im, "n_frames", 1) > 1:
        im.seek(0)
        notes.append("This is an animated image; I'm looking at its first frame.")
    if im.format == "JPEG":
        im.draft("RGB", (max_side, max_side))  # decode big JPEGs at a reduced scale: faster, less memory
    im.load()
    im = _apply_orientation(im, notes)
    im = _to_rgb(im, notes)
    if max(im.size) > max_side:
        before = im.size
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        notes.append(
            f"The image is large ({before[0]}×{before[1]}); I scaled it to {im.size[0]}×{im.size[1]}."
        )
    # A fresh image from the raw pixels: no EXIF, GPS, ICC profile, comments or other metadata survive.
    return Image.frombytes("RGB", im.size, im.tobytes())


def _apply_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: use the pixels as stored
        return im
    if orientation in (None, 1):
        return im
    try:
        rotated = ImageOps.exif_transpose(im)
    except Exception:
        return im
    notes.append("I turned the photo upright using its orientation tag.")
    return rotated


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grayscale
        return Image.fromarray(_to_uint8(np.asarray(im)), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some pixel is (partly) transparent
            notes.append("The image has transparent areas; I put it on a white background.")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return im.convert("RGB")  # CMYK, YCbCr, P, L, 1, ...
    except (ValueError, OSError) as e:
        raise ImageError(
            f"I can't use images in the {mode} colour mode. Please save it as JPEG or PNG."
        ) from e


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale a high-bit-depth grayscale array to 0..255."""
    is_float = a.dtype.kind == "f"
    a = a.astype(np.float64)
    top = float(a.max()) if a.size else 0.0
    if is_float and top <= 1.0:  # float image in 0..1
        a = a * 255.0
    elif top > 255.0:  # 16-bit (or wider) values
        a = a * (255.0 / max(top, 65535.0))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
