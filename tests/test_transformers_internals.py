"""The parts of transformers the project relies on beyond its documented API, each pinned on tiny models.

When a transformers upgrade changes one of them, its test fails with a message that names the project file
to update and what it relies on; nothing else in the suite needs reading to find it. The list:

- engine/kv.py: `DynamicCache(ddp_cache_data=...)`, `cache.layers` of `cache_utils.DynamicLayer` with
  `.keys` / `.values` [B, H, T, d], `get_seq_length()`; a causal LM's forward taking `cache=` and returning
  `.cache` (engine/prefill.py, engine/batching.py).
- engine/prefill.py, engine/batching.py: a 2D attention mask with zeros anywhere (left padding, and the
  padding between a row's cached and new positions) plus explicit position ids give every row the logits of
  its own unpadded forward.
- engine/generation.py: TextIteratorStreamer's `text_queue` and `stop_signal`; `generate` from
  `inputs_embeds` shows logits processors only the generated tokens (NoEcho); `output_logits` and
  `beam_indices` (the token log).
- engine/decode_kernels.py, engine/quantize.py: the LMs' projections are plain `nn.Linear` modules called as
  `module(x)`, so an instance `forward` replaces theirs.
- backends/blip2.py: `qformer_cross_attention` runs the Q-Former's layers by hand, as its forward does.
- model/language_model.py: a SmolLM2-like GGUF (llama, Q8_0 embeddings, Q4_1 matrices, byte-level BPE)
  loads with `gguf_file=`, carrying `hf_quantizer` and `config.quantization_config`, which the conversion
  drops before `save_pretrained`.
- backends/memory.py: `PreTrainedModel._get_dtype_plan`, `_keep_in_fp32_modules`,
  `core_model_loading.build_glob_alternation`, `quantizers.base.get_keys_to_not_convert`,
  `quantizers.quantizers_utils.should_convert_module`.
- bench/blip2_cpu.py, bench/measure.py: `models.blip.image_processing_pil_blip.BlipImageProcessorPil`,
  `generation.streamers.BaseStreamer`.
"""

from __future__ import annotations

import importlib
import inspect
from contextlib import contextmanager

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, Blip2ForConditionalGeneration, DynamicCache

from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.prefill import prefill


@contextmanager
def relied_on(where: str, what: str):
    """Any error inside becomes a failure that names the project file to update and what it relies on."""
    try:
        yield
    except Exception as e:
        detail = f"{type(e).__name__}: {e}".strip().splitlines()[0][:200]
        message = (f"transformers {transformers.__version__} changed what {where} relies on: {what}. Update "
                   f"{where} (and this test) to the new behaviour. ({detail})")  # fmt: skip
        raise pytest.fail.Exception(message, pytrace=False) from None  # the message alone, not the error


@pytest.fixture(scope="module")
def lms(tiny_vlm_parts, tiny_blip2_dir) -> dict:
    """The two kinds of causal LM the backends run: Llama (the custom model's) and OPT (BLIP-2's)."""
    llama = AutoModelForCausalLM.from_pretrained(tiny_vlm_parts["lm_source"]).eval()
    opt = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir).language_model.eval()
    return {"llama": llama, "opt": opt}


def embeds(lm, n: int, seed: int = 0) -> torch.Tensor:
    """Input embeddings [n, D] of random token ids (what a backend hands the engine)."""
    ids = torch.randint(4, lm.config.vocab_size, (n,), generator=torch.Generator().manual_seed(seed))
    return lm.get_input_embeddings()(ids).detach()


