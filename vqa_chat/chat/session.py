"""One browser tab's (or API client's) chat: its image, turns, cached image tokens and Stop button.

Shared by the Gradio UI and the API endpoints (ui.py), with no Gradio in here. A `ChatSession` lives in a
`gr.State`, so every session has its own; the backends it talks to are shared by all sessions.
`ask()` is a generator: it changes the session in place (so a stopped or cancelled answer keeps what was
generated) and yields a short status line at most every UPDATE_INTERVAL seconds while tokens stream in.
Anything the user did wrong or that failed is written into the chat and raised as `ChatError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from vqa_chat.backends import get_backend
from vqa_chat.backends.base import GenerationSettings
from vqa_chat.chat import privacy, session_extras
from vqa_chat.chat.conversation import Conversation, ConversationError, Turn, clean_question
from vqa_chat.chat.images import ImageError, load_image
from vqa_chat.engine.batching import BusyError

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 0.08  # seconds between streamed updates: not one per token (gradio issue 6847)
BACKEND_LABELS = {"blip2": "BLIP-2", "custom": "Custom", "vllm": "vLLM"}
THUMB_DIR = Path(tempfile.gettempdir()) / "vqa-chat"  # metadata-free copies of the images, shown in the chat
THUMB_SIDE = 384

_ready: set[str] = set()  # backends this process has loaded (to show "Loading..." only when it is slow)
_busy_lock = threading.Lock()


class ChatError(Exception):
    """A request that was refused or failed; the message is already in the chat and is user-readable."""


@dataclass(eq=False)
class Note:
    """A chat line that is not a question/answer turn: an image, a notice, an error."""

    text: str
    role: str = "assistant"
    image: str | None = None  # path of a picture to show instead of text
    error: bool = False


def label(backend: str) -> str:
    return BACKEND_LABELS.get(backend, backend)


def _short(e: BaseException, limit: int = 400) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ChatSession:
    conversation: Conversation = field(default_factory=Conversation)
    log: list[Turn | Note] = field(default_factory=list)  # the visible chat, oldest first
    image: Image.Image | None = None  # the current picture, cleaned by images.load_image
    image_source: str | None = None  # the upload it came from: the same path again keeps the image
    embeds: dict[str, torch.Tensor] = field(default_factory=dict)  # backend -> image tokens of `image`
    kv: dict[str, object] = field(default_factory=dict)  # backend -> its conversation state (prefix KV cache)
    pending: Turn | None = None  # the turn being answered right now
    stop_event: threading.Event | None = None  # set by stop(); exists only while a question is being answered
    busy: bool = False
    last_backend: str | None = None
    thumbnails: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)  # our scrubbed copies in Gradio's cache (privacy.py)
    log_id: str | None = None  # set on the first logged turn, only with --log-dir (privacy.py)

    # -- the visible chat -------------------------------------------------------------------------------

    def note(self, text: str, error: bool = False, role: str = "assistant") -> Note:
        item = Note(text=text, role=role, error=error)
        self.log.append(item)
        return item

    def fail(self, message: str, question: str | None = None) -> ChatError:
        """Put the refused question and the reason in the chat; return the error to raise."""
        if question:
            self.note(question, role="user")
        self.note(message, error=True)
        return ChatError(message)

    def transcript(self) -> list[dict]:
        """The visible chat as plain text lines, {"role", "text"} (the /chat API; images as [image: ...])."""
        lines = []
        for item in self.log:
            if isinstance(item, Turn):
                lines.append({"role": "user", "text": item.question})
                lines.append(
                    {"role": "assistant", "text": item.answer + (" (stopped)" if item.stopped else "")}
                )
            else:
                lines.append(
                    {"role": item.role, "text": f"[image: {item.text}]" if item.image else item.text}
                )
        return lines

    def history(self) -> list[dict]:
        return self.conversation.history()

    # -- images -----------------------------------------------------------------------------------------

    def set_image(self, source: str) -> None:
        """Load a new picture: it starts a new segment of the conversation. Raises ChatError if unusable."""
        notes: list[str] = []
        try:
            image = load_image(source, notes=notes)  # metadata (EXIF, GPS) is gone from here on
        except ImageError as e:
            raise self.fail(str(e)) from e
        if privacy.scrub_upload(source, image):
            self.uploads.append(source)
        thumb = _save_thumbnail(image)
        self.thumbnails.append(thumb)
        self.log.append(
            Note(text=f"Your image ({image.width}×{image.height} pixels)", role="user", image=thumb)
        )
        had_image = self.image is not None
        left_behind = self.conversation.new_segment()
        self.image, self.image_source, self.embeds, self.kv = image, source, {}, {}
        for text in notes:
            self.note(text)
        if had_image:
            msg = "New image: I'll answer about this one."
            if left_behind:
                turns = "turn" if left_behind == 1 else "turns"
                msg += f" The {left_behind} earlier {turns} stay in the chat but are not part of the prompt."
            self.note(msg)

    # -- asking -----------------------------------------------------------------------------------------

    def ask(
        self,
        image_source: str | None,
        question: str | None,
        backend: str,
        settings: GenerationSettings,
        mode: str = "ask",
    ) -> Iterator[str]:
        """Answer `question` (about `image_source` if it is a new upload, else the current image).
        mode="describe": a detailed description (describe.py) as the turn's answer."""
        with _busy_lock:
            if self.busy:
                raise self.fail("I'm still answering the previous question. Wait for it, or press Stop.")
            self.busy = True
            self.stop_event = threading.Event()  # Stop works from now on, while the backend loads, too
        try:
            yield from self._ask(image_source, question, backend, settings, mode)
        finally:
            self.busy, self.stop_event = False, None

    def regenerate(self, backend: str, settings: GenerationSettings) -> Iterator[str]:
        """Answer the last question again (replacing its answer when it is about the current image)."""
        turns = self.conversation.turns
        if not turns:
            raise self.fail("There is no answer to regenerate yet. Ask a question first.")
        last = turns[-1]
        if last.segment == self.conversation.segment and not self.busy:
            self.conversation.remove(last)
            self.log = [item for item in self.log if item is not last]
        mode = "describe" if last.question == session_extras.describe_question() else "ask"
        yield from self.ask(None, last.question, backend, settings, mode)

    def stop(self) -> bool:
        """Stop the answer being generated (it keeps what it has). True if something was running."""
        event = self.stop_event
        if event is None:
            return False
        event.set()
        return True

    def reset(self) -> None:
        """A new chat: forget the image, turns and cached image tokens."""
        self.stop()
        self.close()
        self.conversation, self.log = Conversation(), []
        self.image, self.image_source, self.embeds, self.last_backend = None, None, {}, None
        self.kv = {}

    def close(self) -> None:
        """Delete this session's files (called when Gradio drops the session)."""
        for path in self.thumbnails + self.uploads:
            with contextlib.suppress(OSError):
                os.remove(path)
        self.thumbnails, self.uploads = [], []

    def describe(self, image_source: str | None, backend: str, settings: GenerationSettings) -> Iterator[str]:
        """Describe the image in detail (a turn like any other: follow-ups continue from it)."""
        yield from self.ask(image_source, session_extras.describe_question(), backend, settings, "describe")

    def delete(self) -> None:
        """Delete my session: images, cached image features, history and files, all at once."""
        self.reset()
        self.log_id = None

    def _ask(self, image_source, question, backend_name, settings, mode="ask") -> Iterator[str]:
        if image_source and image_source != self.image_source:
            self.set_image(image_source)
        try:
            question, length_note = clean_question(question)
        except ConversationError as e:
            raise self.fail(str(e)) from e
        if self.image is None:
            raise self.fail(
                "Please add an image first (upload, webcam or paste), then ask your question.", question
            )
        backend = yield from self._load_backend(backend_name, question)
        embeds = self.embeds.get(backend_name)
        if embeds is None:
            yield "Looking at the image…"
            try:
                embeds = self.embeds[backend_name] = backend.encode_image(self.image)
            except Exception as e:
                log.exception("encode_image failed")
                raise self.fail(
                    f"The {label(backend_name)} model could not read the image: {_short(e)}"
                ) from e
        # image tokens the LM sees: `num_image_tokens` when the backend says (the custom backend caches
        # encoder patches, not LM tokens), else the cached tensor's length [1, Q, D]
        image_tokens = getattr(backend, "num_image_tokens", None) or embeds.shape[1]
        budget = backend.context_length - image_tokens - settings.max_new_tokens
        try:
            prompt, dropped = self.conversation.build_prompt(question, backend.count_tokens, budget)
        except ConversationError as e:
            raise self.fail(str(e), question) from e
        if length_note:
            self.note(length_note)
        if self.last_backend and backend_name != self.last_backend:
            self.note(f"Now answering with the {label(backend_name)} backend.")
        self.last_backend = backend_name
        if dropped:
            turns = "turn" if dropped == 1 else "turns"
            self.note(
                f"To fit the model's context, the {dropped} oldest {turns} about this image were left out."
            )
        yield from self._generate(backend, backend_name, embeds, prompt, question, settings, mode)

    def _load_backend(self, name: str, question: str):
        """Get the shared backend, telling the user while a first load is slow (a generator returning it)."""
        loading = None
        if name not in _ready:
            loading = self.note(f"Loading the {label(name)} backend (first use, this can take a while)…")
            yield f"Loading {label(name)}…"
        start = time.monotonic()
        try:
            backend = get_backend(name)
        except Exception as e:
            log.exception("backend %s failed to load", name)
            self.log = [item for item in self.log if item is not loading]
            other = " or ".join(label(b) for b in BACKEND_LABELS if b != name)
            raise self.fail(
                f"The {label(name)} backend could not be loaded ({_short(e)}). "
                f"Your chat is kept: choose another Backend ({other}) and ask again.",
                question,
            ) from e
        _ready.add(name)
        seconds = time.monotonic() - start
        if loading is not None and seconds < 1:  # it was quick (already loaded): no need to keep the note
            self.log = [item for item in self.log if item is not loading]
        elif loading is not None:
            loading.text = f"{label(name)} backend loaded in {seconds:.0f} s."
        return backend

    def _generate(self, backend, backend_name, embeds, prompt, question, settings, mode="ask"):
        turn = self.conversation.add_turn(question, backend_name)
        turn.prompt = prompt
        self.log.append(turn)
        stop = self.stop_event or threading.Event()
        self.pending, self.stop_event = turn, stop
        yield "Answering…"
        last = time.monotonic()
        if backend_name not in self.kv:  # this image's reusable LM state (kv.PrefixCache), if supported
            new_state = getattr(backend, "new_state", None)
            self.kv[backend_name] = new_state() if new_state else None
        state = {"state": self.kv[backend_name]} if self.kv[backend_name] is not None else {}
        try:
            # stopped before the answer began (while loading or reading the image): no answer at all
            pieces = (
                iter(())
                if stop.is_set()
                else session_extras.answer_stream(backend, embeds, prompt, settings, stop, state, mode)
            )
            for piece in pieces:
                turn.answer += piece
                if time.monotonic() - last >= UPDATE_INTERVAL:
                    last = time.monotonic()
                    yield "Answering…"
            turn.stopped = stop.is_set()
        except GeneratorExit:  # the request was cancelled: keep the partial answer
            turn.stopped = True
            raise
        except Exception as e:
            log.exception("generation failed")
            message = _failure_message(e)
            if turn.answer.strip():  # keep what was generated, marked as cut short
                turn.stopped = True
                raise self.fail(message) from e
            self.conversation.remove(turn)
            self.log.remove(turn)
            raise self.fail(message, question) from e
        finally:
            stop.set()  # ends the backend's generation thread if we leave early
            turn.answer = turn.answer.strip()
            if self.stop_event is stop:
                self.pending, self.stop_event = None, None
        if not turn.stopped:
            session_extras.check_confidence(backend, embeds, turn, pieces)
        session_extras.log_turn(self, turn, mode)
        yield "Stopped." if turn.stopped else "Done."


def _failure_message(e: BaseException) -> str:
    """What the chat says when answering failed: busy, out of memory, or the error's first line."""
    if isinstance(e, BusyError):
        return str(e)
    if isinstance(e, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(e).lower():
        return (
            f"The model ran out of memory while answering ({_short(e, 120)}). Your chat is kept: ask again, "
            "perhaps with fewer Max new tokens."
        )
    return f"Generating the answer failed: {_short(e)}"


def _save_thumbnail(image: Image.Image) -> str:
    THUMB_DIR.mkdir(parents=True, exist_ok=True)
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    path = THUMB_DIR / f"{uuid.uuid4().hex}.jpg"
    thumb.save(path, quality=85)
    return str(path)
