"""Shared pytest fixtures (keep this file to fixtures only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import make_tiny_blip2  # tests/ is on sys.path (pytest's default "prepend" import mode)

# Tiny models gain nothing from threads, and spinning threads starve a training run or the app under test.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory) -> Path:
    """A tiny random BLIP-2 checkpoint (model + processor) saved in a folder, built once per test session.

    Load it like a hub model, e.g. `Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))`
    or with the environment variable `VQA_CHAT_BLIP2_MODEL=<folder>`.
    """
    return make_tiny_blip2(tmp_path_factory.mktemp("tiny_blip2"))


@pytest.fixture(scope="session")
def tiny_vlm_parts(tmp_path_factory) -> dict[str, str]:
    """A tiny random ViT and Llama LM in folders: VLMConfig fields {"vit_source", "lm_source"}."""
    from tiny_models import make_tiny_vlm_parts

    return make_tiny_vlm_parts(tmp_path_factory.mktemp("tiny_vlm"))
