"""Our own Q-Former VLM (vqa_chat.model) behind the backend interface.

The frozen image encoder runs once per image (`encode_image` returns its patch tokens [1, N, C]); every
turn then runs the small connector on those patches (with the question, when the Q-Former reads it) and
streams the frozen LM's answer after `[image tokens][prompt tokens]` (or `[prompt tokens][image tokens]`).
Default model: the bundled one in assets/custom-model, which runs offline on a CPU.

Prefix KV reuse across turns, honestly: the Q-Former reads the prompt's last 32 tokens, so the image tokens
change whenever the prompt does. With `image_tokens="question"` (the default, the way the model was
trained) they are recomputed for every question. Where they sit decides what a follow-up can reuse: placed
first (`lm_image_last=False`), every LM position after them changes, so a follow-up reuses nothing of the
KV cache (a repeated prompt, e.g. Regenerate, reuses everything); placed right before the answer
(`lm_image_last=True`, the bundled model), a follow-up reuses the whole conversation up to the previous
question and runs only the last answer, the new question and the image tokens. With `image_tokens="first"`
the image tokens are computed once per image, from the first question about it, and pinned for the
follow-ups, like BLIP-2's prompt-independent image tokens; that is a different model input for follow-ups
(their own question no longer steers the Q-Former), so the benchmark measures its accuracy cost. Connectors
that ignore the prompt (`linear`, `mlp`, `mp_question=False`) get full reuse in either mode.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from transformers import BitsAndBytesConfig

from vqa_chat.backends.base import Backend, BackendOptions, GenerationSettings, ModelLoadError, resolve_device
from vqa_chat.engine import generation
from vqa_chat.engine import options as engine_options
from vqa_chat.engine.kv import PrefixCache
from vqa_chat.model.vision_language_model import VisionLanguageModel

DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "assets" / "custom-model")
MODEL_ENV = "VQA_CHAT_CUSTOM_MODEL"


class CustomBackend(Backend):
    name = "custom"

    def __init__(self, model: VisionLanguageModel, model_id: str = "", options: BackendOptions | None = None):
        self.model = model.eval()
        self.tokenizer = model.tokenizer
        self.model_id = model_id
        cfg = model.cfg
        self.num_image_tokens = cfg.num_image_tokens
        self.context_length = getattr(model.lm.config, "max_position_embeddings", None) or self.context_length
        options = options or BackendOptions()
        if options.image_tokens not in ("question", "first"):
            raise ModelLoadError(f"Unknown image_tokens {options.image_tokens!r}; choose question or first.")
        self.pin_image_tokens = options.image_tokens == "first"
        # the batched engine; None = one transformers `generate` per answer
        self.scheduler = engine_options.engine(model.lm, self.tokenizer, options)

    def new_state(self) -> PrefixCache | None:
        return PrefixCache() if self.scheduler is not None else None

    @classmethod
    def load(cls, options: BackendOptions) -> CustomBackend:
        model_id = options.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
        device, dtype = resolve_device(options)
        if not os.path.isdir(model_id) and model_id.startswith((".", "/", "~")):
            raise ModelLoadError(f"Could not load the custom model: the folder {model_id!r} does not exist.")
        kwargs = engine_options.load_kwargs(options)
        if options.quantize in ("8bit", "4bit"):
            bits = {"load_in_8bit": True} if options.quantize == "8bit" else {"load_in_4bit": True}
            kwargs.update(quantization_config=BitsAndBytesConfig(**bits), device_map={"": device})
        try:
            model = VisionLanguageModel.from_pretrained(model_id, device, dtype, **kwargs)
        except Exception as e:
            raise ModelLoadError(f"Could not load the custom model {model_id!r}: {e}") from e
        engine_options.apply(model.lm, options)
        return cls(model, model_id, options)

    @torch.no_grad()
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        return self.model.vision.encode([image])  # [1, N, C] patch tokens, reused on every turn

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    @torch.no_grad()
    def inputs(self, patches: torch.Tensor, prompts: list[str]):
        """LM inputs for B images and prompts: embeds [B, T, D], mask [B, T], prompt ids per row."""
        self.tokenizer.padding_side = "left"
        text = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        image, _ = self.model.image_tokens(patches.to(self.model.device), text.input_ids, text.attention_mask)
        embeds, mask = self.model.lm_inputs(image, text.input_ids, text.attention_mask)
        ids = [row[m.bool()].tolist() for row, m in zip(text.input_ids, text.attention_mask, strict=True)]
        return embeds, mask, ids

    def stream(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state: PrefixCache | None = None,
    ) -> Iterator[str]:
        if self.pin_image_tokens:
            embeds, mask, ids = self.pinned_inputs(image_embeds, prompt, state)
        else:
            embeds, mask, ids = self.inputs(image_embeds, [prompt])
        if self.scheduler is not None and settings.num_beams == 1:
            yield from self.scheduler.submit(embeds, settings, stop, state, prompt_ids=ids[0])
            return
        yield from generation.stream_generate(
            self.model.lm, self.tokenizer, embeds, mask, settings, stop, ids[0]
        )

    @torch.no_grad()
    def pinned_inputs(self, patches: torch.Tensor, prompt: str, state: PrefixCache | None):
        """Like `inputs` for one prompt, but with the image tokens of the first prompt about this image
        (kept in `state`), so that consecutive turns share their LM input up to the new text."""
        extra = state.extra if state is not None else {}
        if extra.get("patches") is not patches:  # a new image (or no state): compute and pin
            text = self.tokenizer([prompt], return_tensors="pt").to(self.model.device)
            patches_on = patches.to(self.model.device)
            image, _ = self.model.image_tokens(patches_on, text.input_ids, text.attention_mask)
            extra.update(patches=patches, image=image)  # image tokens [1, Q, D]
        ids = self.tokenizer([prompt], return_tensors="pt").input_ids.to(self.model.device)  # [1, P]
        embeds, mask = self.model.lm_inputs(extra["image"], ids, torch.ones_like(ids))  # [1, Q + P, D]
        return embeds, mask, [ids[0].tolist()]

    def generate_batch(
        self, images: list[Image.Image], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        with torch.no_grad():
            patches = self.model.vision.encode(images)  # [B, N, C]
        embeds, mask, ids = self.inputs(patches, prompts)
        return generation.generate_batch(self.model.lm, self.tokenizer, embeds, mask, settings, ids)

    @torch.no_grad()
    def attention_map(self, patches: torch.Tensor, prompt: str) -> torch.Tensor | None:
        """Where the Q-Former looked for this prompt: weights over the patch grid [grid, grid], or None."""
        self.tokenizer.padding_side = "left"
        text = self.tokenizer([prompt], return_tensors="pt").to(self.model.device)
        _, attention = self.model.image_tokens(
            patches.to(self.model.device), text.input_ids, text.attention_mask, return_attention=True
        )
        if attention is None:
            return None
        grid = self.model.cfg.vit_grid
        return attention[0].reshape(grid, grid).float().cpu()  # [N] -> [grid, grid]
