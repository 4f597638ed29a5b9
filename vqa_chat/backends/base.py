"""The backend interface every model behind the chat implements.

A backend turns an image into "image tokens" (embeddings in its language model's input space) once, and
then answers any number of text prompts about that image by generating after
`[image tokens][prompt tokens]`. BLIP-2 and our custom Q-Former model both have exactly this shape, so
the app, the CLI and the evaluator talk to them the same way. Everything callers use is on `Backend`:
streaming (with the session's reusable state, and the answer's token log-probs for the confidence check),
answer scoring, the attention map for the heatmap, and whether describe mode composes the description; what
a backend can't do has a default.
Also here: the options and settings every backend takes, device/dtype choice, and `BusyError`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image


@dataclass
class GenerationSettings:
    max_new_tokens: int = 40  # answer length cap, in tokens
    do_sample: bool = False  # False = greedy (deterministic); True = temperature / top-p sampling
    temperature: float = 0.7  # sampling temperature (only with do_sample)
    top_p: float = 0.9  # nucleus sampling mass (only with do_sample)
    num_beams: int = 1  # beam search width; >1 disables token streaming granularity but still works
    repetition_penalty: float = 1.15  # ours: discourages "a hat on top of a hat on top of..."
    no_repeat_ngram_size: int = 3  # ours: forbids repeating any 3-gram
    plain: bool = False  # True = none of our adjustments: exactly transformers' greedy generate
    min_new_tokens: int = 0  # forbid EOS before this many tokens (benchmarks use it to fix the length)


@dataclass
class BackendOptions:
    model: str | None = None  # hub id or local folder; None = the backend's default
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None = CUDA when present, else CPU
    dtype: str | None = None  # "float16", "bfloat16", "float32"; None = fp16/bf16 on GPU, fp32 on CPU
    quantize: str | None = None  # None, "8bit"/"4bit" (bitsandbytes; GPU only) or "int8" (dynamic; CPU only)
    engine: str = "batched"  # "batched": continuous batching + prefix KV reuse; "generate": plain HF generate
    max_batch: int = 16  # answers decoded together by the batched engine
    max_waiting: int = 64  # answers allowed to wait for a batch slot; more get a "busy" message
    attn_implementation: str | None = None  # "sdpa" (default), "eager", "flash_attention_2" (GPU)
    compile: bool = False  # GPU: static KV cache + torch.compile (implies engine="generate")
    engine_threads: int = 0  # CPU threads of the engine's prefill and decode (0: half the cores; options.py)
    decode_kernels: bool = True  # CPU: compiled matrix-vector kernels in decode steps (decode_kernels.py)
    image_tokens: str = "question"  # custom model: "question" (exact) or "first" (see backends/custom.py)


@dataclass
class TokenLog:
    """An answer's tokens as the engine chooses them, each with its log-probability under the model: the
    log-softmax of the LM's raw logits, before our repetition rules, EOS masking, temperature or top-k/p
    (the same quantity a teacher-forced pass over the answer gives). The session hands one to `stream`
    and the confidence check reads it (chat/confidence.py): no second pass. A retry starts it afresh."""

    tokens: list[int] = field(default_factory=list)  # the answer's token ids, EOS not included
    logprobs: list[float] = field(default_factory=list)  # one per token

    def add(self, token: int, logits: torch.Tensor) -> None:
        """Record `token`, chosen after the raw next-token `logits` [V]."""
        logits = logits.float()
        self.tokens.append(token)
        self.logprobs.append(float(logits[token] - logits.logsumexp(-1)))

    def clear(self) -> None:
        self.tokens, self.logprobs = [], []


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


class BusyError(RuntimeError):
    """Too many chats are waiting for the model (engine queue full, or a server's 429/503);
    str(error) is a user-readable sentence."""


class Backend(ABC):
    """A loaded model that answers prompts about images. One instance is shared by all sessions.

    Everything the app, the CLI and the evaluator call is here. What a backend may not support has a
    default: no conversation state (`new_state` gives None), no answer scoring (`answer_logprobs` gives None),
    no attention map (`attention_map` raises NotImplementedError), no composed descriptions.
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
