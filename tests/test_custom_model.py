"""The custom VLM on tiny random parts: shapes, masked loss, learning, save/load, the backend's invariants."""

from __future__ import annotations

import json
import threading

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vqa_chat.backends.custom import CustomBackend
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.model.vision_language_model import VisionLanguageModel
from vqa_chat.train.loop import tokenize

PLAIN = GenerationSettings(max_new_tokens=6, plain=True)


def images(n=2):
    return [Image.new("RGB", (40, 40), c) for c in ["red", "blue", "green", "yellow"][:n]]


# qformer: 4 queries + the question x image product token (mp_product); early fusion: one token per patch
@pytest.mark.parametrize("kind, n_tokens", [("qformer", 5), ("linear", 9), ("mlp", 9)])
def test_connector_output_shapes(tiny_vlm, kind, n_tokens):
    model = tiny_vlm(mp_type=kind)
    patches = model.vision.encode(images())
    assert patches.shape == (2, 9, 32)  # 30 px / patch 10 = 3x3 patches, width 32
    ids, mask = tokenize(
        model.tokenizer, ["Question: what color? Answer:", "Question: hi Answer:"], None, "cpu"
    )
    tokens, attention = model.image_tokens(patches, ids, mask, return_attention=True)
    assert tokens.shape == (2, n_tokens, 32)
    if kind == "qformer":
        assert attention.shape == (2, 9)
        assert torch.allclose(attention.sum(-1), torch.ones(2), atol=1e-5)
    else:
        assert attention is None


def test_question_product_and_positions_are_optional(tiny_vlm):
    model = tiny_vlm()
    names = {n for n, _ in model.connector.named_parameters()}
    assert {"text_pos", "image_gate.1.weight", "text_gate.1.weight"} <= names
    old = tiny_vlm(mp_text_pos=False, mp_product=False)  # configs from before these fields
    old_names = {n for n, _ in old.connector.named_parameters()}
    assert not any(n.startswith(("text_pos", "image_gate", "text_gate", "text_pool")) for n in old_names)
    patches = model.vision.encode(images(1))
    prompts = ["Question: is there a red shape? Answer:", "Question: is there a blue shape? Answer:"]
    ids, mask = tokenize(model.tokenizer, prompts, None, "cpu")
    tokens, _ = model.image_tokens(patches.expand(2, -1, -1), ids, mask)
    assert not torch.allclose(tokens[0], tokens[1])  # the question reaches the image tokens


@pytest.mark.parametrize("image_last", [False, True])
def test_loss_is_only_on_answer_tokens(tiny_vlm, image_last):
    model = tiny_vlm(lm_image_last=image_last)
    patches = model.vision.encode(images())
    prompts, answers = (
        ["Question: what color is it? Answer:", "Question: and? Answer:"],
        ["red", "a blue sky"],
    )
    inputs = tokenize(model.tokenizer, prompts, answers, "cpu")
    loss = model(patches, *inputs)
    # Reference: full logits over every position, cross-entropy on the answer tokens (+ EOS) alone.
    p_ids, p_mask, t_ids, t_mask = inputs
    image, _ = model.image_tokens(patches, p_ids, p_mask)
    losses = []
    for b in range(2):
        prompt, target = p_ids[b][p_mask[b].bool()], t_ids[b][t_mask[b].bool()]
        ids = torch.cat([prompt, target])
        if image_last:  # [prompt][image tokens][answer]
            embeds = torch.cat([model.embed(prompt), image[b], model.embed(target)])[None]
        else:  # [image tokens][prompt][answer]
            embeds = torch.cat([image[b], model.embed(ids)])[None]
        logits = model.lm(inputs_embeds=embeds).logits[0]
        n = int(t_mask[b].sum())
        losses.append(F.cross_entropy(logits[-n - 1 : -1], ids[-n:], reduction="sum"))
    reference = sum(losses) / t_mask.sum()
    assert torch.allclose(loss, reference, atol=1e-5)