def test_dynamic_cache_wraps_our_tensors():
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)  # [B, H, T, d]
    what = ("DynamicCache(ddp_cache_data=[(keys, values), ...]), its .layers of cache_utils.DynamicLayer "
            "with .keys/.values, get_seq_length()")  # fmt: skip
    with relied_on("vqa_chat/engine/kv.py", what):
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(ddp_cache_data=[(k, v)])
        assert [type(layer) for layer in cache.layers] == [DynamicLayer]
        assert torch.equal(cache.layers[0].keys, k) and torch.equal(cache.layers[0].values, v)
        assert cache.get_seq_length() == 5 and DynamicCache().get_seq_length() == 0
        assert torch.equal(kvlib.from_cache(kvlib.to_cache([(k, v)]))[0][1], v)


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_a_forward_takes_and_returns_the_cache(lms, name):
    lm = lms[name]
    x = embeds(lm, 6)[None]  # [1, 6, D]
    what = (f"the {name} forward's `cache=` argument, its output's `.cache` (a DynamicCache of DynamicLayer, "
            "keys [B, H, T, d]) and `logits_to_keep`")  # fmt: skip
    with relied_on("vqa_chat/engine/prefill.py, vqa_chat/engine/batching.py and vqa_chat/engine/kv.py", what):
        assert "cache" in inspect.signature(type(lm).forward).parameters
        with torch.no_grad():
            out = lm(inputs_embeds=x, cache=kvlib.to_cache(None), use_cache=True, logits_to_keep=1)
        kv = kvlib.from_cache(out.cache)
        assert len(kv) == lm.config.num_hidden_layers and kv[0][0].shape[0] == 1 and kv[0][0].shape[2] == 6
        assert out.logits.shape == (1, 1, lm.config.vocab_size)


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_padded_rows_see_only_their_own_positions(lms, name):
    """Two rows prefilled together, one with a cached prefix (padding before it and before its new
    positions), each gives the logits of its own forward alone."""
    lm = lms[name]
    a, b = embeds(lm, 9, seed=1), embeds(lm, 4, seed=2)  # [T, D]
    with torch.no_grad():
        alone = [lm(inputs_embeds=e[None]).logits[0, -1] for e in (a, b)]  # [V] each
        out = lm(inputs_embeds=a[None, :5], use_cache=True, cache=kvlib.to_cache(None))
    prefix = kvlib.from_cache(out.cache)  # `a`'s first 5 positions, as a session's PrefixCache keeps them
    what = (f"the {name} forward with a 2D attention mask that has zeros between a row's positions (left "
            "padding, cached prefix, padding, new positions), explicit position ids and a DynamicCache of "
            "left-padded rows: each row attends only to its own positions")  # fmt: skip
    with relied_on("vqa_chat/engine/prefill.py and vqa_chat/engine/batching.py", what):
        with torch.no_grad():
            _, logits = prefill(lm, [a, b], [(prefix, 5), (None, 0)])  # [2, V]
        for row, expected in zip(logits, alone):
            assert torch.allclose(row, expected, atol=1e-4), float((row - expected).abs().max())


def test_the_streamer_can_be_ended_from_outside():
    from transformers import TextIteratorStreamer

    what = ("TextIteratorStreamer's `text_queue` and `stop_signal`: putting the stop signal on the queue "
            "ends the reader's loop")  # fmt: skip
    with relied_on("vqa_chat/engine/generation.py (_stream_once)", what):
        streamer = TextIteratorStreamer(tokenizer=None)
        streamer.text_queue.put("partial ")
        streamer.text_queue.put(streamer.stop_signal)
        assert list(streamer) == ["partial "]


def test_generate_from_embeddings_shows_processors_only_new_tokens_and_logs_logits(lms):
    lm = lms["llama"]
    x = embeds(lm, 5)[None]
    seen = []

    class Record(transformers.LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append(input_ids.shape[1])
            return scores

    mask = torch.ones(1, 5, dtype=torch.long)
    what = ("generate(inputs_embeds=...) hands logits processors the generated tokens only, and with "
            "output_logits and return_dict_in_generate returns .sequences and one .logits [B, V] per new "
            "token; beam search also .beam_indices")  # fmt: skip
    with relied_on("vqa_chat/engine/generation.py (NoEcho, record)", what):
        kwargs = dict(inputs_embeds=x, attention_mask=mask, max_new_tokens=3, min_new_tokens=3,
                      do_sample=False, pad_token_id=0, output_logits=True,
                      return_dict_in_generate=True)  # fmt: skip
        out = lm.generate(**kwargs, logits_processor=[Record()])
        assert seen == [0, 1, 2]  # nothing of the prompt (it was given as embeddings)
        assert len(out.logits) == 3 and out.logits[0].shape == (1, lm.config.vocab_size)
        assert out.sequences.shape[1] >= 3
        beams = lm.generate(**kwargs, num_beams=2)
        assert beams.beam_indices.shape[0] == 1 and len(beams.logits) == 3


@pytest.mark.parametrize("name", ["llama", "opt"])
def test_projections_are_plain_linears_called_through_forward(lms, name):
    lm = lms[name]
    linears = [m for m in lm.modules() if isinstance(m, torch.nn.Linear)]
    calls = []
    what = (f"the {name} LM's projections are exactly torch.nn.Linear (not a subclass or a fused module) and "
            "each is called as module(x), so an instance `forward` replaces its own")  # fmt: skip
    with relied_on("vqa_chat/engine/decode_kernels.py and vqa_chat/engine/quantize.py", what):
        assert linears and all(type(m) is torch.nn.Linear for m in linears)
        for i, m in enumerate(linears):
            m.forward = lambda x, m=m, i=i: calls.append(i) or torch.nn.functional.linear(x, m.weight, m.bias)
        try:
            with torch.no_grad():
                lm(inputs_embeds=embeds(lm, 3)[None])
        finally:
            for m in linears:
                del m.forward
        assert set(calls) == set(range(len(linears)))


def test_the_qformer_runs_layer_by_layer_as_its_forward_does(tiny_blip2_dir):
    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir).eval()
    qformer, queries = model.qformer, model.query_tokens
    patches = torch.randn(2, 10, model.config.vision_config.hidden_size)
    what = ("the Q-Former's layernorm, encoder.layer[i] with has_cross_attention, attention(hidden) -> "
            "Tensor, crossattention.attention.{query, key, num_attention_heads, attention_head_size, "
            "scaling}, and layer(hidden, encoder_hidden_states=, query_length=) -> Tensor, run in that order "
            "as Blip2QFormerModel.forward does")  # fmt: skip
    with relied_on("vqa_chat/backends/blip2.py (qformer_cross_attention)", what):
        with torch.no_grad():
            expected = qformer(query_embeds=queries.expand(2, -1, -1), encoder_hidden_states=patches)
            hidden = qformer.layernorm(queries.expand(2, -1, -1))
            for layer in qformer.encoder.layer:
                if layer.has_cross_attention:
                    cross = layer.crossattention.attention
                    assert isinstance(layer.attention(hidden), torch.Tensor)
                    assert cross.num_attention_heads * cross.attention_head_size == cross.query.out_features
                    assert cross.key.in_features == patches.shape[-1] and cross.scaling > 0
                hidden = layer(hidden, encoder_hidden_states=patches, query_length=hidden.shape[1])
        assert torch.allclose(hidden, expected.last_hidden_state, atol=1e-5)


