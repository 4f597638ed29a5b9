"""Scene text: lines read by RapidOCR (PP-OCRv4 detection + recognition ONNX models inside its PyPI wheel).

The engine is built once per process. Detection runs on the picture as given (with limit_type "max" the
engine only shrinks pictures over 960 px), so `read_lines` first scales the picture to OCR_SIDE: that
bounds the time. Spaces the recogniser drops between words ("histogramofgreyvalues") are left as read:
restoring them would need a word list, and a guess would change what the label says.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image

OCR_SIDE = 800  # the long side (px) the picture is scaled down to before detection
MIN_CONFIDENCE = 0.5  # lines the recogniser is less sure of are dropped
LONE_CHARACTER = 0.8  # a single character needs this confidence (fur and foam read as "D" or "O" at ~0.55)
THREADS = 1  # onnxruntime threads per model: a second one spun for ~2x the CPU time here (shared CPUs)


@functools.cache
def engine():
    """The RapidOCR engine, loaded once per process."""
    # onnxruntime's telemetry writes a session file into the temp folder and a device id into ~/.cache at
    # import: off, before it is first imported (offline and private: nothing of a user's run stays behind)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    from rapidocr_onnxruntime import RapidOCR  # imported here: only photo facts need it

    return RapidOCR(det_limit_type="max", text_score=MIN_CONFIDENCE, intra_op_num_threads=THREADS,
                    inter_op_num_threads=1)


def read_lines(image: Image.Image) -> list[tuple[str, float, tuple[float, float, float, float]]]:
    """Text lines as (text, confidence, box as fractions x0, y0, x1, y1), top to bottom, left to right."""
    rgb = image.convert("RGB")
    scale = min(1.0, OCR_SIDE / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    result, _ = engine()(bgr)
    lines = []
    for points, text, confidence in result or []:
        xy = np.asarray(points, dtype=np.float32)
        box = (float(xy[:, 0].min() / rgb.width), float(xy[:, 1].min() / rgb.height),
               float(xy[:, 0].max() / rgb.width), float(xy[:, 1].max() / rgb.height))
        if len(text.strip()) > 1 or (text.strip() and confidence >= LONE_CHARACTER):
            lines.append((text.strip(), float(confidence), box))
    return reading_order(lines)


def reading_order(lines: list) -> list:
    """Lines top to bottom; lines whose vertical extents mostly overlap are one row, read left to right."""
    rows: list[list] = []
    for line in sorted(lines, key=lambda item: item[2][1]):
        y0, y1 = line[2][1], line[2][3]
        if rows:
            r0, r1 = rows[-1][0][2][1], rows[-1][0][2][3]
            if min(y1, r1) - max(y0, r0) > 0.5 * min(y1 - y0, r1 - r0):
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: item[2][0])]