def test_a_few_steps_lower_the_loss(tiny_vlm):
    model = tiny_vlm()
    patches = model.vision.encode(images(4))
    prompts = [f"Question: what color is shape {i}? Answer:" for i in range(4)]
    inputs = tokenize(model.tokenizer, prompts, ["red", "blue", "green", "yellow"], "cpu")
    optimizer = torch.optim.AdamW(model.connector.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model(patches, *inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.6 * first


def test_only_the_connector_is_trained(tiny_vlm):
    model = tiny_vlm()
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("connector.") for n in trained)
    buffers = {f"connector.{n}" for n, _ in model.connector.named_buffers()}  # batch-norm statistics
    assert set(model.trainable_state_dict()) == trained | buffers


def test_save_then_load_gives_identical_outputs(tiny_vlm, tiny_vlm_parts, tmp_path):
    model = tiny_vlm()
    torch.nn.init.normal_(model.connector.queries, std=1.0)  # not the initial values
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["lm_source"] == tiny_vlm_parts["lm_source"] and config["vit_dim"] == 32
    loaded = VisionLanguageModel.from_pretrained(str(tmp_path))
    patches = model.vision.encode(images())
    assert torch.equal(loaded.vision.encode(images()), patches)
    prompts = ["Question: what is it? Answer:"] * 2
    assert model.generate(patches, prompts, 5) == loaded.generate(patches, prompts, 5)
    ids, mask = tokenize(model.tokenizer, prompts, None, "cpu")
    assert torch.equal(model.image_tokens(patches, ids, mask)[0], loaded.image_tokens(patches, ids, mask)[0])


@pytest.mark.parametrize("image_last", [False, True])
def test_backend_stream_equals_generate_and_batch(tiny_vlm, image_last, close_after):
    backend = close_after(CustomBackend(tiny_vlm(lm_image_last=image_last)))
    image = images(1)[0]
    patches = backend.encode_image(image)
    prompt = "Question: what color is the car? Answer:"
    embeds, _, ids = backend.inputs(patches, [prompt])
    assert embeds.shape[1] == backend.num_image_tokens + len(ids[0])  # 4 queries + the product token
    for settings in (PLAIN, GenerationSettings(max_new_tokens=6)):
        streamed = "".join(backend.stream(patches, prompt, settings)).strip()
        assert streamed == backend.generate(patches, prompt, settings)
        assert streamed == backend.generate_batch([image], [prompt], settings)[0]
    # plain == the model's own greedy generate (transformers, no adjustments)
    assert backend.generate(patches, prompt, PLAIN) == backend.model.generate(patches, [prompt], 6)[0]


def test_backend_batch_equals_one_by_one(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm()))
    ims = images(3)
    prompts = [
        "Question: what? Answer:",
        "Question: what color is the car here? Answer:",
        "Question: a b c Answer:",
    ]
    batch = backend.generate_batch(ims, prompts, PLAIN)
    assert batch == [backend.generate(backend.encode_image(i), p, PLAIN) for i, p in zip(ims, prompts)]


def test_follow_up_turn_does_not_run_the_vision_encoder(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm()))
    calls = []
    backend.model.vision.net.register_forward_hook(lambda *a: calls.append(1))
    patches = backend.encode_image(images(1)[0])
    backend.generate(patches, "Question: what? Answer:", PLAIN)
    backend.generate(patches, "Question: what? Answer: red Question: sure? Answer:", PLAIN)
    assert len(calls) == 1


def test_stop_event_halts_streaming(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm()))
    patches = backend.encode_image(images(1)[0])
    stop = threading.Event()
    pieces = []
    for piece in backend.stream(
        patches, "Question: go on Answer:", GenerationSettings(max_new_tokens=200), stop
    ):
        pieces.append(piece)
        stop.set()
    full = backend.generate(patches, "Question: go on Answer:", GenerationSettings(max_new_tokens=200))
    assert len("".join(pieces)) < len(full)


def test_attention_map_covers_the_patch_grid(tiny_vlm, close_after):
    backend = close_after(CustomBackend(tiny_vlm(vit_grid=3)))
    image = images(1)[0]
    heat = backend.attention_map(image, "Question: where? Answer:", backend.encode_image(image))
    assert heat.shape == (3, 3) and abs(float(heat.sum()) - 1) < 1e-5
