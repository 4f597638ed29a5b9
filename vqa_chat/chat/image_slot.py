"""A session's current picture: a lossless copy on disk, and what is computed from it once (each backend's
encoding, the photo facts), held in memory only within a budget shared by all sessions.

The pixels (1024 x 768 RGB is 2.4 MB), each backend's image features and the photo facts are kept while
there is room under $VQA_CHAT_IMAGE_CACHE_MB (default 512). Past it, the least recently used sessions'
slots drop them (budget.py) and recompute them when asked again: the picture is read back from its PNG
copy, the same pixels, so the features and answers are the same, only slower. An idle session therefore
holds a few kilobytes, however many visitors came before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from pathlib import Path

import torch
from PIL import Image

from vqa_chat import backends, settings
from vqa_chat.backends.base import Backend
from vqa_chat.budget import Budget
from vqa_chat.engine import allocator
from vqa_chat.photo import facts as photo
from vqa_chat.photo.facts import PhotoFacts

# $VQA_CHAT_IMAGE_CACHE_MB; what a dropped picture freed goes back to the OS at once (glibc keeps freed
# blocks as holes in its heaps otherwise: the app's RSS grew ~0.7 MB per idle visitor without it)
BUDGET = Budget(limit_from=lambda: settings.read().image_cache_mb * 2**20,
                after_drop=allocator.release_free_memory)


def _nbytes(features) -> int:
    """A backend's image encoding: a tensor, or something holding one or text (vLLM's data URL)."""
    if isinstance(features, torch.Tensor):
        return features.nbytes
    if isinstance(features, str):
        return len(features)
    return sum(_nbytes(v) for v in vars(features).values()) if hasattr(features, "__dict__") else 0


class ImageSlot:
    """One picture of one session. Use `image`, `features(name)` and `facts`: each is recomputed on demand
    after the budget dropped it. Thread-safe for one session's readers and other sessions' evictions."""

    def __init__(self, image: Image.Image, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = str(folder / f"{uuid.uuid4().hex}.png")
        image.save(self.path, compress_level=1)  # lossless and fast: ~40 ms for 1024 x 768
        self.size = image.size
        self._image: Image.Image | None = image
        self._features: dict[str, torch.Tensor] = {}  # backend name -> its encoding of the picture
        self._facts: PhotoFacts | None = None
        self._lock = threading.Lock()
        BUDGET.stored(self)

    # -- what the budget sees ---------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        image, features, facts = self._image, self._features, self._facts
        size = 0 if image is None else image.width * image.height * len(image.getbands())
        size += sum(_nbytes(f) for f in features.values())
        if facts is not None:
            size += 2 * len(json.dumps(facts.to_json()))  # a generous guess of the Python objects' size
        return size

    def drop(self) -> None:
        """Free the pixels, features and facts (the budget needs the room); the PNG copy stays."""
        with self._lock:
            self._image, self._features, self._facts = None, {}, None

    def close(self) -> None:
        """The session is over: free everything and delete the copy on disk."""
        self.drop()
        BUDGET.forget(self)
        with contextlib.suppress(OSError):
            os.remove(self.path)

    # -- what the session uses --------------------------------------------------------------------------

    @property
    def image(self) -> Image.Image:
        with self._lock:
            if self._image is None:
                with Image.open(self.path) as im:
                    self._image = im.convert("RGB")
            image = self._image
        BUDGET.stored(self)
        return image

    def features(self, backend: str) -> torch.Tensor | None:
        """The backend's cached encoding of the picture, or None (not computed, or dropped)."""
        found = self._features.get(backend)
        if found is not None:
            BUDGET.stored(self)
        return found

    def keep_features(self, backend: str, features: torch.Tensor) -> None:
        with self._lock:
            self._features = {**self._features, backend: features}
        BUDGET.stored(self)

    def encode(self, name: str, backend: Backend):
        """Backend `name`'s encoding of the picture: the cached one, else computed now and kept."""
        features = self.features(name)
        if features is None:
            features = backend.encode_image(self.image)
            self.keep_features(name, features)
        return features

    @property
    def all_features(self) -> dict[str, torch.Tensor]:
        return dict(self._features)

    @property
    def facts(self) -> PhotoFacts | None:
        return self._facts

    def keep_facts(self, facts: PhotoFacts) -> None:
        with self._lock:
            self._facts = facts
        BUDGET.stored(self)

    def photo_facts(self) -> PhotoFacts:
        """What the offline parts measured in the picture (photo/facts.py): the cached facts, else measured
        now and kept. A loaded backend's cached encoding may hold the ImageNet head's features
        (backends.imagenet_features): then the facts' labels need no second pass of that network."""
        facts = self._facts
        if facts is None:
            facts = photo.photo_facts(self.image, backends.imagenet_features(self.all_features))
            self.keep_facts(facts)
        return facts
