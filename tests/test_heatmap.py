"""Where the model looked: Q-Former cross-attention maps for both backends, the overlay, the CLI flag."""

from __future__ import annotations

import threading

import pytest
import torch
from PIL import Image

from vqa_chat import cli
from vqa_chat.backends.blip2 import Blip2Backend, qformer_cross_attention
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat import heatmap
from vqa_chat.engine.types import BackendOptions, GenerationSettings


@pytest.fixture
def blip2(tiny_blip2_dir, close_after):
    return close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate")))


def test_blip2_map_averages_qformer_cross_attention_over_the_patch_grid(blip2):
    grid = heatmap.attention_map(blip2, Image.new("RGB", (60, 40), "red"), "Question: what? Answer:")
    assert grid.shape == (3, 3)  # tiny BLIP-2: 30 px, 10 px patches (the CLS position is left out)
    assert abs(float(grid.sum()) - 1) < 1e-5 and float(grid.min()) >= 0


def eager_cross_attentions(qformer, queries, patches):
    """transformers' own weights (output_attentions with the eager kernel), on a Q-Former the test owns."""
    kept, qformer.config._attn_implementation = qformer.config._attn_implementation, "eager"
    try:
        out = qformer(query_embeds=queries.expand(patches.shape[0], -1, -1), encoder_hidden_states=patches,
                      output_attentions=True, return_dict=True)  # fmt: skip
    finally:
        qformer.config._attn_implementation = kept
    return [a for a in out.cross_attentions if a is not None]


@pytest.mark.parametrize("every", [1, 2])  # BLIP-2 cross-attends in every 2nd layer; the tiny one in every
def test_qformer_cross_attention_equals_transformers_eager_weights(every):
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    torch.manual_seed(0)
    config = Blip2QFormerConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        encoder_hidden_size=24, cross_attention_frequency=every, vocab_size=64,
    )  # fmt: skip
    qformer = Blip2QFormerModel(config).eval()
    queries, patches = torch.randn(1, 5, 32), torch.randn(2, 10, 24)
    with torch.no_grad():
        reference = eager_cross_attentions(qformer, queries, patches)
    ours = qformer_cross_attention(qformer, queries, patches)
    assert len(ours) == len(reference) == 4 // every
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b, atol=1e-6)


def test_blip2_map_leaves_the_shared_model_alone(blip2):
    """The map is computed without switching the shared BLIP-2 to eager attention (other sessions use it)."""
    qformer = blip2.model.qformer
    kept = qformer.config._attn_implementation
    seen = []  # the attention implementation while the Q-Former runs for the heatmap
    hook = qformer.encoder.layer[0].crossattention.attention.query.register_forward_pre_hook(
        lambda module, args: seen.append(qformer.config._attn_implementation)
    )
    try:
        grid = heatmap.attention_map(blip2, Image.new("RGB", (60, 40), "red"), "Question: what? Answer:")
    finally:
        hook.remove()
    assert seen and set(seen) == {kept} and qformer.config._attn_implementation == kept
    patches = blip2.vision_patches([Image.new("RGB", (60, 40), "red")])
    with torch.no_grad():
        reference = eager_cross_attentions(qformer, blip2.model.query_tokens, patches)
    attention = torch.stack([a.mean(dim=(1, 2)) for a in reference]).mean(0)[0, 1:]  # [N] without CLS
    assert torch.allclose(grid.flatten(), attention / attention.sum(), atol=1e-6)


def test_blip2_heatmaps_and_answers_run_at_the_same_time(blip2):
    image, prompt = Image.new("RGB", (60, 40), "red"), "Question: what is it? Answer:"
    settings = GenerationSettings(max_new_tokens=8)

    def answer():
        return blip2.generate(blip2.encode_image(image), prompt, settings)

    def look():
        return heatmap.attention_map(blip2, image, prompt)

    expected_answer, expected_grid = answer(), look()
    results, errors = {answer: [], look: []}, []

    def run(work):
        try:
            results[work] += [work() for _ in range(5)]
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(work,)) for work in (answer, look)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results[answer]) == len(results[look]) == 5
    assert set(results[answer]) == {expected_answer}
    assert all(torch.allclose(grid, expected_grid) for grid in results[look])


def test_custom_map_depends_on_the_question(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm(vit_grid=3)))
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


def test_cli_writes_the_heatmap(tiny_blip2_dir, tmp_path, install, capsys):
    install()  # the BLIP-2 the CLI loads goes with the test
    image, out = tmp_path / "photo.png", tmp_path / "heat.png"
    Image.new("RGB", (64, 48), (30, 160, 60)).save(image)
    argv = ["--backend", "blip2", "--model", str(tiny_blip2_dir), "--image", str(image)]
    argv += ["--question", "what?"]
    argv += ["--heatmap", str(out)]
    assert cli.main([*argv, "--max-new-tokens", "3"]) == 0
    assert Image.open(out).size == (64, 48)
    assert "where the model looked" in capsys.readouterr().err


def test_backends_without_a_map_say_so():
    from vqa_chat.backends.vllm import VLLMBackend

    with pytest.raises(ValueError, match="vllm backend cannot show where it looked"):
        heatmap.attention_map(VLLMBackend("http://127.0.0.1:9/v1", "m"), Image.new("RGB", (8, 8)), "Q")
