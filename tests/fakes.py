"""Fakes the tests share: a backend that needs no model, a phone photo with EXIF and GPS, a PNG bomb, a photo
of a QR code."""

from __future__ import annotations

import struct
import threading
import time
import zlib

import cv2
import torch
from PIL import Image

from vqa_chat.backends.base import Backend


class FakeBackend(Backend):
    """Answers "w0 w1 w2 ..." (max_new_tokens words); records prompts and vision calls."""

    num_image_tokens = 4

    def __init__(self, name="fake", context_length=4096, delay=0.0, fail_after=None):
        self.name, self.context_length, self.delay, self.fail_after = name, context_length, delay, fail_after
        self.encoded, self.prompts = 0, []
        self.finished = threading.Event()

    def encode_image(self, image):
        self.encoded += 1
        return torch.zeros(1, 4, 8)  # 4 image tokens

    def count_tokens(self, text):
        return len(text.split())

    def stream(self, image_embeds, prompt, settings, stop=None, state=None, log=None):
        self.prompts.append(prompt)
        try:
            for i in range(settings.max_new_tokens):
                if stop is not None and stop.is_set():
                    return
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("CUDA out of memory (simulated)")
                time.sleep(self.delay)
                yield f" w{i}"
        finally:
            self.finished.set()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but holds almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_photo(tmp_path, orientation: int):
    """A wide 40x20 photo, red left half / blue right half, with an orientation tag and GPS data."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # camera make
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPS latitude
    path = tmp_path / f"rot{orientation}.jpg"
    im.save(path, exif=exif, quality=95)
    assert Image.open(path).getexif()[0x0112] == orientation
    return path


def qr_photo(path, payload: str):
    """A photo of a QR code holding `payload` (made with OpenCV's encoder), on a mid-grey background: normal
    light, so an answer about it carries no retake advice."""
    code = cv2.QRCodeEncoder.create().encode(payload)
    code = cv2.resize(code, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    im = Image.new("RGB", (code.shape[1] + 160, code.shape[0] + 160), (110, 120, 130))
    im.paste(Image.fromarray(code).convert("RGB"), (80, 80))
    im.save(path)
    return path
