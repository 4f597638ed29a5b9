"""Where the model looked: Q-Former cross-attention maps for both backends, the overlay, the CLI flag."""

from __future__ import annotations

import pytest
from PIL import Image
from test_custom_model import tiny_model

import vqa_chat.backends as backends
from vqa_chat import cli
from vqa_chat.backends.base import BackendOptions
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat import heatmap


@pytest.fixture
def blip2(tiny_blip2_dir):
    return Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate"))


def test_blip2_map_averages_qformer_cross_attention_over_the_patch_grid(blip2):
    grid = heatmap.attention_map(blip2, Image.new("RGB", (60, 40), "red"), "Question: what? Answer:")
    assert grid.shape == (3, 3)  # tiny BLIP-2: 30 px, 10 px patches (the CLS position is left out)
    assert abs(float(grid.sum()) - 1) < 1e-5 and float(grid.min()) >= 0


def test_custom_map_depends_on_the_question(tiny_vlm_parts):
    backend = CustomBackend(tiny_model(tiny_vlm_parts, vit_grid=3))
    image = Image.new("RGB", (40, 40), "blue")
    a = heatmap.attention_map(backend, image, "Question: what color is the car? Answer:")
    b = heatmap.attention_map(backend, image, "Question: how many dogs are there? Answer:")
    assert a.shape == (3, 3) and not bool((a == b).all())


def test_overlay_keeps_the_image_size_and_colours_it():
    image = Image.new("RGB", (80, 50), (128, 128, 128))
    out = heatmap.overlay(image, [[0.0, 1.0], [0.0, 0.0]])
    assert out.size == (80, 50) and out.mode == "RGB"
    assert out.getpixel((70, 5)) != out.getpixel((5, 45))  # the hot corner differs from a cold one
    assert "top right" in heatmap.describe_focus([[0.0, 1.0], [0.0, 0.0]])


def test_cli_writes_the_heatmap(tiny_blip2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(backends, "_loaded", {})
    image, out = tmp_path / "photo.png", tmp_path / "heat.png"
    Image.new("RGB", (64, 48), (30, 160, 60)).save(image)
    argv = ["--model", str(tiny_blip2_dir), "--image", str(image), "--question", "what?"]
    argv += ["--heatmap", str(out)]
    assert cli.main([*argv, "--max-new-tokens", "3"]) == 0
    assert Image.open(out).size == (64, 48)
    assert "where the model looked" in capsys.readouterr().err
