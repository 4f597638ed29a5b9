"""The backend interface every model behind the chat implements.

A backend turns an image into its encoding once (`encode_image`; typed per backend: BLIP-2's image tokens
[1, Q, D], the custom model's encoder patches [1, N, C], vLLM's data URL), and then answers any number of
text prompts about that image by generating after `[image tokens][prompt tokens]`. The app, the CLI and the
evaluator talk to every backend the same way: streaming (with the session's own reusable state, typed per
backend, and the answer's token log-probs for the confidence check), answer scoring, and, where its
`capabilities` say so, the attention map for the heatmap and composed descriptions. Whether a picture and a
question are what the model knows is decided in one place, `Backend.knows`, once per question.
Also here: device/dtype choice and `ModelLoadError`. The options and settings every backend takes, the token
log and `BusyError` are the engine's (engine/types.py).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
from PIL import Image

from vqa_chat.engine.types import BackendOptions, GenerationSettings, TokenLog

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ModelLoadError(RuntimeError):
    """The model could not be loaded; str(error) is a user-readable explanation."""


def resolve_device(options: BackendOptions) -> tuple[str, torch.dtype]:
    """(device, dtype): CUDA with fp16 when present (bf16 if asked for), CPU with fp32 otherwise."""
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} was requested, but no CUDA GPU is available here.")
    if options.dtype is not None and options.dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype {options.dtype!r}; choose one of {sorted(DTYPES)}.")
    dtype = DTYPES[options.dtype] if options.dtype else (torch.float16 if on_gpu else torch.float32)
    if dtype == torch.bfloat16 and on_gpu and not torch.cuda.is_bf16_supported():
        raise ModelLoadError("This GPU does not support bfloat16; use --dtype float16.")
    if options.engine not in ("batched", "generate"):
        raise ModelLoadError(f"Unknown engine {options.engine!r}; choose batched or generate.")
    if options.quantize == "int8":
        if on_gpu:
            raise ModelLoadError("int8 dynamic quantization runs on the CPU; on a GPU use 8bit or 4bit.")
        if options.engine != "batched":
            raise ModelLoadError("int8 quantizes the batched engine's decode steps; use engine batched.")
    elif options.quantize is not None:
        if options.quantize not in ("8bit", "4bit"):
            raise ModelLoadError(f"Unknown quantization {options.quantize!r}; choose 8bit, 4bit or int8.")
        if not on_gpu:
            raise ModelLoadError(
                f"{options.quantize} quantization (bitsandbytes) needs a CUDA GPU; this run is on the CPU. "
                "Use int8 (dynamic quantization) on the CPU, or drop the quantize option."
            )
    return device, dtype


Encoding = TypeVar("Encoding")  # what `encode_image` gives and every turn about the image reuses
State = TypeVar("State")  # a session's reusable conversation state on this backend (e.g. a prefix KV cache)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond answering, declared as data: callers read it instead of trying."""

    heatmap: bool = False  # `attention_map` tells where it looked (chat/heatmap.py)
    composes_descriptions: bool = False  # describe mode composes short answers (chat/describe.py)
    knows_its_domain: bool = False  # trained on one kind of picture, and its domain checks really tell


@dataclass(frozen=True)
class Known:
    """Is a picture, and a question about it, what the model knows (`Backend.knows`)? When not, the chat,
    the CLI and evaluate answer from the photo's measured facts instead of the model."""

    picture: bool  # the picture is like the model's training pictures (a general model: any picture)
    question: bool  # so is the question (a description, with no question: whenever the picture is)
    own_kind: bool  # the model knows its domain and the picture is of it (easy-VQA's drawings): no photo

    @property
    def model_answers(self) -> bool:
        return self.picture and self.question

    @property
    def advise(self) -> bool:
        """Retake advice may be given: a picture of the model's own kind (a drawing) is no photo to retake."""
        return not self.own_kind


