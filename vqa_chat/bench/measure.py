"""The benchmark's measurements, each against its baseline in the same run (see bench/__main__.py).

Times are wall-clock (time.perf_counter). A "token time" is when a token's text reached the reader: for our
engine the piece yielded by `backend.stream`, for transformers' `generate` the streamer's `put` call
(the earliest moment, which favours the baseline).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

import torch
from transformers.generation.streamers import BaseStreamer

from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.engine.generation import generate_kwargs
from vqa_chat.engine.types import GenerationSettings


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def read_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """The machine's memory read bandwidth in bytes/s: summing a tensor much larger than the caches."""
    x = torch.ones(megabytes * 2**20 // 4)  # float32
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.nbytes / best


class TokenTimes(BaseStreamer):
    """A `generate` streamer that only records when each new token arrives."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate first puts the prompt (empty with inputs_embeds)
            self.prompt_seen = True
            return
        self.times.extend([time.perf_counter()] * value.numel())

    def end(self):
        pass


@dataclass
class Stream:
    """One answer as its reader saw it."""

    start: float
    times: list[float] = field(default_factory=list)
    text: str = ""

    @property
    def ttft(self) -> float:
        return self.times[0] - self.start if self.times else float("nan")

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


def read_stream(pieces, start: float | None = None) -> Stream:
    out = Stream(time.perf_counter() if start is None else start)
    for piece in pieces:
        out.times.append(time.perf_counter())
        out.text += piece
    return out


@torch.no_grad()
def generate_timed(lm, tokenizer, embeds, mask, settings: GenerationSettings, prompt_ids=None) -> Stream:
    """transformers' `generate` on ready LM inputs [1, T, D], timing each token as it is produced (before
    any detokenizing: the baseline's best case)."""
    timer = TokenTimes()
    start = time.perf_counter()
    out = lm.generate(inputs_embeds=embeds, attention_mask=mask, streamer=timer,
                      **generate_kwargs(settings, tokenizer, prompt_ids))  # fmt: skip
    return Stream(start, timer.times, tokenizer.decode(out[0], skip_special_tokens=True))


# ---- 1. follow-up turns ----------------------------------------------------------------------------------


def conversation_ttft(
    backend, image, questions, settings, naive=False, patches=None
) -> tuple[list[float], list[str]]:
    """TTFT of each turn of one conversation about `image`, and the answers.

    Ours: the image is encoded once (inside turn 1's time, unless its `patches` are given) and each turn
    passes the session's state, as the app does. Naive: every turn re-encodes the image and prefills the
    whole prompt with `generate`.
    """
    turns: list[Turn] = []
    ttfts, answers = [], []
    state = backend.new_state()
    for q in questions:
        prompt = format_prompt(turns, q)
        start = time.perf_counter()
        if naive:
            embeds, mask, ids = backend.inputs(backend.encode_image(image), [prompt])
            s = generate_timed(backend.model.lm, backend.tokenizer, embeds, mask, settings, ids)
            s.start = start  # the image encoding and the Q-Former count too
            ttft, answer = s.ttft, s.text
        else:
            if patches is None:
                patches = backend.encode_image(image)
            kwargs = {"state": state} if state is not None else {}
            s = read_stream(backend.stream(patches, prompt, settings, **kwargs), start)
            ttft, answer = s.ttft, s.text
        ttfts.append(ttft)
        answers.append(answer.strip())
        turns.append(Turn(question=q, answer=answer.strip()))
    return ttfts, answers


# ---- 2. streaming vs plain generate ---------------------------------------------------------------------


def streaming_vs_generate(backend, patches, prompt: str, tokens: int, repeats: int) -> tuple[float, float]:
    """(tokens/s through `backend.stream`, tokens/s of a plain `generate`), same input, `tokens` tokens."""
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, plain=True)
    with torch.no_grad():
        embeds, mask, _ = backend.inputs(patches, [prompt])
    ours, plain = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        "".join(backend.stream(patches, prompt, settings))  # includes the Q-Former and tokenizing
        ours.append(tokens / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        with torch.no_grad():
            n = backend.model.lm.generate(inputs_embeds=embeds, attention_mask=mask,
                                          **_plain_kwargs(backend, tokens)).shape[1]  # fmt: skip
        plain.append(n / (time.perf_counter() - t0))
    return median(ours), median(plain)


def _plain_kwargs(backend, tokens: int) -> dict:
    pad = backend.tokenizer.pad_token_id
    return dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad)


# ---- 3. many sessions -----------------------------------------------------------------------------------


def concurrent_sessions(backend, jobs: list[tuple], tokens: int) -> dict:
    """All `jobs` [(patches, prompt)] stream `tokens` tokens each, from their own threads, started at once.

    Returns aggregate tokens/s, TTFT and time-between-tokens samples (seconds)."""
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, plain=True)
    streams: list[Stream | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs) + 1)

    def run(i, patches, prompt):
        barrier.wait()
        try:
            streams[i] = read_stream(backend.stream(patches, prompt, settings))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {
        "tokens_per_s": tokens * len(jobs) / wall,
        "ttft": [s.ttft for s in streams],
        "gaps": [g for s in streams for g in s.gaps],
    }


# ---- 4. int8 vs fp32 vs the bandwidth bound ------------------------------------------------------------


def decode_rate(backend, patches, prompt: str, tokens: int, repeats: int) -> float:
    """Decode tokens/s at batch size 1 through our engine (`backend.stream`): exactly `tokens` tokens, timed
    from the first piece of text to the last (the int8 option quantizes the engine's decode steps)."""
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens, plain=True)
    rates = []
    for _ in range(repeats):
        s = read_stream(backend.stream(patches, prompt, settings, state=backend.new_state()))
        rates.append((tokens - 1) / (s.times[-1] - s.times[0]))
    return median(rates)


# ---- the accuracy cost of pinned image tokens -------------------------------------------------------------


def conversation_accuracy(exact, pinned, conversations: list[list[dict]], settings) -> dict[str, float]:
    """easy-VQA accuracy (official metric, %) of the answers to follow-up turns (2nd question on) when each
    image's questions are asked as one conversation: exact (per-question image tokens) vs pinned (the first
    question's), and the same questions asked alone (one-turn prompts, the way the model was trained)."""
    from vqa_chat.chat.images import load_image
    from vqa_chat.eval.evaluate import score_records

    records, answers = [], {"exact": [], "pinned": [], "alone": []}
    for questions in conversations:
        image = load_image(questions[0]["image"])
        texts = [r["question"] for r in questions]
        for mode, backend in (("exact", exact), ("pinned", pinned)):
            _, said = conversation_ttft(backend, image, texts, settings)
            answers[mode] += said[1:]
        patches = exact.encode_image(image)
        for q in texts[1:]:
            answers["alone"].append(exact.generate(patches, format_prompt([], q), settings))
        records += questions[1:]
    return {mode: score_records(records, said)[0]["overall"] for mode, said in answers.items()}
