"""The visible chat's lines that are not turns (pictures, notices, errors), and the messages users read
when something went wrong."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vqa_chat.engine.types import BusyError


class ChatError(Exception):
    """A request that was refused or failed; the message is already in the chat and is user-readable."""


@dataclass(eq=False)
class Note:
    """A chat line that is not a question/answer turn: an image, a notice, an error."""

    text: str
    role: str = "assistant"
    image: str | None = None  # path of a picture to show instead of text
    error: bool = False


def short(e: BaseException, limit: int = 400) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_message(e: BaseException) -> str:
    """What the chat says when answering failed: busy, out of memory, or the error's first line."""
    if isinstance(e, BusyError):
        return str(e)
    if isinstance(e, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(e).lower():
        return (
            f"The model ran out of memory while answering ({short(e, 120)}). Your chat is kept: ask again, "
            "perhaps with fewer Max new tokens."
        )
    return f"Generating the answer failed: {short(e)}"