def test_a_smollm2_like_gguf_loads_and_converts(tiny_gguf, tmp_path, monkeypatch):
    from vqa_chat.model import language_model

    folder, file = str(tiny_gguf.parent), tiny_gguf.name
    what = ("from_pretrained(gguf_file=) of a llama GGUF with Q8_0 and Q4_1 tensors and a byte-level BPE "
            "tokenizer, the loaded model's `hf_quantizer` and `config.quantization_config` (dropped before "
            "save_pretrained)")  # fmt: skip
    with relied_on("vqa_chat/model/language_model.py (converted_smollm2)", what):
        gguf_lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file).eval()
        assert gguf_lm.hf_quantizer is not None and hasattr(gguf_lm.config, "quantization_config")
        monkeypatch.setattr(language_model, "gguf_path", lambda: str(tiny_gguf))
        monkeypatch.setattr(language_model, "GGUF_FILE", file)
        monkeypatch.setenv("VQA_CHAT_CACHE", str(tmp_path / "cache"))
        lm, tokenizer, checksum = language_model.load_language_model(language_model.SMOLLM2_GGUF)
        assert len(checksum) == 64 and tokenizer("the cat").input_ids
        ids = torch.tensor([tokenizer("the cat is here").input_ids])
        with torch.no_grad():
            assert torch.allclose(lm(input_ids=ids).logits, gguf_lm(input_ids=ids).logits, atol=1e-5)


def test_what_the_memory_check_counts_with(tiny_blip2_dir):
    config = transformers.AutoConfig.from_pretrained(tiny_blip2_dir)
    what = ("PreTrainedModel._get_dtype_plan(dtype) -> {pattern: dtype}, _keep_in_fp32_modules, "
            "core_model_loading.build_glob_alternation, quantizers.base.get_keys_to_not_convert, "
            "quantizers.quantizers_utils.should_convert_module")  # fmt: skip
    with relied_on("vqa_chat/backends/memory.py (estimate)", what):
        from transformers.core_model_loading import build_glob_alternation
        from transformers.quantizers.base import get_keys_to_not_convert
        from transformers.quantizers.quantizers_utils import should_convert_module

        with torch.device("meta"):
            model = Blip2ForConditionalGeneration(config)
        plan = model._get_dtype_plan(torch.float16)  # BLIP-2 keeps its Q-Former in fp32
        assert plan and build_glob_alternation(list(plan))[0].search("qformer.layernorm.weight")
        skip = get_keys_to_not_convert(model) + list(model._keep_in_fp32_modules or ())
        assert isinstance(should_convert_module("language_model.model.decoder.layers.0.fc1", skip), bool)


@pytest.mark.parametrize("where, module, name", [
    ("vqa_chat/bench/blip2_cpu.py", "transformers.models.blip.image_processing_pil_blip",
     "BlipImageProcessorPil"),
    ("vqa_chat/bench/measure.py", "transformers.generation.streamers", "BaseStreamer"),
])  # fmt: skip
def test_names_imported_from_inner_modules(where, module, name):
    with relied_on(where, f"`from {module} import {name}`"):
        assert hasattr(importlib.import_module(module), name)
