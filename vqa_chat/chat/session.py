"""One browser tab's (or API client's) chat: the thin part that ties the others together and answers one
question at a time, with a Stop button.

The parts, each with one job: the turns and prompts (conversation.py), the wait for a backend
(loading.py), the picture with its cached encodings and photo facts (image_slot.py), which source answers
and what is checked afterwards (answer_router.py), the files it keeps (session_files.py), how the chat is
shown (render.py). No Gradio in here: a `ChatSession` lives in a `gr.State` (ui/page.py, ui/api.py), one
per session; the backends are shared by all. `ask()` is a generator: it changes the session in place (a
stopped or cancelled answer keeps what was generated) and yields a short status line at most every
UPDATE_INTERVAL seconds while tokens stream in. What the user did wrong, or what failed, is written into
the chat and raised as `ChatError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from vqa_chat.backends import label
from vqa_chat.backends.base import Backend
from vqa_chat.chat import answer_router, describe, heatmap, privacy
from vqa_chat.chat.conversation import Conversation, ConversationError, Turn, clean_question
from vqa_chat.chat.images import ImageError, load_image
from vqa_chat.chat.loading import LoadFailed, load_backend
from vqa_chat.chat.notes import ChatError, Note, failure_message, short
from vqa_chat.chat.render import transcript
from vqa_chat.chat.session_files import SessionFiles
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.photo.facts import PhotoFacts

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 0.08  # seconds between streamed updates: not one per token (gradio issue 6847)

_busy_lock = threading.Lock()


@dataclass
class ChatSession:
    conversation: Conversation = field(default_factory=Conversation)
    log: list[Turn | Note] = field(default_factory=list)  # the visible chat, oldest first
    image_source: str | None = None  # the upload it came from: the same path again keeps the image
    kv: dict[str, object] = field(default_factory=dict)  # backend -> its state for this image (new_state)
    pending: Turn | None = None  # the turn being answered right now
    stop_event: threading.Event | None = None  # set by stop(); exists only while a question is being answered
    busy: bool = False
    last_backend: str | None = None
    files: SessionFiles = field(default_factory=SessionFiles)
    log_id: str | None = None  # set on the first logged turn, only with --log-dir (privacy.py)
    session_id: str | None = None  # Gradio's session hash (lifetime.py binds it)
    ended_message: str | None = None  # this session replaces one that ended idle: said until a new image
    _finalizer: weakref.finalize | None = None  # frees `files` if the session is dropped unclosed

    # -- what it holds ----------------------------------------------------------------------------------

    @property
    def image(self) -> Image.Image | None:
        """The current picture, cleaned by images.load_image (read back from disk if the cache dropped it)."""
        return self.files.slot.image if self.files.slot is not None else None

    @property
    def embeds(self) -> dict[str, torch.Tensor]:
        """backend -> its cached encoding of the current picture (those the cache still holds)."""
        return self.files.slot.all_features if self.files.slot is not None else {}

    @property
    def thumbnails(self) -> list[str]:
        return self.files.thumbnails

    @property
    def uploads(self) -> list[str]:
        return self.files.uploads

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
        return transcript(self.log)

    def history(self) -> list[dict]:
        return self.conversation.history()

    def last_answered(self) -> Turn | None:
        """The newest finished turn about the current image, or None."""
        return self.conversation.last_answered(self.pending)

    def set_image(self, source: str) -> None:
        """Load a new picture: it starts a new segment of the conversation. Raises ChatError if unusable."""
        notes: list[str] = []
        try:
            image = load_image(source, notes=notes)  # metadata (EXIF, GPS) is gone from here on
        except ImageError as e:
            raise self.fail(str(e)) from e
        if self._finalizer is None:
            self._finalizer = weakref.finalize(self, self.files.close)
        had_image = self.files.slot is not None
        thumbnail = self.files.take_picture(source, image)
        size = f"{image.width}×{image.height} pixels"
        self.log.append(Note(f"Your image ({size})", role="user", image=thumbnail))
        left_behind = self.conversation.new_segment()
        self.image_source, self.kv, self.ended_message = source, {}, None
        for text in notes:
            self.note(text)
        if had_image:
            turns = "turn" if left_behind == 1 else "turns"
            earlier = f" The {left_behind} earlier {turns} stay in the chat but are not part of the prompt."
            self.note("New image: I'll answer about this one." + (earlier if left_behind else ""))

    # -- asking -----------------------------------------------------------------------------------------

    def ask(self, image_source: str | None, question: str | None, backend: str, settings: GenerationSettings,
            mode: str = "ask") -> Iterator[str]:  # fmt: skip
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

    def describe(self, image_source: str | None, backend: str, settings: GenerationSettings) -> Iterator[str]:
        """Describe the image in detail (a turn like any other: follow-ups continue from it)."""
        yield from self.ask(image_source, describe.describe_question(), backend, settings, "describe")

    def regenerate(self, backend: str, settings: GenerationSettings) -> Iterator[str]:
        """Answer the last question again (replacing its answer when it is about the current image)."""
        turns = self.conversation.turns
        if not turns:
            raise self.fail("There is no answer to regenerate yet. Ask a question first.")
        last = turns[-1]
        if last.segment == self.conversation.segment and not self.busy:
            self.conversation.remove(last)
            self.log = [item for item in self.log if item is not last]
        yield from self.ask(None, last.question, backend, settings, last.mode)

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
        self.image_source, self.last_backend, self.kv = None, None, {}

    def close(self) -> None:
        """Free the picture, its cached features and facts, and delete this session's files."""
        self.files.close()

    def end(self) -> None:
        """The session is over (idle, or its tab closed: lifetime.py): free everything it held."""
        self.reset()

    def delete(self) -> None:
        """Delete my session: images, cached image features, history and files, all at once."""
        self.reset()
        self.log_id = None

    def _ask(self, image_source, question, name, settings, mode="ask") -> Iterator[str]:
        try:
            question, length_note = clean_question(question)
        except ConversationError as e:
            raise self.fail(str(e)) from e
        if image_source and image_source != self.image_source:
            if self.ended_message and not os.path.exists(image_source):  # the old chat's photo is gone
                raise self.fail(self.ended_message, question)
            self.set_image(image_source)
        slot = self.files.slot
        if slot is None:
            message = self.ended_message or "Please add an image first (upload, webcam or paste), then ask."
            raise self.fail(message, question)
        try:
            backend = yield from load_backend(name, question, self.log)
        except LoadFailed as e:
            raise self.fail(str(e), question) from e
        if slot.features(name) is None:
            yield "Looking at the image…"
        try:
            encoding = slot.encode(name, backend)
        except Exception as e:
            log.exception("encode_image failed")
            raise self.fail(f"The {label(name)} model could not read the image: {short(e)}") from e
        budget = backend.context_length - backend.num_image_tokens - settings.max_new_tokens
        try:
            prompt, dropped = self.conversation.build_prompt(question, backend.count_tokens_batch, budget)
        except ConversationError as e:
            raise self.fail(str(e), question) from e
        if length_note:
            self.note(length_note)
        if self.last_backend and name != self.last_backend:
            self.note(f"Now answering with the {label(name)} backend.")
        self.last_backend = name
        if dropped:
            turns = "turn" if dropped == 1 else "turns"
            left_out = f"the {dropped} oldest {turns} about this image were left out"
            self.note(f"To fit the model's context, {left_out}.")
        yield from self._answer(backend, name, encoding, prompt, question, settings, mode)

    def _answer(self, backend: Backend, name, encoding, prompt, question, settings, mode) -> Iterator[str]:
        """Add the turn and stream its answer from the source the router chose; then check it and log it."""
        turn = self.conversation.add_turn(question, name, mode)
        turn.prompt = prompt
        self.log.append(turn)
        stop = self.stop_event or threading.Event()
        self.pending, self.stop_event = turn, stop
        yield "Answering…"
        last = time.monotonic()
        if name not in self.kv:  # this image's reusable state on the backend (e.g. its prefix KV cache)
            self.kv[name] = backend.new_state()
        state = self.kv[name]
        plan = yield from answer_router.route(backend, self.files.slot, turn, encoding, settings, stop, state)
        try:
            pieces = iter(()) if stop.is_set() else plan.pieces  # stopped before the answer began
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
            message = failure_message(e)
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
        if turn.source == answer_router.MODEL and not turn.stopped:
            yield from answer_router.check(turn, backend, encoding, plan, self.files.slot)
        self.log_turn(turn)
        yield "Stopped." if turn.stopped else "Done."

    def photo_facts(self) -> PhotoFacts:
        """What the offline parts measured in the current image, computed once per image while the image
        cache holds them (also the /facts API). Raises ChatError without an image."""
        if self.files.slot is None:
            raise ChatError(self.ended_message or "There is no image yet: add one first.")
        return self.files.slot.photo_facts()

    def log_turn(self, turn: Turn) -> None:
        """Record the turn only when the app runs with --log-dir (privacy.py)."""
        if privacy.log_dir() is None:
            return
        if self.log_id is None:
            self.log_id = privacy.new_id()
        key = f"{turn.segment}-{id(self.files.slot) & 0xFFFFFF:06x}"
        try:
            privacy.record(self.log_id, turn, self.image, key, turn.mode)
        except OSError:
            log.exception("could not write the chat log")

    def heatmap_for(self, backend: Backend) -> tuple[str, str]:
        """(file of the heatmap picture, its text alternative) for the last answer about the current image,
        or for the backend's own heatmap prompt before any. ValueError (user-readable) when there is none."""
        if self.image is None:
            raise ValueError("Add an image and ask a question first; then I can show where the model looked.")
        encoding = self.embeds.get(backend.name)
        image, alt = heatmap.for_turn(backend, self.image, self.last_answered(), encoding)
        return self.files.keep_picture(image, "heatmap"), alt
