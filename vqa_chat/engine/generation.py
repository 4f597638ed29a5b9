"""Text generation shared by every backend: a causal LM continuing from `inputs_embeds`.

A backend builds `[image tokens][prompt tokens]` as embeddings [B, T, D] and hands them here with its Hugging
Face causal LM and tokenizer. This module knows nothing about BLIP-2 or any other model.

`GenerationSettings` -> `generate()` keyword arguments:
- `plain=True`: exactly transformers' greedy decoding, only `max_new_tokens`; no retries; text only stripped.
- otherwise our defaults against the known failures of small VQA language models:
  * repetition loops ("a hat on top of a hat on top of ..."): `repetition_penalty` and `no_repeat_ngram_size`
    from the settings, applied to the answer;
  * echoing the question: with `prompt_ids`, the answer may not copy `ECHO_NGRAM` consecutive prompt tokens;
  * empty answers (only EOS or whitespace): one retry with `min_new_tokens=RETRY_MIN_NEW_TOKENS`;
  * greedy by default; sampling (temperature, top-p) and beam search when asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import torch
from transformers import (
    LogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TextIteratorStreamer,
)

from vqa_chat.engine.threads import GENERATE_THREAD
from vqa_chat.engine.types import GenerationSettings, Inputs, TokenLog

ECHO_NGRAM = 4  # the answer may not repeat this many consecutive prompt tokens
RETRY_MIN_NEW_TOKENS = 3  # the retry after an empty answer forbids EOS for this many tokens


def eos_ids(lm) -> set[int]:
    """The token ids that end an answer, as `generate` reads them from the model's generation config."""
    eos = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(lm.config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def on_gpu(fn: Callable) -> Callable:
    """`spaces.GPU` on Hugging Face ZeroGPU Spaces (when the `spaces` package is installed), else a no-op."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


class EventStop(StoppingCriteria):
    """Stops generation as soon as any of the given events is set (the Stop button, or a closed consumer)."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class NoEcho(LogitsProcessor):
    """Forbids the answer to copy `ngram` consecutive tokens of its row's source (the prompt).

    `input_ids` seen here are the generated tokens only (we generate from `inputs_embeds`); rows are
    batch items, or batch items x beams.
    """

    def __init__(self, sources: list[list[int]], ngram: int = ECHO_NGRAM):
        self.ngram = ngram
        self.tables = []  # per source: (n-1)-token prefix -> tokens that would complete a copied n-gram
        for ids in sources:
            table: dict[tuple[int, ...], set[int]] = {}
            for i in range(len(ids) - ngram + 1):
                table.setdefault(tuple(ids[i : i + ngram - 1]), set()).add(ids[i + ngram - 1])
            self.tables.append(table)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] < self.ngram - 1:
            return scores
        rows_per_source = input_ids.shape[0] // len(self.tables)  # beams
        prefixes = input_ids[:, -(self.ngram - 1) :].tolist()  # [rows, n-1]
        scores = scores.clone()  # not in place: `generate` keeps the raw logits for the TokenLog
        for row, prefix in enumerate(prefixes):
            banned = self.tables[row // rows_per_source].get(tuple(prefix))
            if banned:
                scores[row, list(banned)] = -float("inf")
        return scores


def generate_kwargs(settings: GenerationSettings, tokenizer, prompt_ids: list[list[int]] | None = None):
    """Keyword arguments (a dict) for `model.generate`, besides the inputs, from our settings.

    Our anti-repetition rules are passed as logits processors, not as `repetition_penalty=` /
    `no_repeat_ngram_size=`: with `inputs_embeds` and left padding, transformers' built-in repetition penalty
    skips the first generated tokens of padded rows (it takes the padding length as a prompt length).
    """
    fixed = {"min_new_tokens": settings.min_new_tokens} if settings.min_new_tokens else {}
    if settings.plain:
        return {"max_new_tokens": settings.max_new_tokens, "do_sample": False, "num_beams": 1, **fixed}
    processors = []
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(float(settings.repetition_penalty)))
    if settings.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
    if prompt_ids is not None:
        processors.append(NoEcho(prompt_ids))
    kwargs = {
        "max_new_tokens": settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "logits_processor": processors,
        **fixed,
    }
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        kwargs["pad_token_id"] = pad
    return kwargs


def retry_min_new_tokens(answer: str, settings: GenerationSettings, stopped: bool = False) -> int:
    """The empty-answer rule of every engine: 0 when `answer` stands, else the `min_new_tokens` of its one
    retry (EOS forbidden for RETRY_MIN_NEW_TOKENS tokens). Plain settings and stopped answers never retry."""
    if answer.strip() or settings.plain or stopped:
        return 0
    return max(settings.min_new_tokens, min(RETRY_MIN_NEW_TOKENS, settings.max_new_tokens))


def record(log: TokenLog, out, eos: set[int], beam_search: bool = False) -> None:
    """Fill `log` from the output of a one-answer `generate` call made with `output_logits=True`: each token
    with the raw logits [V] it was chosen from (beam search: its beam's row, from `out.beam_indices`)."""
    rows = out.beam_indices[0].tolist() if beam_search else [0] * len(out.logits)  # per step
    log.clear()
    for t, token in enumerate(out.sequences[0, -len(out.logits) :].tolist()):
        if token in eos:
            return
        log.add(token, out.logits[t][rows[t]])


