"""Continuous batching: one thread runs the LM for every chat that is answering right now.

Each chat submits its whole LM input (image tokens + prompt: embeddings [T, D], built already or built
here: types.Inputs) and reads its answer's text back, piece by piece, from its own queue. The scheduler
thread loops:

    admit waiting chats (up to max_batch):  build their LM inputs (`Inputs`: one batched call per builder,
                                            e.g. the custom model's Q-Former for all new questions), prefill
                                            them all in one forward (each only the positions its PrefixCache
                                            lacks, padded, with its own mask and positions), choose their
                                            first tokens, add their KV rows to the batch
    one decode step for the whole batch:    inputs_embeds [B, 1, D], left-padded KV [B, H, L, d],
                                            attention mask [B, L + 1], per-row positions [B, 1]
    per row: next token (its own settings), text to its queue; finished rows leave the batch and their KV
    goes back into their PrefixCache, ready for the next turn

New chats join between two steps, finished ones leave; nobody waits for a whole batch to end. Rows never
see each other: each attends only to its own positions (mask), and has its own position ids, processors,
stop event, queue and cache. The first token, a failure or a "busy" refusal reach the chat the same way.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import torch

from vqa_chat.engine import allocator
from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.decoding import Sampler, TextStream
from vqa_chat.engine.generation import eos_ids, retry_min_new_tokens
from vqa_chat.engine.padding import left_mask
from vqa_chat.engine.prefill import prefill
from vqa_chat.engine.request import DONE, Generation, Request
from vqa_chat.engine.threads import SCHEDULER_THREAD, threads
from vqa_chat.engine.types import BusyError, GenerationSettings, Inputs, TokenLog

log = logging.getLogger(__name__)
_schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Let scheduler threads finish their step before the interpreter tears torch down under them."""
    for scheduler in list(_schedulers):
        scheduler.close()


