"""Every odd or bad upload, made with PIL here: it becomes clean RGB or a readable ImageError."""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import pytest
from fakes import exif_photo, png_header_only
from PIL import Image

from vqa_chat.chat.images import MAX_SIDE, ImageError, load_image


def save(im: Image.Image, path, **kwargs):
    im.save(path, **kwargs)
    return path


def loaded(path, **kwargs):
    notes: list[str] = []
    im = load_image(path, notes=notes, **kwargs)
    assert isinstance(im, Image.Image) and im.mode == "RGB"
    assert not im.info and not im.getexif()  # a fresh image: no EXIF, GPS, ICC or comments
    return im, notes


# ---- unusable files: a readable message, never a traceback ----


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a picture\n" * 20)
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_random_bytes_with_image_extension(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    path = save(Image.new("RGB", (400, 300), (200, 30, 30)), tmp_path / "full.jpg", quality=90)
    data = path.read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="damaged or incomplete"):
        load_image(tmp_path / "half.jpg")


def test_corrupt_png_body(tmp_path):
    path = save(Image.new("RGB", (64, 64), (0, 128, 0)), tmp_path / "ok.png")
    data = bytearray(path.read_bytes())
    data[60:90] = b"\xff" * 30  # garbage in the compressed data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageError):
        load_image(tmp_path / "bad.png")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="couldn't open"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("size", [(30_000, 30_000), (10_000, 10_000), (9_000, 8_000)])
def test_decompression_bomb(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(*size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="too many pixels"):
            load_image(path)


# ---- odd but usable images: RGB, upright, metadata-free, with a note when it matters ----


def test_huge_image_is_downscaled(tmp_path):
    path = save(Image.new("RGB", (3000, 2000), (10, 20, 30)), tmp_path / "big.png")
    im, notes = loaded(path)
    assert im.size == (MAX_SIDE, 683)
    assert any("scaled" in n for n in notes)


def test_huge_jpeg_is_downscaled(tmp_path):
    path = save(Image.new("RGB", (4096, 1024), (10, 200, 30)), tmp_path / "wide.jpg")
    im, _ = loaded(path)
    assert im.size == (MAX_SIDE, 256)
    assert abs(im.getpixel((500, 100))[1] - 200) < 10


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (50, 40), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    im, notes = loaded(path)
    r, g, b = im.getpixel((10, 10))
    assert r > 200 and g < 50 and b < 50
    assert any("first frame" in n for n in notes)


def test_animated_webp_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in [(0, 0, 255), (255, 255, 0)]]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    im, notes = loaded(path)
    assert im.getpixel((5, 5))[2] > 200
    assert any("first frame" in n for n in notes)


def test_cmyk_jpeg(tmp_path):
    path = save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")  # red in CMYK
    im, _ = loaded(path)
    r, g, b = im.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_grayscale_png(tmp_path):
    a = np.zeros((20, 40), dtype=np.uint16)
    a[:, 20:] = 65535
    a[:, 10:20] = 32768
    path = save(Image.fromarray(a), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    im, _ = loaded(path)
    assert im.getpixel((0, 0)) == (0, 0, 0)
    assert im.getpixel((15, 0)) == (128, 128, 128)
    assert im.getpixel((30, 0)) == (255, 255, 255)


def test_float_tiff(tmp_path):
    a = np.full((10, 10), 0.5, dtype=np.float32)
    path = save(Image.fromarray(a, mode="F"), tmp_path / "float.tif")
    im, _ = loaded(path)
    assert im.getpixel((3, 3)) == (128, 128, 128)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # fully transparent...
    rgba.paste((255, 0, 0, 255), (0, 0, 10, 10))  # ...except an opaque red left half
    path = save(rgba, tmp_path / "rgba.png")
    im, notes = loaded(path)
    assert im.getpixel((2, 2)) == (255, 0, 0)
    assert im.getpixel((15, 5)) == (255, 255, 255)
    assert any("white background" in n for n in notes)


def test_opaque_rgba_has_no_transparency_note(tmp_path):
    path = save(Image.new("RGBA", (8, 8), (0, 0, 255, 255)), tmp_path / "opaque.png")
    im, notes = loaded(path)
    assert im.getpixel((1, 1)) == (0, 0, 255) and notes == []


def test_palette_images(tmp_path):
    p = Image.new("RGB", (16, 16), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    im, _ = loaded(save(p, tmp_path / "palette.png"))
    assert im.getpixel((4, 4)) == (0, 128, 255)
    p.info["transparency"] = 0  # the only palette entry becomes transparent
    im, notes = loaded(save(p, tmp_path / "palette_t.png", transparency=0))
    assert im.getpixel((4, 4)) == (255, 255, 255)
    assert notes


@pytest.mark.parametrize("mode, value", [("L", 77), ("1", 255), ("LA", (77, 255)), ("I", 77)])
def test_grayscale_modes(tmp_path, mode, value):
    suffix = "tif" if mode == "I" else "png"  # 32-bit integer grayscale: TIFF
    path = save(Image.new(mode, (12, 12), value), tmp_path / f"gray_{mode}.{suffix}")
    im, _ = loaded(path)
    expected = 255 if mode == "1" else 77
    assert im.getpixel((3, 3)) == (expected, expected, expected)


def test_exif_rotated_photo_is_upright_and_metadata_is_gone(tmp_path):
    im, notes = loaded(exif_photo(tmp_path, 6))  # 6 = shown rotated 90 degrees clockwise
    assert im.size == (20, 40)
    top, bottom = im.getpixel((10, 5)), im.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the red (left) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert any("upright" in n for n in notes)
    buf = io.BytesIO()
    im.save(buf, format="JPEG")  # nothing to carry over either
    assert not Image.open(buf).getexif()


def test_upright_photo_keeps_its_size(tmp_path):
    im, notes = loaded(exif_photo(tmp_path, 1))
    assert im.size == (40, 20) and notes == []


def test_file_object_input():
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buf, format="PNG")
    buf.seek(0)
    im = load_image(buf)
    assert im.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageError):
        load_image(io.BytesIO(b"nope"))


def test_a_file_still_being_written_is_read_once_complete(tmp_path):
    # gradio re-saves uploads non-atomically: a concurrent request can see the file empty for a moment
    data = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(data, "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(b"")
    threading.Timer(0.08, path.write_bytes, [data.getvalue()]).start()
    assert load_image(str(path)).getpixel((0, 0)) == (255, 0, 0)
