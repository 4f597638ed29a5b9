"""One browser tab's (or API client's) chat: its image, turns, cached image tokens and Stop button.

Shared by the Gradio UI and the API endpoints (ui.py), with no Gradio in here. A `ChatSession` lives in a
`gr.State`, so every session has its own; the backends it talks to are shared by all sessions.
`ask()` is a generator: it changes the session in place (so a stopped or cancelled answer keeps what was
generated) and yields a short status line at most every UPDATE_INTERVAL seconds while tokens stream in.
Anything the user did wrong or that failed is written into the chat and raised as `ChatError`. Around an
answer: describe mode (describe.py), the confidence check (confidence.py), opt-in logging (privacy.py) and
the "where the model looked" heatmap (heatmap.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from PIL import Image

from vqa_chat import backends
from vqa_chat.backends import label
from vqa_chat.backends.base import Backend
from vqa_chat.chat import confidence, describe, heatmap, privacy
from vqa_chat.chat.conversation import Conversation, ConversationError, Turn, clean_question
from vqa_chat.chat.image_slot import ImageSlot
from vqa_chat.chat.images import ImageError, load_image
from vqa_chat.chat.notes import ChatError, Note, failure_message, short, transcript
from vqa_chat.engine.types import GenerationSettings, TokenLog
from vqa_chat.photo import answers
from vqa_chat.photo import facts as photo
from vqa_chat.photo.facts import PhotoFacts

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 0.08  # seconds between streamed updates: not one per token (gradio issue 6847)
THUMB_DIR = privacy.temp_dir()  # metadata-free copies of the images, shown in the chat; removed at exit
THUMB_SIDE = 384
HEATMAP_SIDE = 512  # the heatmap picture's longest side

_busy_lock = threading.Lock()


@dataclass
class SessionFiles:
    """What a session holds outside its own small object: the chat's thumbnails and heatmaps, the scrubbed
    uploads, and the image slot (the picture's copy on disk, its cached features and facts). `close` frees
    them all; it also runs when Gradio drops a session without telling us (the session's finaliser)."""

    thumbnails: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)  # uploads it holds (privacy.hold_upload)
    slot: ImageSlot | None = None

    def close(self) -> None:
        for path in self.thumbnails:
            with contextlib.suppress(OSError):
                os.remove(path)
        for path in self.uploads:
            privacy.release_upload(path)
        self.thumbnails, self.uploads = [], []
        if self.slot is not None:
            self.slot.close()
            self.slot = None


@dataclass
class ChatSession:
    conversation: Conversation = field(default_factory=Conversation)
    log: list[Turn | Note] = field(default_factory=list)  # the visible chat, oldest first
    image_source: str | None = None  # the upload it came from: the same path again keeps the image
    kv: dict[str, object] = field(default_factory=dict)  # backend -> its conversation state (prefix KV cache)
    pending: Turn | None = None  # the turn being answered right now
    stop_event: threading.Event | None = None  # set by stop(); exists only while a question is being answered
    busy: bool = False
    last_backend: str | None = None
    files: SessionFiles = field(default_factory=SessionFiles)
    log_id: str | None = None  # set on the first logged turn, only with --log-dir (privacy.py)
    session_id: str | None = None  # Gradio's session hash (lifetime.py binds it)
    ended_message: str | None = None  # this session replaces one that ended idle: said until a new image
    _finalizer: weakref.finalize | None = None  # frees `files` if the session is dropped unclosed

    # -- the current picture (image_slot.py: kept within the shared image cache budget) ------------------

    @property
    def image(self) -> Image.Image | None:
        """The current picture, cleaned by images.load_image (read back from disk if the cache dropped it)."""
        return self.files.slot.image if self.files.slot is not None else None

    @property
    def embeds(self) -> dict[str, torch.Tensor]:
        """backend -> its cached image tokens of the current picture (those the cache still holds)."""
        return self.files.slot.all_features if self.files.slot is not None else {}

    @property
    def facts(self) -> PhotoFacts | None:
        """What photo/facts.py measured in the current picture, if computed and still cached."""
        return self.files.slot.facts if self.files.slot is not None else None

    @property
    def thumbnails(self) -> list[str]:
        return self.files.thumbnails

    @property
    def uploads(self) -> list[str]:
        return self.files.uploads

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
        return transcript(self.log)

    def history(self) -> list[dict]:
        return self.conversation.history()

    def last_answered(self) -> Turn | None:
        """The newest finished turn about the current image, or None."""
        for turn in reversed(self.conversation.segment_turns()):
            if turn.answer.strip() and turn is not self.pending:
                return turn
        return None

    # -- images -----------------------------------------------------------------------------------------

    def set_image(self, source: str) -> None:
        """Load a new picture: it starts a new segment of the conversation. Raises ChatError if unusable."""
        notes: list[str] = []
        try:
            image = load_image(source, notes=notes)  # metadata (EXIF, GPS) is gone from here on
        except ImageError as e:
            raise self.fail(str(e)) from e
        if self._finalizer is None:
            self._finalizer = weakref.finalize(self, self.files.close)
        held = privacy.hold_upload(source, image)
        if held is not None:
            self.uploads.append(held)
        thumb = privacy.save_thumbnail(image, THUMB_DIR, THUMB_SIDE)
        self.thumbnails.append(thumb)
        self.log.append(
            Note(text=f"Your image ({image.width}×{image.height} pixels)", role="user", image=thumb)
        )
        had_image = self.files.slot is not None
        left_behind = self.conversation.new_segment()
        if self.files.slot is not None:
            self.files.slot.close()
        self.files.slot = ImageSlot(image, THUMB_DIR)
        self.image_source, self.kv, self.ended_message = source, {}, None
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

    def describe(self, image_source: str | None, backend: str, settings: GenerationSettings) -> Iterator[str]:
        """Describe the image in detail (a turn like any other: follow-ups continue from it)."""
        yield from self.ask(image_source, describe.describe_question(), backend, settings, "describe")

    def delete(self) -> None:
        """Delete my session: images, cached image features, history and files, all at once."""
        self.reset()
        self.log_id = None

    def _ask(self, image_source, question, backend_name, settings, mode="ask") -> Iterator[str]:
        try:
            question, length_note = clean_question(question)
        except ConversationError as e:
            raise self.fail(str(e)) from e
        if image_source and image_source != self.image_source:
            if self.ended_message and not os.path.exists(image_source):  # the old chat's photo is gone
                raise self.fail(self.ended_message, question)
            self.set_image(image_source)
        if self.files.slot is None:
            message = self.ended_message or "Please add an image first (upload, webcam or paste), then ask."
            raise self.fail(message, question)
        backend = yield from self._load_backend(backend_name, question)
        embeds = self.files.slot.features(backend_name)
        if embeds is None:
            yield "Looking at the image…"
            try:
                embeds = backend.encode_image(self.image)
                self.files.slot.keep_features(backend_name, embeds)
            except Exception as e:
                log.exception("encode_image failed")
                raise self.fail(
                    f"The {label(backend_name)} model could not read the image: {short(e)}"
                ) from e
        budget = backend.context_length - backend.num_image_tokens - settings.max_new_tokens
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
        """Get the shared backend (a generator returning it). While it loads (first use, or the app's load at
        start), the question is in the chat at once, with a notice and a "Loading" status."""
        placeholders: list[Note] = []
        if not backends.is_loaded(name):
            asked = self.note(question, role="user")  # shown now; the turn takes its place once loaded
            loading = self.note(f"Loading the {label(name)} backend; I'll answer as soon as it is ready…")
            placeholders = [asked, loading]
            yield f"Loading the {label(name)} backend. Your question will be answered when it is ready."
        start = time.monotonic()
        try:
            backend = backends.get_backend(name)
        except Exception as e:
            log.exception("backend %s failed to load", name)
            self.log = [item for item in self.log if item not in placeholders]
            other = " or ".join(backends.others(name))
            raise self.fail(
                f"The {label(name)} backend could not be loaded ({short(e)}). "
                f"Your chat is kept: choose another Backend ({other}) and ask again.",
                question,
            ) from e
        seconds = time.monotonic() - start
        if placeholders:  # the turn shows the question from now on; a slow load keeps a notice of it
            self.log = [item for item in self.log if item is not placeholders[0]]
            if seconds < 1:
                self.log = [item for item in self.log if item is not placeholders[1]]
            else:
                placeholders[1].text = f"{label(name)} backend ready after {seconds:.0f} s."
        return backend

    def _generate(self, backend: Backend, backend_name, embeds, prompt, question, settings, mode="ask"):
        turn = self.conversation.add_turn(question, backend_name, mode)
        turn.prompt = prompt
        self.log.append(turn)
        stop = self.stop_event or threading.Event()
        self.pending, self.stop_event = turn, stop
        yield "Answering…"
        last = time.monotonic()
        if backend_name not in self.kv:  # this image's reusable LM state (kv.PrefixCache), if supported
            self.kv[backend_name] = backend.new_state()
        state = self.kv[backend_name]
        scores = TokenLog()  # the answer's token log-probs, recorded as it streams (the confidence check)
        description = None  # describe mode on BLIP-2: composed of several short answers (describe.py)
        if mode == "describe" and backend.capabilities.composes_descriptions:
            description = describe.blip2_description(backend, embeds, settings, stop)
        known = backend.knows(embeds, self.image, question if mode == "ask" else None)
        advise = not known.own_kind  # a picture of the model's own kind (a drawing) is no photo to retake
        if not known.model_answers:
            turn.source = "photo facts"  # not what the model knows: answered from measured facts instead
            facts = yield from self._facts()
            if facts is None:
                instead = backends.any_photo_instead(backend_name)
                said = f"I can't look at this photo offline right now; the {instead} backend can."
            elif mode == "describe":
                said = answers.describe(facts)
            else:
                said = answers.answer(question, facts, advise=advise)
        try:
            if stop.is_set():  # stopped before the answer began (while loading or reading the image)
                pieces = iter(())
            elif turn.source == "photo facts":
                pieces = iter([said])  # composed at once: nothing to stream
            elif description is not None:
                pieces = description
            else:
                pieces = backend.stream(embeds, prompt, settings, stop, state=state, log=scores)
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
        if turn.source == "model" and not turn.stopped:
            yield from self._check(turn, backend, embeds, prompt, description, scores, advise)
        self.log_turn(turn)
        yield "Stopped." if turn.stopped else "Done."

    def _check(
        self, turn: Turn, backend: Backend, embeds, prompt: str, description, scores: TokenLog, advise: bool
    ) -> Iterator[str]:
        """After a model's answer: how sure it was (from `scores`, recorded while it streamed), its other
        likely answers, and from the photo's facts the text a description missed and retake advice (only
        when light or sharpness call for it)."""
        if description is None:
            confidence.check(turn, backend.name, scores.logprobs)
        else:  # a composed description is judged by its caption, its main sentence, scored afterwards
            caption = describe.blip2_templates()["caption"]
            confidence.check_given(turn, backend, embeds, caption, description.caption)
        if turn.mode == "ask":
            top = backend.top_answers(embeds, prompt)
            turn.alternatives = [(a, p) for a, p in top if a != turn.answer.lower()][:4]
        if turn.mode == "describe" or (turn.unsure and advise):
            facts = yield from self._facts()
            if facts is not None and turn.mode == "describe":
                turn.facts_note = answers.describe_extras(facts, advise)
            elif facts is not None:
                turn.facts_note = answers.retake_advice(facts) or ""

    def _facts(self) -> Iterator[str]:
        """The current image's photo facts, computed once (a generator returning them, or None if that
        failed: the answer is kept, only what the facts would add is missing)."""
        facts = self.facts
        if facts is None:
            yield "Looking at the photo…"
            try:
                facts = self.photo_facts()
            except Exception:
                log.exception("photo facts failed")
        return facts

    def photo_facts(self) -> PhotoFacts:
        """What the offline parts measured in the current image, computed once per image while the image
        cache holds them (also the /facts API). Raises ChatError without an image."""
        slot = self.files.slot
        if slot is None:
            raise ChatError(self.ended_message or "There is no image yet: add one first.")
        facts = slot.facts
        if facts is None:
            facts = photo.photo_facts(slot.image)
            slot.keep_facts(facts)
        return facts

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

    # -- where the model looked -------------------------------------------------------------------------

    def heatmap_for(self, backend: Backend) -> tuple[str, str]:
        """(file of the heatmap picture, its text alternative) for the last answer about the current image.

        Raises ValueError with a user-readable message when there is nothing to show."""
        if self.image is None:
            raise ValueError("Add an image and ask a question first; then I can show where the model looked.")
        turn = self.last_answered()
        prompt, picture = turn.prompt if turn else backend.heatmap_prompt, self.image.copy()
        picture.thumbnail((HEATMAP_SIDE, HEATMAP_SIDE))
        image, alt = heatmap.heatmap_image(backend, picture, prompt, self.embeds.get(backend.name))
        if turn is not None:
            alt += f' It is for the answer to "{turn.question}".'
        THUMB_DIR.mkdir(parents=True, exist_ok=True)
        path = THUMB_DIR / f"heatmap-{uuid.uuid4().hex}.png"
        image.save(path)
        self.thumbnails.append(str(path))  # deleted with the session's other files
        return str(path), alt
