"""Image-caption pairs as plain lists of `CaptionRecord` dicts (used to train "describe" requests).

Each record is one (image, caption) pair; an image with five captions gives five records:

    {"image": "/data/flickr8k/Flicker8k_Dataset/1000268201_693b08cb0e.jpg",   # image file path
     "caption": "A child in a pink dress is climbing up a set of stairs in an entry way .",
     "image_id": "1000268201_693b08cb0e.jpg"}                                  # groups an image's captions

Two layouts are read:
- JSONL: one `{"image": PATH, "caption": TEXT}` object per line (an `image_id` key is kept if present);
  relative image paths are resolved against the JSONL file's folder.
- Flickr8k: `Flickr8k.token.txt` (lines `NAME.jpg#K<TAB>caption`, in the folder or in `Flickr8k_text/`), the
  images in `Flicker8k_Dataset/` (the official spelling; `Flickr8k_Dataset/`, `Images/` and `images/` work
  too), and the optional split lists `Flickr_8k.{train,dev,test}Images.txt`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict


class CaptionRecord(TypedDict):
    image: str  # path of the image file
    caption: str
    image_id: str  # the image's file name (or the JSONL's `image_id` / `image` value)


def load_captions_jsonl(path: str | Path) -> list[CaptionRecord]:
    """Caption records from a JSONL file of `{"image", "caption"}` objects."""
    path = Path(path)
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        image = str(path.parent / row["image"])  # an absolute path stays as it is
        image_id = str(row.get("image_id", row["image"]))
        records.append(CaptionRecord(image=image, caption=row["caption"], image_id=image_id))
    return records


FLICKR8K_IMAGE_DIRS = ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images")
FLICKR8K_SPLITS = {"train": "train", "dev": "dev", "val": "dev", "validation": "dev", "test": "test"}


def _first_existing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def load_flickr8k(data_dir: str | Path, split: str | None = None) -> list[CaptionRecord]:
    """Flickr8k caption records; `split` is train / dev (or val) / test, or None / "all" for every line."""
    data_dir = Path(data_dir)
    folders = [data_dir, data_dir / "Flickr8k_text"]
    tokens = _first_existing([f / "Flickr8k.token.txt" for f in folders])
    if tokens is None:
        raise FileNotFoundError(f"no Flickr8k.token.txt in {data_dir} or {data_dir / 'Flickr8k_text'}")
    image_dirs = [data_dir / d for d in FLICKR8K_IMAGE_DIRS]
    image_dir = _first_existing(image_dirs) or image_dirs[0]
    keep = None
    if split and split != "all":
        if split not in FLICKR8K_SPLITS:
            raise ValueError(f"Flickr8k splits are {sorted(FLICKR8K_SPLITS)} or 'all', not {split!r}")
        split_file = _first_existing([f / f"Flickr_8k.{FLICKR8K_SPLITS[split]}Images.txt" for f in folders])
        if split_file is None:
            raise FileNotFoundError(f"no Flickr_8k.{FLICKR8K_SPLITS[split]}Images.txt next to {tokens}")
        keep = {line.strip() for line in split_file.read_text().splitlines() if line.strip()}
    records = []
    for line in tokens.read_text().splitlines():
        if not line.strip():
            continue
        key, caption = line.split("\t", 1)
        name = key.rsplit("#", 1)[0]
        if keep is None or name in keep:
            records.append(CaptionRecord(image=str(image_dir / name), caption=caption.strip(), image_id=name))
    return records
