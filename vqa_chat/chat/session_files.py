"""A session's files, in the app's private temp folder (privacy.py): the chat's thumbnails and heatmap
pictures, the scrubbed uploads it holds, and the image slot (the current picture's lossless copy, with its
cached features and facts: image_slot.py). `close` frees them all; it also runs when Gradio drops a
session without telling us (the session's finaliser).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vqa_chat.chat import privacy
from vqa_chat.chat.image_slot import ImageSlot

THUMB_DIR: Path | None = None  # where the chat's pictures go; None: the private folder (`pictures_dir`)
THUMB_SIDE = 384


def pictures_dir() -> Path:
    """THUMB_DIR, else the process's private folder for metadata-free copies of the images: made on first
    use, not at import, and removed at exit (privacy.temp_dir)."""
    return THUMB_DIR or privacy.temp_dir()


@dataclass
class SessionFiles:
    thumbnails: list[str] = field(default_factory=list)  # the chat's pictures: thumbnails and heatmaps
    uploads: list[str] = field(default_factory=list)  # uploads it holds (privacy.hold_upload)
    slot: ImageSlot | None = None  # the current picture

    def take_picture(self, source: str, image: Image.Image) -> str:
        """Make `image` (cleaned, from the upload `source`) the current picture: hold the upload, keep a
        thumbnail for the chat (its path is returned) and a new image slot (the old one is freed)."""
        held = privacy.hold_upload(source, image)
        if held is not None:
            self.uploads.append(held)
        thumbnail = privacy.save_thumbnail(image, pictures_dir(), THUMB_SIDE)
        self.thumbnails.append(thumbnail)
        if self.slot is not None:
            self.slot.close()
        self.slot = ImageSlot(image, pictures_dir())
        return thumbnail

    def keep_picture(self, picture: Image.Image, kind: str) -> str:
        """Save a picture the chat shows (e.g. kind "heatmap"); deleted with the session's other files."""
        path = pictures_dir() / f"{kind}-{uuid.uuid4().hex}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)
        self.thumbnails.append(str(path))
        return str(path)

    def close(self) -> None:
        for path in self.thumbnails:
            with contextlib.suppress(OSError):
                os.remove(path)
        for path in self.uploads:
            privacy.release_upload(path)
        self.thumbnails, self.uploads = [], []
        if self.slot is not None:
            self.slot.close()
            self.slot = None
