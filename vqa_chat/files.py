"""Small file helpers shared by the model code and training: checksums and the cache folder."""

from __future__ import annotations

import hashlib

from vqa_chat import settings


def sha256(path: str) -> str:
    """The file's SHA-256, read in 1 MB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> str:
    """Where the converted LM and cached image features go: ~/.cache/vqa-chat or $VQA_CHAT_CACHE."""
    return settings.read().cache
