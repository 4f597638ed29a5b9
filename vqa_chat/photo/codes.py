"""QR codes and barcodes: every one that one of OpenCV's shipped readers can decode, each named once.

OpenCV's readers miss different codes: the multi-code QR reader misses clean single codes that its
single-code reader decodes (a printed plain-text QR code at some sizes), and the ArUco-based QR reader
finds others. So all three QR readers run (each takes ~2-20 ms on a 1,024 px picture here), then the
barcode reader on the picture and a slightly blurred copy (it misses some crisp or fine bars). Only when
nothing was decoded but a reader located a code is the picture read again at UPSCALE x its size: small
codes whose modules are a pixel or two wide decode that way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

UPSCALE = 2  # a located but undecoded code is read again on a copy this many times larger
UPSCALE_MAX_SIDE = 2048  # ... when that copy's long side stays within this (bounds the time)


@dataclass
class Code:
    kind: str  # "QR code" or "barcode"
    data: str  # the decoded content


@dataclass
class Readers:
    qr: cv2.QRCodeDetector
    qr_aruco: cv2.QRCodeDetectorAruco
    barcode: cv2.barcode.BarcodeDetector


@functools.cache
def readers() -> Readers:
    """OpenCV's QR and barcode readers, made once per process."""
    return Readers(cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco(), cv2.barcode.BarcodeDetector())


def _read(grey: np.ndarray) -> tuple[list[Code], bool]:
    """The codes every reader decodes (each once), and whether any reader located a code at all."""
    r = readers()
    found, many, points, _ = r.qr.detectAndDecodeMulti(grey)
    located = bool(found)
    qr = list(many) if found else []
    text, points, _ = r.qr.detectAndDecode(grey)
    located = located or points is not None
    qr.append(text)
    found, many, _, _ = r.qr_aruco.detectAndDecodeMulti(grey)
    located = located or bool(found)
    qr += list(many) if found else []
    bars = []
    for picture in (grey, cv2.GaussianBlur(grey, (5, 5), 0)):  # the reader misses some crisp or fine bars
        found, texts, _, _ = r.barcode.detectAndDecodeWithType(picture)
        located = located or bool(found)
        if found and any(texts):
            bars = list(texts)
            break
    unique = []
    for code in [Code("QR code", t) for t in qr] + [Code("barcode", t) for t in bars]:
        if code.data and code not in unique:
            unique.append(code)
    return unique, located


def find_codes(rgb: np.ndarray) -> list[Code]:
    """QR codes and barcodes that could be decoded (QR codes first), each once."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    codes, located = _read(grey)
    if not codes and located and max(grey.shape) * UPSCALE <= UPSCALE_MAX_SIDE:
        codes, _ = _read(cv2.resize(grey, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC))
    return codes
