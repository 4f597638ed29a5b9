"""BLIP-2 (Hugging Face transformers) behind the backend interface.

The image goes through vision encoder -> Q-Former -> language projection once (`encode_image`), giving
`num_query_tokens` image tokens [1, Q, D]. Every prompt is then answered by the OPT / causal language model
from `[image tokens][BOS + prompt tokens]`: exactly what `Blip2Processor` + `Blip2ForConditionalGeneration.
generate` build (the processor puts Q `<image>` placeholders before BOS and the model swaps in the image
tokens), without re-running the vision side on follow-up turns.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from transformers import BitsAndBytesConfig, Blip2ForConditionalGeneration, Blip2Processor

from vqa_chat import settings
from vqa_chat.backends import memory
from vqa_chat.backends.base import (
    Backend,
    Capabilities,
    ModelLoadError,
    resolve_device,
    teacher_forced_logprobs,
)
from vqa_chat.engine import build as engine_build
from vqa_chat.engine import generation
from vqa_chat.engine.kv import PrefixCache
from vqa_chat.engine.padding import left_pad
from vqa_chat.engine.types import BackendOptions, GenerationSettings, Inputs, TokenLog

DEFAULT_MODEL = "Salesforce/blip2-opt-2.7b"
MODEL_ENV = "VQA_CHAT_BLIP2_MODEL"
# the default's published config, for the memory check when the hub is not reachable
KNOWN_CONFIGS = {DEFAULT_MODEL: Path(__file__).resolve().parents[2] / "configs" / "blip2-opt-2.7b.json"}


def _check_source(model_id: str) -> None:
    """An id that can only be a local folder (hub ids are `org/name`) must exist: fail fast, no hub call."""
    looks_local = model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if looks_local and not Path(model_id).expanduser().exists():
        raise ModelLoadError(f"Could not load BLIP-2: the model folder {model_id!r} does not exist.")


class Blip2Backend(Backend[torch.Tensor, PrefixCache]):
    """One loaded BLIP-2, shared by all sessions (inference only reads weights: concurrent calls are safe).
    Encodings are its image tokens [1, Q, D]."""

    name = "blip2"
    # the Q-Former's cross-attention shows where it looked (the same map for every prompt: the default
    # heatmap prompt "" is as good as any); it answers short questions best: describe mode asks several
    capabilities = Capabilities(heatmap=True, composes_descriptions=True)

    def __init__(
        self,
        model: Blip2ForConditionalGeneration,
        processor: Blip2Processor,
        model_id: str = "",
        options: BackendOptions | None = None,
    ):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.num_image_tokens = model.config.num_query_tokens
        text_config = model.config.text_config  # OPT: 2048 positions
        self.context_length = getattr(text_config, "max_position_embeddings", None) or self.context_length
        options = options or BackendOptions()
        # the batched engine; None = one transformers `generate` per answer
        self.scheduler = engine_build.engine(model.language_model, self.tokenizer, options)

    def new_state(self) -> PrefixCache | None:
        """The image tokens come first and do not depend on the prompt, so a follow-up turn reuses the KV
        of `[image tokens][BOS Question: q1 Answer: a1 ...]` and runs only its new tokens."""
        return PrefixCache() if self.scheduler is not None else None

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()

    @classmethod
    def load(cls, options: BackendOptions) -> Blip2Backend:
        """Load from a hub id or local folder: `options.model`, else $VQA_CHAT_BLIP2_MODEL, else the default.

        Raises ModelLoadError with a readable message when the weights are not reachable (e.g. offline), or
        (memory.NotEnoughMemory) before loading anything when they would not fit in the free memory.
        """
        model_id = settings.user_path(options.model or settings.read().blip2_model) or DEFAULT_MODEL
        device, dtype = resolve_device(options)
        _check_source(model_id)
        # refuse a model that would not fit before any weight is allocated (the OOM killer ends every chat)
        memory.check_load("BLIP-2", Blip2ForConditionalGeneration, model_id, device, dtype, options.quantize,
                          KNOWN_CONFIGS)  # fmt: skip
        kwargs = {"dtype": dtype}
        if device.startswith("cuda"):  # accelerate places the weights
            kwargs["device_map"] = "auto" if device == "cuda" else {"": device}
        kwargs.update(engine_build.load_kwargs(options))
        if options.quantize == "8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        elif options.quantize == "4bit":
            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
            kwargs["quantization_config"] = quant
        try:
            processor = Blip2Processor.from_pretrained(model_id)
            model = Blip2ForConditionalGeneration.from_pretrained(model_id, **kwargs)
        except Exception as e:
            raise ModelLoadError(_load_error_message(model_id, e)) from e
        if "device_map" not in kwargs:
            model = model.to(device)
        engine_build.apply(model.language_model, options)
        return cls(model, processor, model_id, options)

    # ---- the vision side, once per image ----

    @torch.no_grad()
    def vision_patches(self, images: list[Image.Image]) -> torch.Tensor:
        """The vision encoder's output [B, 1 + N, Dv] for RGB images: CLS, then the patch grid."""
        weight = self.model.vision_model.embeddings.patch_embedding.weight
        pixels = self.processor.image_processor(images=images, return_tensors="pt").pixel_values
        pixels = pixels.to(weight.device, weight.dtype)  # [B, 3, H, W]
        return self.model.vision_model(pixel_values=pixels, return_dict=True).last_hidden_state

    @generation.on_gpu
    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Image tokens [B, Q, D] for a list of RGB images (vision encoder + Q-Former + projection)."""
        m = self.model
        patches = self.vision_patches(images)  # [B, N, Dv]
        patch_mask = torch.ones(patches.shape[:-1], dtype=torch.long, device=patches.device)  # [B, N]
        queries = m.query_tokens.expand(patches.shape[0], -1, -1)  # [B, Q, Dq]
        query_out = m.qformer(
            query_embeds=queries, encoder_hidden_states=patches, encoder_attention_mask=patch_mask
        ).last_hidden_state  # [B, Q, Dq]
        query_out = query_out.to(patches.dtype)  # the Q-Former may be kept in fp32
        return m.language_projection(query_out)  # [B, Q, D]

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        return self.encode_images([image])  # [1, Q, D]

    @generation.on_gpu
    @torch.no_grad()
    def attention_map(self, image: Image.Image, prompt: str, image_embeds=None) -> torch.Tensor:
        """The Q-Former's cross-attention over the vision patches, averaged over layers, heads and queries,
        without the CLS position: [grid, grid] weights summing to 1. The Q-Former does not read the
        question, so the map is the same for every `prompt`; the projected `image_embeds` can't give it, so
        the vision encoder runs again."""
        patches = self.vision_patches([image])  # [1, 1 + N, Dv]
        maps = qformer_cross_attention(self.model.qformer, self.model.query_tokens, patches)
        attention = torch.stack([a.float().mean(dim=(1, 2)) for a in maps]).mean(0)[0]  # [1 + N]
        attention = attention[1:]  # drop the CLS position: the rest is the patch grid
        grid = math.isqrt(attention.numel())
        attention = attention[-grid * grid :]
        return (attention / attention.sum()).reshape(grid, grid).cpu()

    # ---- the language side, every turn ----

    def count_tokens(self, text: str) -> int:
        """Prompt tokens of `text`, BOS included (the image tokens come on top)."""
        return len(self.tokenizer(text).input_ids)

    def _prompt_embeds(self, image_embeds: torch.Tensor, prompt: str) -> tuple[torch.Tensor, list[int]]:
        """[image tokens][BOS + prompt] embeddings [Q + P, D] and the prompt's token ids (P of them)."""
        embed = self.model.get_input_embeddings()
        ids = self.tokenizer(prompt).input_ids  # BOS first, like the processor
        text = embed(torch.tensor(ids, device=embed.weight.device))  # [P, D]
        image = image_embeds.reshape(-1, text.shape[-1]).to(text.device, text.dtype)  # [1, Q, D] -> [Q, D]
        return torch.cat([image, text], dim=0), ids  # [Q + P, D]

    def token_logprobs(self, image_embeds: torch.Tensor, prompt: str, answer_ids: list[int]) -> list[float]:
        """Log-probability of each answer token after `[image tokens][BOS + prompt]` (teacher-forced)."""
        with torch.no_grad():
            embeds, _ = self._prompt_embeds(image_embeds, prompt)  # [T, D]
        return teacher_forced_logprobs(self.model.language_model, embeds[None], answer_ids)

    def answer_logprobs(self, image_embeds: torch.Tensor, prompt: str, answer: str) -> list[float] | None:
        ids = self.tokenizer(" " + answer.strip(), add_special_tokens=False).input_ids  # as after `Answer:`
        return self.token_logprobs(image_embeds, prompt, ids) if ids else None

    def _fit(self, length: int, settings: GenerationSettings) -> None:
        if length + settings.max_new_tokens > self.context_length:
            raise ValueError(
                f"The prompt ({length} tokens with the image) plus {settings.max_new_tokens} new tokens does "
                f"not fit in the model's context of {self.context_length} tokens."
            )

    def stream(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state: PrefixCache | None = None,
        log: TokenLog | None = None,
    ) -> Iterator[str]:
        with torch.no_grad():
            embeds, ids = self._prompt_embeds(image_embeds, prompt)  # [T, D]
        self._fit(embeds.shape[0], settings)
        lm, inputs = self.model.language_model, Inputs.ready(embeds, ids)
        yield from generation.stream_answer(
            self.scheduler, lm, self.tokenizer, inputs, settings, stop, state, log
        )

    def encode_batch(self, images: list[Image.Image]) -> list[torch.Tensor]:
        return list(self.encode_images(images).split(1))  # [B, Q, D] -> B x [1, Q, D]

    def generate_encoded(
        self, encodings: list[torch.Tensor], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        """Answers for (image tokens [1, Q, D], prompt) pairs in one left-padded `generate`."""
        with torch.no_grad():
            pairs = [self._prompt_embeds(e, p) for e, p in zip(encodings, prompts, strict=True)]
        for embeds, _ in pairs:
            self._fit(embeds.shape[0], settings)
        embeds, mask = left_pad([e for e, _ in pairs])  # [B, T, D], [B, T]
        return generation.generate_batch(
            self.model.language_model, self.tokenizer, embeds, mask, settings, [ids for _, ids in pairs]
        )


@torch.no_grad()
def qformer_cross_attention(qformer, query_tokens: torch.Tensor, patches: torch.Tensor) -> list[torch.Tensor]:
    """The Q-Former's cross-attention weights over `patches` [B, N, Dv], one [B, heads, Q, N] per
    cross-attention layer, computed here from the layers' own query/key projections.

    The model's attention kernel (SDPA) returns no weights, and switching the shared model to "eager" would
    switch it for every session answering at the same time: this reads the weights without changing it."""
    norm = qformer.layernorm.weight  # the Q-Former may be kept in fp32
    patches = patches.to(norm.device, norm.dtype)
    hidden = qformer.layernorm(query_tokens.expand(patches.shape[0], -1, -1).to(norm.device, norm.dtype))
    maps = []
    for layer in qformer.encoder.layer:  # each layer as Blip2QFormerModel runs it (dropout is off in eval)
        if layer.has_cross_attention:
            cross = layer.crossattention.attention
            queries = layer.attention(hidden)  # the self-attention sub-layer's output: what cross-attends
            heads = (hidden.shape[0], -1, cross.num_attention_heads, cross.attention_head_size)
            q = cross.query(queries).view(heads).transpose(1, 2)  # [B, H, Q, d]
            k = cross.key(patches).view(heads).transpose(1, 2)  # [B, H, N, d]
            maps.append((q @ k.transpose(-1, -2) * cross.scaling).softmax(-1))  # [B, H, Q, N]
        hidden = layer(hidden, encoder_hidden_states=patches, query_length=hidden.shape[1])
    if not maps:
        raise RuntimeError("this BLIP-2's Q-Former has no cross-attention layers")
    return maps


def _load_error_message(model_id: str, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return f"Could not load BLIP-2 {model_id!r}: not enough memory (try 8bit on a GPU). ({detail})"
    return (
        f"Could not load BLIP-2 {model_id!r}: it is not a local model folder and the Hugging Face hub is not "
        f"reachable (offline?). Download it once with network access, or set {MODEL_ENV} to a local model "
        f"folder. ({detail})"
    )
