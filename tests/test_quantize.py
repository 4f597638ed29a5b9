"""int8 dynamic quantization of the LM's decode steps (CPU) and the weight bytes a decode step reads."""

from __future__ import annotations

from contextlib import closing

import pytest
import torch
from PIL import Image
from torch.ao.nn.quantized.dynamic import Linear as QLinear

from vqa_chat.backends.base import ModelLoadError, resolve_device
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.engine.quantize import is_int8, quantize_int8, weight_bytes_per_token
from vqa_chat.engine.types import BackendOptions, GenerationSettings


@pytest.fixture(scope="module")
def backends(tiny_blip2_dir):
    fp32 = Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))
    int8 = Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), quantize="int8"))
    with closing(fp32), closing(int8):
        yield fp32, int8


def test_int8_decodes_with_a_copy_whose_every_linear_is_int8(backends):
    fp32, int8 = backends
    lm, decoder = int8.model.language_model, int8.scheduler.decode_lm
    assert is_int8(decoder) and not is_int8(lm) and fp32.scheduler.decode_lm is fp32.model.language_model
    assert not any(type(m) is torch.nn.Linear for m in decoder.modules())
    assert any(type(m) is torch.nn.Linear for m in int8.model.qformer.modules())  # vision side untouched
    # the prompt is prefilled in fp32 by the LM; the copy shares its embedding table
    assert decoder.get_input_embeddings().weight is lm.get_input_embeddings().weight


def test_int8_needs_the_batched_engine():
    with pytest.raises(ModelLoadError, match="batched"):
        resolve_device(BackendOptions(device="cpu", quantize="int8", engine="generate"))


def test_int8_reads_about_a_quarter_of_the_linear_bytes(backends):
    fp32, int8 = backends
    full = weight_bytes_per_token(fp32.model.language_model)
    small = weight_bytes_per_token(int8.scheduler.decode_lm)
    assert 0.2 * full < small < 0.5 * full
    linear = torch.nn.Linear(64, 32)
    assert weight_bytes_per_token(linear) == (64 * 32 + 32) * 4
    assert weight_bytes_per_token(quantize_int8(torch.nn.Sequential(linear))) == 64 * 32 + 32 * 8 + 32 * 4


def test_int8_logits_stay_close_and_answers_stream(backends):
    fp32, int8 = backends
    image = Image.new("RGB", (40, 40), "red")
    prompt = "Question: what is in the picture? Answer:"
    with torch.no_grad():
        embeds, _ = fp32._prompt_embeds(fp32.encode_image(image), prompt)
        a = fp32.model.language_model(inputs_embeds=embeds[None]).logits[0, -1]
        b = int8.scheduler.decode_lm(inputs_embeds=embeds[None]).logits[0, -1]
    assert torch.cosine_similarity(a, b, dim=0) > 0.98
    answer = "".join(int8.stream(int8.encode_image(image), prompt, GenerationSettings(8, plain=True)))
    assert answer.strip()


def test_int8_is_cpu_only_and_named_in_errors():
    assert resolve_device(BackendOptions(device="cpu", quantize="int8")) == ("cpu", torch.float32)
    with pytest.raises(ModelLoadError, match="int8"):
        resolve_device(BackendOptions(device="cpu", quantize="8bit"))
    with pytest.raises(ModelLoadError, match="Unknown quantization"):
        resolve_device(BackendOptions(device="cpu", quantize="int4"))


def test_quantized_linear_type():
    q = quantize_int8(torch.nn.Sequential(torch.nn.Linear(8, 8)))
    assert isinstance(q[0], QLinear)
