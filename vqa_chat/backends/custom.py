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
that ignore the prompt (`linear`, `mlp`, `mp_question=False`) get full reuse in either mode. The pinned
tokens are part of the session's state (`CustomState.pinned`), beside its prefix cache.

One stream path: every answer's LM input is an `Inputs` built by `lm_rows`, by the batched engine together
with the other questions that arrive with it, or at once for `generate` (engine/generation.py).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import BitsAndBytesConfig

from vqa_chat import settings
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
from vqa_chat.engine.types import BackendOptions, GenerationSettings, Inputs, TokenLog
from vqa_chat.model.vision_language_model import VisionLanguageModel
from vqa_chat.prompts import load_prompt

DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "assets" / "custom-model")


class RecentImageTokens:
    """Image tokens the engine's intake (`lm_rows`) just computed, per (patches, prompt): the answer's
    `top_answers` reads them instead of running the Q-Former again. Keeps only weak references to the
    patches, and the newest `size` entries."""

    def __init__(self, size: int = 64):
        self.size = size
        self.items: OrderedDict[tuple[int, str], tuple[weakref.ref, torch.Tensor]] = OrderedDict()
        self.lock = threading.Lock()  # written by the scheduler thread, read by the chats' threads

    def put(self, patches: torch.Tensor, prompt: str, image: torch.Tensor) -> None:
        with self.lock:
            self.items[(id(patches), prompt)] = (weakref.ref(patches), image)  # image tokens [1, Q, D]
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def take(self, patches: torch.Tensor, prompt: str) -> torch.Tensor | None:
        with self.lock:
            ref, image = self.items.pop((id(patches), prompt), (None, None))
        return image if ref is not None and ref() is patches else None


@dataclass(frozen=True)
class Pinned:
    """Image tokens pinned for the follow-ups (image_tokens="first"): those of the first prompt about the
    picture whose encoder patches are `patches` (compared by identity: a new picture pins anew)."""

    patches: torch.Tensor  # [1, N, C]
    tokens: torch.Tensor  # [1, Q, D]


@dataclass
class CustomState(PrefixCache):
    """A session's state on the custom model: the engine's prefix cache, and the pinned image tokens."""

    pinned: Pinned | None = None

    def clear(self) -> None:  # a failed answer: the next turn starts afresh, pinning again
        super().clear()
        self.pinned = None


Item = tuple[torch.Tensor, str, CustomState | None]  # an answer's patches [1, N, C], prompt, state


