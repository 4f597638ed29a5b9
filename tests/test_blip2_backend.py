"""The BLIP-2 backend on a tiny random BLIP-2: same answers as plain transformers, image encoded once."""

from __future__ import annotations

import threading
from contextlib import closing

import pytest
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from vqa_chat.backends.blip2 import Blip2Backend, ModelLoadError
from vqa_chat.engine import generation
from vqa_chat.engine.types import BackendOptions, GenerationSettings

PROMPT = "Question: what is in the picture? Answer:"
FOLLOW_UP = "Question: what is in the picture? Answer: a cat Question: what color is it? Answer:"


@pytest.fixture(scope="module")
def backend(tiny_blip2_dir) -> Blip2Backend:
    with closing(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))) as backend:
        yield backend


@pytest.fixture(scope="module")
def reference(tiny_blip2_dir):
    """The same checkpoint through plain transformers (processor + model.generate)."""
    processor = Blip2Processor.from_pretrained(tiny_blip2_dir)
    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir).eval()
    return model, processor


def reference_answer(reference, image: Image.Image, prompt: str, max_new_tokens: int) -> tuple[str, int]:
    """transformers' greedy answer (stripped) and how many tokens it generated."""
    model, processor = reference
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens)  # [1, T + new]
    new = out[0, inputs["input_ids"].shape[1] :]
    return processor.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)


def red() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 30, 30))


def blue() -> Image.Image:
    return Image.new("RGB", (40, 40), (10, 20, 220))


def test_loads_tiny_model(backend):
    assert backend.name == "blip2"
    assert backend.context_length == 256  # the OPT config's max_position_embeddings
    assert backend.encode_image(red()).shape == (1, backend.num_image_tokens, 32)  # [1, Q, D]
    assert backend.count_tokens(PROMPT) == len(backend.tokenizer(PROMPT).input_ids)


@pytest.mark.parametrize("prompt", [PROMPT, FOLLOW_UP])
def test_plain_answer_equals_transformers_generate(backend, reference, prompt):
    expected, n_new = reference_answer(reference, red(), prompt, max_new_tokens=10)
    assert n_new == 10 and expected  # a real, non-empty token sequence is compared
    pieces = list(backend.stream(backend.encode_image(red()), prompt, GenerationSettings(10, plain=True)))
    assert len(pieces) > 1  # it really streams
    assert "".join(pieces).strip() == expected


def test_answers_depend_on_the_image(backend):
    plain = GenerationSettings(10, plain=True)
    assert backend.generate(backend.encode_image(red()), PROMPT, plain) != backend.generate(
        backend.encode_image(blue()), PROMPT, plain
    )


@pytest.mark.parametrize(
    "settings",
    [GenerationSettings(12), GenerationSettings(12, plain=True), GenerationSettings(12, num_beams=2)],
    ids=["defaults", "plain", "beams"],
)
def test_streamed_answer_equals_non_streamed(backend, settings):
    image_embeds = backend.encode_image(red())
    streamed = "".join(backend.stream(image_embeds, FOLLOW_UP, settings)).strip()
    assert streamed
    assert streamed == backend.generate_batch([red()], [FOLLOW_UP], settings)[0]


def test_follow_up_turn_does_not_run_the_vision_side_again(backend):
    calls = []
    hooks = [
        backend.model.vision_model.register_forward_hook(lambda *_: calls.append("vision")),
        backend.model.qformer.register_forward_hook(lambda *_: calls.append("qformer")),
    ]
    try:
        image_embeds = backend.encode_image(red())
        first = backend.generate(image_embeds, PROMPT, GenerationSettings(8))
        backend.generate(image_embeds, f"{PROMPT} {first} Question: and now? Answer:", GenerationSettings(8))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == ["vision", "qformer"]  # once, for encode_image


def test_stop_halts_generation_and_keeps_partial_text(backend):
    image_embeds = backend.encode_image(red())
    full = backend.generate(image_embeds, PROMPT, GenerationSettings(60, plain=True))
    stop = threading.Event()
    pieces = []
    for piece in backend.stream(image_embeds, PROMPT, GenerationSettings(60, plain=True), stop=stop):
        pieces.append(piece)
        stop.set()  # the Stop button, pressed at the first piece
    partial = "".join(pieces).strip()
    assert partial and full.startswith(partial)
    assert backend.count_tokens(partial) < backend.count_tokens(full) // 2  # stopped early, not at 60 tokens


def test_generate_batch_equals_per_item(backend):
    images = [red(), blue(), red()]
    prompts = [PROMPT, FOLLOW_UP, "Question: how many dogs are there? Answer:"]  # different lengths: padding
    for settings in (GenerationSettings(10, plain=True), GenerationSettings(10)):
        batch = backend.generate_batch(images, prompts, settings)
        pairs = zip(images, prompts, strict=True)
        single = [backend.generate(backend.encode_image(im), p, settings) for im, p in pairs]
        assert all(batch) and batch == single


def test_concurrent_sessions_get_their_own_answers(backend):
    jobs = [(red(), PROMPT), (blue(), FOLLOW_UP)]
    expected = [backend.generate(backend.encode_image(im), p, GenerationSettings(10)) for im, p in jobs]
    results = [None, None]

    def ask(i):
        image, prompt = jobs[i]
        pieces = backend.stream(backend.encode_image(image), prompt, GenerationSettings(10))
        results[i] = "".join(pieces).strip()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == expected


def test_prompt_longer_than_the_context_is_refused(backend):
    with pytest.raises(ValueError, match="context"):
        list(backend.stream(backend.encode_image(red()), "word " * 300, GenerationSettings(10)))


def test_model_id_from_environment(tiny_blip2_dir, close_after, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_BLIP2_MODEL", str(tiny_blip2_dir))
    assert close_after(Blip2Backend.load(BackendOptions())).model_id == str(tiny_blip2_dir)


def test_missing_model_folder_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Blip2Backend.load(BackendOptions(model=str(tmp_path / "no-such-model")))


def test_folder_without_weights_gives_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="Could not load BLIP-2") as info:
        Blip2Backend.load(BackendOptions(model=str(tmp_path)))
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)


def test_quantization_needs_a_gpu(tiny_blip2_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="CUDA GPU"):
        Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), quantize="8bit"))


def test_on_gpu_is_a_no_op_without_spaces():
    def f():
        return 1

    assert generation.on_gpu(f) is f
