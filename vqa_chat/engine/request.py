"""One answer's way through the scheduler (batching.py): the request a chat submits (its LM input is a
types.Inputs, built by the engine in one call for many requests), and the handle the chat reads its
answer's text from (`Generation`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.decoding import Sampler, TextStream
from vqa_chat.engine.types import GenerationSettings, Inputs, TokenLog

DONE = object()  # the last item of a request's queue when its answer ended well


@dataclass(eq=False)
class Request:
    inputs: Inputs  # how to build `embeds` and `prompt_ids` (on the engine's thread, batched)
    settings: GenerationSettings
    prompt_ids: list[int] | None = None  # for the no-echo rule
    stop: threading.Event | None = None  # the chat's Stop button
    state: kvlib.PrefixCache | None = None  # reused and refreshed; None = no reuse
    log: TokenLog | None = None  # filled with the answer's token log-probs as they are chosen
    retry_min_new_tokens: int = 0  # > 0 only on the empty-answer retry: EOS is forbidden this long
    embeds: torch.Tensor | None = None  # [T, D] the whole LM input of this turn, once built
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)  # the reader went away
    # running state (init=False: a fresh one for a retry made with dataclasses.replace)
    generated: list[int] = field(init=False, default_factory=list)
    fed: list[torch.Tensor] = field(init=False, default_factory=list)  # generated tokens' embeddings, [D]
    n_real: int = field(init=False, default=0)  # KV positions of this row (its prompt + tokens fed back)
    sampler: Sampler | None = field(init=False, default=None)
    text: TextStream | None = field(init=False, default=None)
    stopped: bool = field(init=False, default=False)
    done: bool = field(init=False, default=False)  # its reader got the end (or an error)

    def halted(self) -> bool:
        return self.cancelled.is_set() or (self.stop is not None and self.stop.is_set())


class Generation:
    """What `Scheduler.submit` returns: iterate it for the answer's text."""

    def __init__(self, request: Request):
        self.request = request

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                item = self.request.out.get()
                if item is DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.request.cancelled.set()  # reader gone (or done): the row leaves at the next step
