"""Shared pytest fixtures (keep this file to fixtures only).

The builders behind them live in tests/tiny_models.py and tests/fakes.py (tests/ is on sys.path: pytest's
default "prepend" import mode). Test files never import one another.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from fakes import FakeBackend
from tiny_models import make_tiny_blip2, make_tiny_vlm, make_tiny_vlm_parts

from vqa_chat import backends
from vqa_chat.chat import session, session_files

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
    return make_tiny_vlm_parts(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="session")
def tiny_vlm(tiny_vlm_parts):
    """Builds a tiny random custom model on those parts, the same weights every call:
    `tiny_vlm()`, `tiny_vlm(mp_type="mlp", vit_grid=3)` (VLMConfig fields)."""
    return functools.partial(make_tiny_vlm, tiny_vlm_parts)


@pytest.fixture
def fake(monkeypatch):
    """Install fake backends "fake" and "fake2" (tests/fakes.py) and a "broken" one that cannot load."""
    made = {"fake": FakeBackend("fake"), "fake2": FakeBackend("fake2")}

    def broken(options):
        raise OSError("weights not reachable offline")

    for name, backend in made.items():
        monkeypatch.setitem(backends.REGISTRY, name, backends.Entry(lambda options, b=backend: b))
        monkeypatch.setitem(backends._loaded, name, backend)  # undone after the test
    monkeypatch.setitem(backends.REGISTRY, "broken", backends.Entry(broken))
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)  # every piece is an update: deterministic steps
    return made


@pytest.fixture(scope="session", autouse=True)
def app_temp_dir(tmp_path_factory) -> Path:
    """Where the apps under test keep users' pictures: inside pytest's own temp folder, never the system's.
    Thumbnails, heatmaps and Gradio's uploads of apps built in this process go here, and the `app.py`
    processes that tests start make their private folder in it ($TMPDIR)."""
    folder = tmp_path_factory.mktemp("app_temp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session_files, "THUMB_DIR", folder)
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        mp.setenv("TMPDIR", str(folder))
        yield folder