def _stream_once(model, tokenizer, inputs_embeds, attention_mask, kwargs, stop, log=None) -> Iterator[str]:
    """One `generate` call in a worker thread, yielding text pieces as tokens arrive; fills `log`
    (a TokenLog) when the call is done."""
    closed = threading.Event()  # set when the consumer stops iterating: generation halts too
    inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
    inputs["stopping_criteria"] = [EventStop(stop, closed)]
    if log is not None:  # the raw logits of every step, kept by `generate` for the TokenLog
        inputs.update(output_logits=True, return_dict_in_generate=True)
    if kwargs.get("num_beams", 1) > 1:  # transformers cannot stream beams: yield the best one at the end
        out = model.generate(**inputs, **kwargs)  # [1, new]
        if log is not None:
            record(log, out, eos_ids(model), beam_search=True)
            out = out.sequences
        yield tokenizer.decode(out[0], skip_special_tokens=True)
        return
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def work():
        try:
            out = model.generate(**inputs, **kwargs, streamer=streamer)
            if log is not None:
                record(log, out, eos_ids(model))
        except BaseException as e:  # re-raised in the consumer below
            errors.append(e)
            streamer.text_queue.put(streamer.stop_signal)  # ends the consumer's loop

    thread = threading.Thread(target=work, name=GENERATE_THREAD, daemon=True)
    thread.start()
    try:
        for piece in streamer:
            if piece:
                yield piece
    finally:
        closed.set()
        thread.join()
    if errors:
        raise errors[0]


@on_gpu
def stream_generate(
    model,
    tokenizer,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    stop: threading.Event | None = None,
    prompt_ids: list[int] | None = None,
    log: TokenLog | None = None,
) -> Iterator[str]:
    """Yield the answer's text pieces as `model` generates after `inputs_embeds` [1, T, D].

    `attention_mask` [1, T]; `stop` halts generation (the text so far is kept); `prompt_ids` are the prompt's
    token ids, used (unless `settings.plain`) to keep the answer from echoing the prompt; `log` holds the
    answer's token log-probs when the pieces end. Exceptions raised by `generate` are re-raised here. Join
    the pieces and strip them for the final answer.
    """
    kwargs = generate_kwargs(settings, tokenizer, None if prompt_ids is None else [prompt_ids])
    text = ""
    for piece in _stream_once(model, tokenizer, inputs_embeds, attention_mask, kwargs, stop, log):
        text += piece
        yield piece
    retry = retry_min_new_tokens(text, settings, stop is not None and stop.is_set())
    if retry:  # (the retry's tokens replace the first attempt's in `log`)
        kwargs["min_new_tokens"] = retry
        yield from _stream_once(model, tokenizer, inputs_embeds, attention_mask, kwargs, stop, log)


def stream_answer(
    scheduler,
    model,
    tokenizer,
    inputs: Inputs,
    settings: GenerationSettings,
    stop: threading.Event | None = None,
    state=None,
    log: TokenLog | None = None,
) -> Iterator[str]:
    """One answer's text pieces, every backend's one way: from the batched engine (`scheduler`,
    batching.Scheduler, which builds `inputs` with the others that arrive with it) when there is one and no
    beam search is asked, else from `stream_generate` on `inputs` built now. `state`: the chat's
    PrefixCache (the engine's prefix reuse); the rest as for `stream_generate`. Raises BusyError when the
    engine is full."""
    if scheduler is not None and settings.num_beams == 1:
        return iter(scheduler.submit(inputs, settings, stop, state, log=log))
    embeds, prompt_ids = inputs.built()  # [T, D]
    mask = torch.ones(1, embeds.shape[0], dtype=torch.long, device=embeds.device)  # [1, T]
    return stream_generate(model, tokenizer, embeds[None], mask, settings, stop, prompt_ids, log)


@on_gpu
def generate_batch(
    model,
    tokenizer,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    prompt_ids: list[list[int]] | None = None,
) -> list[str]:
    """Answers for a left-padded batch `inputs_embeds` [B, T, D] / `attention_mask` [B, T] (padding.left_pad),
    without streaming; same settings mapping (and empty-answer retry) as `stream_generate`."""
    kwargs = generate_kwargs(settings, tokenizer, prompt_ids)
    out = model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)  # [B, new]
    answers = [a.strip() for a in tokenizer.batch_decode(out, skip_special_tokens=True)]
    for i, answer in enumerate(answers):
        retry = retry_min_new_tokens(answer, settings)
        if retry:  # once, alone, without the padding
            real = attention_mask[i].bool()
            row_kwargs = generate_kwargs(settings, tokenizer, None if prompt_ids is None else [prompt_ids[i]])
            row_kwargs["min_new_tokens"] = retry
            embeds = inputs_embeds[i : i + 1, real]  # [1, T_i, D]
            mask = attention_mask[i : i + 1, real]  # [1, T_i]
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, **row_kwargs)  # [1, new]
            answers[i] = tokenizer.decode(out[0], skip_special_tokens=True).strip()
    return answers