class CustomBackend(Backend[torch.Tensor, CustomState]):
    """Encodings are the frozen encoder's patch tokens [1, N, C]."""

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
        self.scheduler = engine_build.engine(model.lm, self.tokenizer, options)
        self.recent = RecentImageTokens()
        # a Q-Former's cross-attention is where it looked; early-fusion connectors have none
        heatmap = cfg.mp_type == "qformer"
        self.capabilities = Capabilities(heatmap=heatmap, knows_its_domain=model.domain is not None)
        # the map depends on the prompt: before any answer, the one the model was trained to describe with
        self.heatmap_prompt = load_prompt("question").format(question=load_prompt("describe"))

    def new_state(self) -> CustomState | None:
        return CustomState() if self.scheduler is not None else None

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()

    @classmethod
    def load(cls, options: BackendOptions) -> CustomBackend:
        model_id = settings.user_path(options.model or settings.read().custom_model) or DEFAULT_MODEL
        device, dtype = resolve_device(options)
        if not os.path.isdir(model_id) and model_id.startswith((".", "/", "~")):
            raise ModelLoadError(f"Could not load the custom model: the folder {model_id!r} does not exist.")
        kwargs = engine_build.load_kwargs(options)
        if options.quantize in ("8bit", "4bit"):
            bits = {"load_in_8bit": True} if options.quantize == "8bit" else {"load_in_4bit": True}
            kwargs.update(quantization_config=BitsAndBytesConfig(**bits), device_map={"": device})
        try:
            model = VisionLanguageModel.from_pretrained(model_id, device, dtype, **kwargs)
        except Exception as e:
            raise ModelLoadError(f"Could not load the custom model {model_id!r}: {e}") from e
        engine_build.apply(model.lm, options)
        return cls(model, model_id, options)

    @torch.no_grad()
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        return self.model.vision.encode([image])  # [1, N, C] patch tokens, reused on every turn

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    @torch.no_grad()
    def inputs(self, patches: torch.Tensor, prompts: list[str]):
        """LM inputs for B images and prompts: embeds [B, T, D], mask [B, T], prompt ids per row."""
        text, image, _ = self.model.read_prompts(patches, prompts)
        embeds, mask = self.model.lm_inputs(image, text.input_ids, text.attention_mask)
        ids = [row[m.bool()].tolist() for row, m in zip(text.input_ids, text.attention_mask, strict=True)]
        return embeds, mask, ids

    def lm_rows(self, items: list[Item]) -> list[tuple[torch.Tensor, list[int]]]:
        """The LM inputs of answers (types.Inputs): for (patches [1, N, C], prompt, state) triples, each
        one's LM input [T_i, D] without padding and its prompt ids, from one tokenizer and one Q-Former call
        for those whose image tokens are not pinned in their state (image_tokens="first")."""
        text = self.tokenizer([prompt for _, prompt, _ in items], return_tensors="pt", padding=True,
                              padding_side="left").to(self.model.device)  # fmt: skip
        pins = [self._pinned(patches, state) for patches, _, state in items]
        new = [i for i, pin in enumerate(pins) if pin is None]
        if new:  # their image tokens, from their own prompt
            patches = torch.cat([items[i][0].to(self.model.device) for i in new])  # [b, N, C]
            image, _ = self.model.image_tokens(patches, text.input_ids[new], text.attention_mask[new])
            for i, tokens in zip(new, image):
                patches, prompt, state = items[i]
                pins[i] = tokens[None]  # [1, Q, D]
                self.recent.put(patches, prompt, pins[i])  # for this answer's top_answers
                if self.pin_image_tokens and state is not None:
                    state.pinned = Pinned(patches, pins[i])
        embeds, mask = self.model.lm_inputs(torch.cat(pins), text.input_ids, text.attention_mask)  # [B, T, D]
        ids = [row[m.bool()].tolist() for row, m in zip(text.input_ids, text.attention_mask, strict=True)]
        return [(e[m.bool()], i) for e, m, i in zip(embeds, mask, ids, strict=True)]

    def _pinned(self, patches: torch.Tensor, state: CustomState | None) -> torch.Tensor | None:
        """The image tokens pinned for this picture in `state`, or None (not pinning, or a new picture)."""
        pinned = state.pinned if self.pin_image_tokens and state is not None else None
        return pinned.tokens if pinned is not None and pinned.patches is patches else None

    def stream(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state: CustomState | None = None,
        log: TokenLog | None = None,
    ) -> Iterator[str]:
        job = Inputs(self.lm_rows, (image_embeds, prompt, state))
        yield from generation.stream_answer(
            self.scheduler, self.model.lm, self.tokenizer, job, settings, stop, state, log
        )

    def picture_in_domain(self, image_embeds: torch.Tensor, image: Image.Image) -> bool:
        domain = self.model.domain  # a model without a fitted domain is trusted everywhere
        return domain is None or domain.image_in_domain(image_embeds, image)

    def imagenet_features(self, image_embeds: torch.Tensor) -> torch.Tensor | None:
        """When the encoder is EfficientNet-Lite0 its patches keep the head features (head_features): the
        photo facts' ImageNet head on them gives labels.py's probabilities when both networks saw the same
        pixels, i.e. for square pictures (photo/labels.py reused; README, Real photos, offline)."""
        return self.model.vision.head_features(image_embeds)

    def question_in_domain(self, question: str) -> bool:
        return self.model.domain is None or self.model.domain.question_in_domain(question)

    @torch.no_grad()
    def top_answers(self, image_embeds: torch.Tensor, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        if self.model.answer_head is None:
            return []
        image = self.recent.take(image_embeds, prompt)  # the engine computed them for the answer
        if image is None:
            _, image, _ = self.model.read_prompts(image_embeds.to(self.model.device), [prompt])
        return self.model.answer_head.top_k(image, k)

    @torch.no_grad()
    def encode_batch(self, images: list[Image.Image]) -> list[torch.Tensor]:
        return list(self.model.vision.encode(images).split(1))  # [B, N, C] -> B x [1, N, C]

    def generate_encoded(
        self, encodings: list[torch.Tensor], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        patches = torch.cat([p.to(self.model.device) for p in encodings])  # [B, N, C]
        embeds, mask, ids = self.inputs(patches, prompts)
        return generation.generate_batch(self.model.lm, self.tokenizer, embeds, mask, settings, ids)

    def token_logprobs(self, patches: torch.Tensor, prompt: str, answer_ids: list[int]) -> list[float]:
        """Log-probability of each answer token after this prompt's LM input (teacher-forced)."""
        embeds, _, _ = self.inputs(patches, [prompt])  # [1, T, D]
        return teacher_forced_logprobs(self.model.lm, embeds, answer_ids)

    def answer_logprobs(self, patches: torch.Tensor, prompt: str, answer: str) -> list[float] | None:
        ids = self.tokenizer(" " + answer.strip(), add_special_tokens=False).input_ids  # as after `Answer:`
        return self.token_logprobs(patches, prompt, ids) if ids else None

    @torch.no_grad()
    def attention_map(self, image: Image.Image, prompt: str, image_embeds=None) -> torch.Tensor:
        """Where the Q-Former looked for this prompt (it reads the question): [grid, grid] weights, from
        `image_embeds` (the cached patches) when given."""
        patches = image_embeds if image_embeds is not None else self.encode_image(image)
        _, _, attention = self.model.read_prompts(patches, [prompt], return_attention=True)  # [1, N]
        grid = self.model.cfg.vit_grid
        return attention[0].reshape(grid, grid).float().cpu()  # [N] -> [grid, grid]
