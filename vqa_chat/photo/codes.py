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


def _qr_texts(grey: np.ndarray) -> list[str]:
    r = readers()
    texts = []
    found, many, _, _ = r.qr.detectAndDecodeMulti(grey)
    texts += list(many) if found else []
    texts.append(r.qr.detectAndDecode(grey)[0])
    found, many, _, _ = r.qr_aruco.detectAndDecodeMulti(grey)
    texts += list(many) if found else []
    return texts


def _barcode_texts(grey: np.ndarray) -> list[str]:
    for picture in (grey, cv2.GaussianBlur(grey, (5, 5), 0)):
        found, texts, _, _ = readers().barcode.detectAndDecodeWithType(picture)
        if found and any(texts):
            return list(texts)
    return []


def _located(grey: np.ndarray) -> bool:
    """True when a reader finds something shaped like a code (decoded or not)."""
    r = readers()
    return bool(r.qr.detect(grey)[0] or r.qr_aruco.detectMulti(grey)[0] or r.barcode.detect(grey)[0])


def _read(grey: np.ndarray) -> list[Code]:
    codes = [Code("QR code", t) for t in _qr_texts(grey)] + [Code("barcode", t) for t in _barcode_texts(grey)]
    unique = []
    for code in codes:
        if code.data and code not in unique:
            unique.append(code)
    return unique


def find_codes(rgb: np.ndarray) -> list[Code]:
    """QR codes and barcodes that could be decoded (QR codes first), each once."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    codes = _read(grey)
    if not codes and max(grey.shape) * UPSCALE <= UPSCALE_MAX_SIDE and _located(grey):
        codes = _read(cv2.resize(grey, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC))
    return codes
