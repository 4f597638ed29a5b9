"""vqa_chat.engine.generation on its own: settings mapping, retries, stopping, errors, padding."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from vqa_chat.engine import generation
from vqa_chat.engine.types import GenerationSettings


@pytest.fixture(scope="module")
def lm_and_tokenizer(tiny_blip2_dir):
    """The tiny BLIP-2's causal LM and tokenizer: any HF causal LM works here."""
    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir).eval()
    return model.language_model, Blip2Processor.from_pretrained(tiny_blip2_dir).tokenizer


def embed(lm, tokenizer, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([tokenizer(text).input_ids])  # [1, T]
    with torch.no_grad():
        return lm.get_input_embeddings()(ids), torch.ones_like(ids)  # [1, T, D], [1, T]


def test_plain_is_exactly_greedy_with_max_new_tokens(lm_and_tokenizer):
    kwargs = generation.generate_kwargs(GenerationSettings(max_new_tokens=7, plain=True), lm_and_tokenizer[1])
    assert kwargs == {"max_new_tokens": 7, "do_sample": False, "num_beams": 1}


def test_defaults_add_anti_repetition_and_no_echo(lm_and_tokenizer):
    kwargs = generation.generate_kwargs(GenerationSettings(), lm_and_tokenizer[1], prompt_ids=[[1, 2, 3, 4]])
    names = [type(p).__name__ for p in kwargs["logits_processor"]]
    assert names == ["RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "NoEcho"]
    assert kwargs["do_sample"] is False
    sampling = GenerationSettings(do_sample=True, temperature=0.5)
    sampled = generation.generate_kwargs(sampling, lm_and_tokenizer[1])
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.5


def test_plain_stream_equals_lm_generate(lm_and_tokenizer):
    lm, tokenizer = lm_and_tokenizer
    embeds, mask = embed(lm, tokenizer, "Question: what color is the car? Answer:")
    out = lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=9)  # [1, 9]: new tokens only
    expected = tokenizer.decode(out[0], skip_special_tokens=True).strip()
    pieces = list(generation.stream_generate(lm, tokenizer, embeds, mask, GenerationSettings(9, plain=True)))
    assert out.shape[1] == 9 and expected
    assert "".join(pieces).strip() == expected


def test_no_echo_forbids_copying_prompt_ngrams():
    processor = generation.NoEcho([[5, 6, 7, 8, 9]], ngram=3)
    scores = torch.zeros(2, 12)  # 2 beams of the one source
    generated = torch.tensor([[1, 6, 7], [6, 7, 9]])  # row 0 ends with "6 7": 8 would copy "6 7 8"
    out = processor(generated, scores)
    assert out[0, 8] == -float("inf") and torch.isfinite(out[0, :8]).all()
    assert torch.isfinite(out[1]).all()  # "7 9" is not in the prompt


def always_eos(lm, tokenizer):
    """A copy of `lm` whose first choice is always EOS (an empty answer, as OPT sometimes gives)."""
    lm = copy.deepcopy(lm)
    head = torch.nn.Linear(lm.lm_head.in_features, lm.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(lm.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = 1e4
    lm.lm_head = head
    return lm


def test_empty_answer_is_retried_once_except_in_plain_mode(lm_and_tokenizer):
    lm, tokenizer = lm_and_tokenizer
    lm = always_eos(lm, tokenizer)
    embeds, mask = embed(lm, tokenizer, "Question: what is it? Answer:")
    plain = generation.stream_generate(lm, tokenizer, embeds, mask, GenerationSettings(8, plain=True))
    assert "".join(plain).strip() == ""
    retried = "".join(generation.stream_generate(lm, tokenizer, embeds, mask, GenerationSettings(8))).strip()
    n_retry = generation.RETRY_MIN_NEW_TOKENS
    assert retried and len(tokenizer(retried, add_special_tokens=False).input_ids) <= n_retry
    batch = generation.generate_batch(lm, tokenizer, embeds, mask, GenerationSettings(8))
    assert batch == [retried]


class FailingModel:
    def generate(self, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")


class HalfwayFailingModel:
    """Streams two tokens, then fails."""

    def generate(self, streamer=None, **kwargs):
        streamer.put(torch.tensor([[]], dtype=torch.long))  # the (empty) prompt
        streamer.put(torch.tensor([10]))
        streamer.put(torch.tensor([11]))
        raise RuntimeError("boom")


@pytest.mark.parametrize("model", [FailingModel(), HalfwayFailingModel()], ids=["at-once", "halfway"])
def test_worker_exception_reaches_the_consumer(lm_and_tokenizer, model):
    tokenizer = lm_and_tokenizer[1]
    embeds, mask = torch.zeros(1, 3, 32), torch.ones(1, 3, dtype=torch.long)
    result = []

    def consume():
        try:
            for _ in generation.stream_generate(model, tokenizer, embeds, mask, GenerationSettings(5)):
                pass
        except RuntimeError as e:
            result.append(str(e))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the consumer hung"
    assert result and result[0] in ("boom", "CUDA out of memory (simulated)")


def test_closing_the_stream_stops_the_worker(lm_and_tokenizer):
    lm, tokenizer = lm_and_tokenizer
    embeds, mask = embed(lm, tokenizer, "Question: what is it? Answer:")
    before = threading.active_count()
    stream = generation.stream_generate(lm, tokenizer, embeds, mask, GenerationSettings(200, plain=True))
    next(stream)
    stream.close()  # e.g. the browser went away: generation must not run on to 200 tokens
    assert threading.active_count() == before