class Backend(ABC, Generic[Encoding, State]):
    """A loaded model that answers prompts about images. One instance is shared by all sessions.

    Everything the app, the CLI and the evaluator call is here. What a backend may not support has a
    default: no conversation state (`new_state` gives None), no answer scoring (`answer_logprobs` gives None),
    no answer head (`top_answers` gives []), any picture and question in its domain, nothing to close;
    `capabilities` says whether it shows a heatmap, composes descriptions and knows its own domain.
    """

    name: str = ""  # registry key, e.g. "blip2"
    model_id: str = ""  # the hub id or folder the model was loaded from
    context_length: int = 2048  # tokens the language model accepts, image tokens included
    num_image_tokens: int = 0  # LM positions the image takes in every prompt (every backend sets it)
    capabilities: Capabilities = Capabilities()
    heatmap_prompt: str = ""  # the prompt of a heatmap asked before any answer ("": a map that ignores it)

    @abstractmethod
    def encode_image(self, image: Image.Image) -> Encoding:
        """Run the vision side once: what `stream` takes as `image_embeds` for every turn about the image."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of LM tokens `text` takes as a prompt (used to fit the conversation in context)."""

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        """`count_tokens` of each text (fitting a conversation in context counts several prompts at once);
        backends whose count is a round trip (vLLM) send them together."""
        return [self.count_tokens(text) for text in texts]

    @abstractmethod
    def stream(
        self,
        image_embeds: Encoding,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state: State | None = None,
        log: TokenLog | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as tokens are generated; stop early when `stop` is set.

        `state` is the session's reusable conversation state from `new_state()`, read and refreshed on every
        turn; None = nothing reused. `log`, when given, holds the answer's token log-probs once the stream
        ends (backends that can't tell leave it empty).
        """

    def new_state(self) -> State | None:
        """A fresh per-session conversation state (e.g. a prefix KV cache), or None if not supported."""
        return None

    def close(self) -> None:
        """Stop what runs beside the model (the engine's scheduler thread): an answer still running ends with
        an error, and the backend is not used afterwards. By default there is nothing to stop. Whoever built
        the backend closes it (the registry's own at interpreter exit: engine/batching.py)."""
        return None

    def answer_logprobs(self, image_embeds: Encoding, prompt: str, answer: str) -> list[float] | None:
        """Log-probability of each token of `answer` (as it follows `prompt` about the image), teacher-forced:
        for answers the chat did not just generate (composed descriptions, calibration); None when this
        backend cannot score answers."""
        return None

    def picture_in_domain(self, image_embeds: Encoding, image: Image.Image) -> bool:
        """Is this picture like what the model was trained on? General models: always."""
        return True

    def question_in_domain(self, question: str) -> bool:
        """Is this question like the ones the model was trained on? General models: always."""
        return True

    def knows(self, image_embeds: Encoding, image: Image.Image, question: str | None) -> Known:
        """The domain decision, once per question (None: a description): the picture, then the question."""
        picture = self.picture_in_domain(image_embeds, image)
        asked = question is None or (picture and self.question_in_domain(question))
        return Known(picture, asked, self.capabilities.knows_its_domain and picture)

    def top_answers(self, image_embeds: Encoding, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The k likeliest short answers with their probabilities, or [] when the model has no answer head."""
        return []

    def imagenet_features(self, image_embeds: Encoding) -> torch.Tensor | None:
        """What the photo facts' ImageNet head takes (photo/labels.py: EfficientNet-Lite0's 1280 head channels
        averaged over the picture, [1, 1280]), read from this backend's `encode_image(image)` when it holds
        them, so that the facts need not run that network again; None when it does not (the default)."""
        return None

    def attention_map(
        self, image: Image.Image, prompt: str, image_embeds: Encoding | None = None
    ) -> torch.Tensor:
        """Where the model looked for `prompt`: weights over the patch grid [grid, grid] summing to 1
        (chat/heatmap.py), when `capabilities.heatmap`. `image_embeds` is `encode_image(image)` if known."""
        raise TypeError(f"the {self.name or 'selected'} backend has no attention map (capabilities.heatmap)")

    def generate(
        self,
        image_embeds: Encoding,
        prompt: str,
        settings: GenerationSettings,
        log: TokenLog | None = None,
    ) -> str:
        """The whole answer at once (same text as joining `stream`; `log` as there)."""
        return "".join(self.stream(image_embeds, prompt, settings, log=log)).strip()

    def encode_batch(self, images: list[Image.Image]) -> list[Encoding]:
        """`encode_image` of each image (one vision pass for them all where the backend can batch it): an
        image encoded once can then answer any number of prompts (`generate_encoded`)."""
        return [self.encode_image(image) for image in images]

    def generate_encoded(
        self, encodings: list[Encoding], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        """Answers for (encoding, prompt) pairs, the encodings from `encode_image` / `encode_batch` (the same
        one may come several times); backends override this with real batching."""
        return [self.generate(e, p, settings) for e, p in zip(encodings, prompts, strict=True)]

    def generate_batch(
        self, images: list[Image.Image], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        """Answer many (image, prompt) pairs: `encode_batch`, then `generate_encoded`."""
        return self.generate_encoded(self.encode_batch(images), prompts, settings)


@torch.no_grad()
def teacher_forced_logprobs(lm, embeds: torch.Tensor, answer_ids: list[int]) -> list[float]:
    """Log-probability of each of `answer_ids` after the LM input `embeds` [1, T, D] and the answer tokens
    before it: one forward pass of the causal LM `lm` (shared by the backends that run their LM here)."""
    table = lm.get_input_embeddings()
    ids = torch.tensor([answer_ids], device=table.weight.device)  # [1, A]
    full = torch.cat([embeds.to(table.weight.device, table.weight.dtype), table(ids)], dim=1)  # [1, T + A, D]
    logits = lm(inputs_embeds=full).logits[0, embeds.shape[1] - 1 : -1].float()  # [A, V]
    logprobs = logits.log_softmax(-1).gather(1, ids[0, :, None].to(logits.device))  # [A, 1]
    return logprobs[:, 0].tolist()
