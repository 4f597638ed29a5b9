"""The backend interface every model behind the chat implements.

A backend turns an image into "image tokens" (embeddings in its language model's input space) once, and
then answers any number of text prompts about that image by generating after
`[image tokens][prompt tokens]`. BLIP-2 and our custom Q-Former model both have exactly this shape, so
the app, the CLI and the evaluator talk to them the same way. Everything callers use is on `Backend`:
streaming (with the session's reusable state, and the answer's token log-probs for the confidence check),
answer scoring, the attention map for the heatmap, and whether describe mode composes the description; what
a backend can't do has a default.
Also here: device/dtype choice and `ModelLoadError`. The options and settings every backend takes, the token
log and `BusyError` are the engine's (engine/types.py).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

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


class Backend(ABC):
    """A loaded model that answers prompts about images. One instance is shared by all sessions.

    Everything the app, the CLI and the evaluator call is here. What a backend may not support has a
    default: no conversation state (`new_state` gives None), no answer scoring (`answer_logprobs` gives None),
    no attention map (`attention_map` raises NotImplementedError), no composed descriptions, nothing to close.
    """

    name: str = ""  # registry key, e.g. "blip2"
    model_id: str = ""  # the hub id or folder the model was loaded from
    context_length: int = 2048  # tokens the language model accepts, image tokens included
    num_image_tokens: int = 0  # LM positions the image takes in every prompt (every backend sets it)
    knows_its_domain: bool = False  # True: `in_domain` really tells (a model trained on one kind of picture)
    composes_descriptions: bool = False  # True: describe mode composes short answers (chat/describe.py)

    @abstractmethod
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """Run the vision side once: what `stream` takes as `image_embeds` for every turn about the image
        (BLIP-2: image tokens [1, Q, D]; custom: encoder patches [1, N, C]; vLLM: the image as a data URL)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of LM tokens `text` takes as a prompt (used to fit the conversation in context)."""

    @abstractmethod
    def stream(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state=None,
        log: TokenLog | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as tokens are generated; stop early when `stop` is set.

        `state` is the session's reusable conversation state from `new_state()` (kv.PrefixCache), read and
        refreshed on every turn; None = nothing reused (backends without state ignore it). `log`, when
        given, holds the answer's token log-probs once the stream ends (backends that can't tell leave it
        empty).
        """

    def new_state(self):
        """A fresh per-session conversation state (e.g. a prefix KV cache), or None if not supported."""
        return None

    def close(self) -> None:
        """Stop what runs beside the model (the engine's scheduler thread): an answer still running ends with
        an error, and the backend is not used afterwards. By default there is nothing to stop. Whoever built
        the backend closes it (the registry's own at interpreter exit: engine/batching.py)."""
        return None

    def answer_logprobs(self, image_embeds: torch.Tensor, prompt: str, answer: str) -> list[float] | None:
        """Log-probability of each token of `answer` (as it follows `prompt` about the image), teacher-forced:
        for answers the chat did not just generate (BLIP-2's composed descriptions, calibration); None when
        this backend cannot score answers."""
        return None

    def in_domain(self, image_embeds, image: Image.Image, question: str | None) -> bool:
        """Is this picture (and `question`; None = a describe request) like what the model was trained on?
        Out of domain, the chat answers from photo facts instead (chat/photo). General models: always."""
        return True

    def top_answers(self, image_embeds, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The k likeliest short answers with their probabilities, or [] when the model has no answer head."""
        return []

    def attention_map(self, image: Image.Image, prompt: str, image_embeds=None) -> torch.Tensor:
        """Where the model looked for `prompt`: weights over the patch grid [grid, grid] summing to 1
        (chat/heatmap.py). `image_embeds` is `encode_image(image)` when the caller has it.
        Raises NotImplementedError (a user-readable message) when this backend cannot tell."""
        raise NotImplementedError(f"the {self.name or 'selected'} backend cannot show where it looked")

    def generate(
        self,
        image_embeds: torch.Tensor,
        prompt: str,
        settings: GenerationSettings,
        log: TokenLog | None = None,
    ) -> str:
        """The whole answer at once (same text as joining `stream`; `log` as there)."""
        return "".join(self.stream(image_embeds, prompt, settings, log=log)).strip()

    def generate_batch(
        self, images: list[Image.Image], prompts: list[str], settings: GenerationSettings
    ) -> list[str]:
        """Answer many (image, prompt) pairs; backends override this with real batching."""
        return [self.generate(self.encode_image(im), p, settings) for im, p in zip(images, prompts)]


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