class Scheduler:
    """Batches the decoding of all chats on one causal LM (one instance per loaded backend)."""

    def __init__(
        self, lm, tokenizer, max_batch: int = 16, max_waiting: int = 64, decode_lm=None, threads: int = 0
    ):
        self.lm, self.tokenizer = lm, tokenizer
        self.threads = threads  # CPU threads of this engine's work (0 = torch's setting), see threads.py
        self.decode_lm = decode_lm or lm  # decode steps (an int8 copy with --quantize int8); prefill: lm
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.eos = eos_ids(lm)
        self.top_k = getattr(getattr(lm, "generation_config", None), "top_k", None) or 50
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []
        self.cache = None  # DynamicCache of the active rows, [B, H, L, d] per layer
        self.cv = threading.Condition()
        self.thread: threading.Thread | None = None
        self.in_flight = 0  # submitted and not yet finished (waiting, prefilling or decoding)
        self.max_rows = 0  # largest batch seen
        self.max_intake = 0  # most new answers prefilled in one forward
        self.closed = False
        _schedulers.add(self)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current step; unfinished answers end with an error."""
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    # ---- the chats' side ----------------------------------------------------------------------------

    def submit(
        self,
        inputs: Inputs,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state: kvlib.PrefixCache | None = None,
        log: TokenLog | None = None,
    ) -> Generation:
        """Queue one answer for its LM input (built on the scheduler thread, batched with others: `_build`);
        `log` gets its token log-probs. Raises BusyError when full."""
        request = Request(inputs, settings, None, stop, state, log)
        with self.cv:
            if self.closed:
                raise RuntimeError("the model is shutting down")
            if self.in_flight >= self.max_batch + self.max_waiting:
                raise BusyError(
                    f"The model is busy right now ({self.in_flight} answers in progress or waiting). "
                    "Please try again in a moment."
                )
            self.in_flight += 1
            self.waiting.append(request)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name=SCHEDULER_THREAD, daemon=True)
                self.thread.start()
            self.cv.notify()
        return Generation(request)

    def load(self) -> tuple[int, int]:
        """(answers in progress or waiting, of which waiting)."""
        with self.cv:
            return self.in_flight, len(self.waiting)

    # ---- the scheduler thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.waiting and not self.active and not self.closed:
                    self.cv.wait()
                if self.closed:
                    for request in [*self.active, *self.waiting]:
                        self._fail(request, RuntimeError("the model is shutting down"))
                    self.active, self.cache = [], None
                    self.waiting.clear()
                    return
                new = []
                while self.waiting and len(self.active) + len(new) < self.max_batch:
                    new.append(self.waiting.popleft())
            try:
                with torch.inference_mode(), threads(self.threads):
                    self._start(self._build(new))
                    if self.active:
                        self._step()
            except BaseException as e:  # never let the thread die: fail the rows, keep serving
                log.exception("decode step failed")
                for request in [*self.active, *new]:
                    self._fail(request, e)  # (a no-op for requests that already finished)
                self.active, self.cache = [], None

    def _build(self, new: list[Request]) -> list[Request]:
        """Build the LM inputs of the new requests (not yet built: a retry's is), one batched call per
        builder; returns the requests ready to prefill (a failed build fails its requests)."""
        groups: dict[Callable, list[Request]] = {}
        for r in new:
            if r.embeds is None:
                groups.setdefault(r.inputs.build, []).append(r)
        for build, rows in groups.items():
            try:
                built = build([r.inputs.item for r in rows])
                for r, (embeds, ids) in zip(rows, built, strict=True):
                    r.embeds, r.prompt_ids = embeds, ids
            except Exception as e:
                for r in rows:
                    self._fail(r, e)
        return [r for r in new if r.embeds is not None and not r.done]

    def _start(self, new: list[Request]) -> None:
        """Prefill new requests together, choose their first tokens, add the unfinished ones to the batch."""
        if not new:
            return
        try:
            reused = [r.state.reuse(r.embeds) if r.state is not None else (None, 0) for r in new]
            rows, logits = prefill(self.lm, [r.embeds for r in new], reused)
            self.max_intake = max(self.max_intake, len(new))
        except Exception as e:
            if len(new) > 1:  # find the one that fails: the others still get their answers
                for r in new:
                    self._start([r])
            else:
                self._fail(new[0], e)
            return
        joining = []
        for r, row, last in zip(new, rows, logits, strict=True):
            try:
                r.n_real = r.embeds.shape[0]
                r.sampler = Sampler(
                    r.settings, self.tokenizer, self.eos, r.prompt_ids,
                    r.retry_min_new_tokens or r.settings.min_new_tokens, self.top_k,
                )  # fmt: skip
                r.text = TextStream(self.tokenizer)
            except Exception as e:
                self._fail(r, e)
                continue
            if self._advance(r, last):
                self._finish(r, row)
            else:
                joining.append((r, row))
        self._join(joining)

    def _join(self, joining: list[tuple[Request, kvlib.KV]]) -> None:
        """Add prefilled rows (request, its KV [1, H, n_real, d]) to the batch, left-padding the shorter."""
        if not joining:
            return
        parts, lengths = [row for _, row in joining], [r.n_real for r, _ in joining]
        if self.cache is not None and self.active:
            batch = kvlib.from_cache(self.cache)
            parts, lengths = [batch, *parts], [kvlib.length(batch), *lengths]
        else:
            self.active = []
        self.cache = kvlib.to_cache(parts[0] if len(parts) == 1 else kvlib.stack(parts, lengths))
        self.active = [*self.active, *(r for r, _ in joining)]
        self.max_rows = max(self.max_rows, len(self.active))

    def _step(self) -> None:
        """One decode step for every active row."""
        rows = self.active
        L = self.cache.get_seq_length()
        embed = self.lm.get_input_embeddings()
        tokens = torch.tensor([r.generated[-1] for r in rows], device=embed.weight.device)  # [B]
        x = embed(tokens)[:, None]  # [B, 1, D]
        # each row's own positions and the new one; zeros on its padding
        mask = left_mask([r.n_real + 1 for r in rows], L + 1, x.device)  # [B, L + 1]
        positions = torch.tensor([[r.n_real] for r in rows], device=x.device)  # [B, 1]
        out = self.decode_lm(inputs_embeds=x, attention_mask=mask, position_ids=positions, cache=self.cache,
                             use_cache=True)  # fmt: skip
        logits = out.logits[:, -1]  # [B, V]
        keep = []
        for i, r in enumerate(rows):
            r.fed.append(x[i, 0])
            r.n_real += 1
            if self._advance(r, logits[i]):
                self._finish(r, kvlib.take(kvlib.from_cache(self.cache), i, r.n_real))
            else:
                keep.append(i)
        if len(keep) < len(rows):
            self.active = [rows[i] for i in keep]
            if not keep:
                self.cache = None
                if not self.waiting:  # idle: hand the freed KV caches' pages back (allocator.py)
                    allocator.release_free_memory()
            else:  # drop the finished rows and the padding columns no remaining row needs
                batch = kvlib.from_cache(self.cache)
                longest = max(r.n_real for r in self.active)
                self.cache = kvlib.to_cache(kvlib.select(batch, keep, kvlib.length(batch) - longest))

    def _advance(self, r: Request, logits: torch.Tensor) -> bool:
        """Choose r's next token and send its text; True when r is finished."""
        if r.halted():
            r.stopped = True
            return True
        token = r.sampler(r.generated, logits)
        if token in self.eos:
            return True
        r.generated.append(token)
        if r.log is not None:
            r.log.add(token, logits)
        piece = r.text.push(token)
        if piece:
            r.out.put(piece)
        return len(r.generated) >= r.settings.max_new_tokens

    def _finish(self, r: Request, row: kvlib.KV) -> None:
        """Send the rest of the text, keep the KV for the next turn, maybe retry an empty answer."""
        piece = r.text.flush()
        if piece:
            r.out.put(piece)
        if r.state is not None:
            fed = [r.embeds, *(f[None] for f in r.fed)]
            r.state.store(torch.cat(fed), row)  # [n_real, D] and its KV
        retry = 0 if r.retry_min_new_tokens else retry_min_new_tokens(r.text.text, r.settings, r.stopped)
        if retry:  # the same reader (queue, cancel event) gets the retry's text
            if r.log is not None:
                r.log.clear()  # the retry's tokens are the answer's
            with self.cv:
                self.waiting.appendleft(replace(r, retry_min_new_tokens=retry))
            return
        self._done(r, DONE)

    def _fail(self, r: Request, error: BaseException) -> None:
        if r.done:
            return
        if r.state is not None:
            r.state.clear()  # it may be half-updated; the next turn starts afresh
        self._done(r, error)

    def _done(self, r: Request, last) -> None:
        with self.cv:
            if r.done:
                return
            r.done = True
            self.in_flight -= 1
        r.out.put(last)
