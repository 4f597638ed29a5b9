"""The app's API for scripts (gradio_client): /ask, /describe, /facts, /history, /chat, /reset, /stop.

Each gradio_client `Client` is its own session, like a browser tab: the same `gr.State` (page.py), bound
to the request's session hash and handed back as an output so that its idle clock restarts (lifetime.py).
Answers come back as plain text, exactly as the chat says them (photo text unescaped).
"""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from vqa_chat.chat.lifetime import Lifetime
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings


def _settings(max_new_tokens) -> GenerationSettings:
    defaults = GenerationSettings()
    return replace(defaults, max_new_tokens=int(max_new_tokens or defaults.max_new_tokens))


def add_api(session: gr.State, default_backend: str, live: Lifetime, concurrency: int) -> None:
    """The endpoints, on hidden components of the page being built."""
    with gr.Column(visible=False):
        image = gr.File(label="image", type="filepath")
        question = gr.Textbox(label="question")
        backend = gr.Textbox(label="backend", value=default_backend)
        max_new_tokens = gr.Number(
            label="max_new_tokens", value=GenerationSettings().max_new_tokens, precision=0
        )
        answer = gr.Textbox(label="answer")
        history = gr.JSON(label="history")
        trigger = gr.Button("api")

    def answer_stream(s: ChatSession, steps):
        """The answer's text as it grows, then in full as the chat shows it (hedged, with facts' notes)."""
        turn = None
        try:
            for _ in steps:
                turn = s.pending or turn
                yield s, turn.answer if turn else ""
        except ChatError as e:
            raise gr.Error(str(e), print_exception=False) from None
        yield s, turn.said() if turn else ""

    def ask(s: ChatSession, request: gr.Request, image=None, question="", backend=default_backend,
            max_new_tokens=None):  # fmt: skip
        """Ask about `image` (None keeps the session's image); streams the answer text."""
        s = live.bind(s, request.session_hash)
        steps = s.ask(image, question, backend or default_backend, _settings(max_new_tokens))
        yield from answer_stream(s, steps)

    def describe(s: ChatSession, request: gr.Request, image=None, backend=default_backend):
        """Describe `image` (None: the session's image) in detail; streamed, and a turn of the chat."""
        s = live.bind(s, request.session_hash)
        yield from answer_stream(s, s.describe(image, backend or default_backend, _settings(None)))

    def facts(s: ChatSession, request: gr.Request, image=None):
        """What the offline parts measured in `image` (None: the session's image), as JSON."""
        s = live.bind(s, request.session_hash)
        try:
            if image and image != s.image_source:
                s.set_image(image)
            return s, s.photo_facts().to_json()
        except ChatError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def get_history(s: ChatSession, request: gr.Request):
        """The session's turns as a list of {"question", "answer", "backend", ...}."""
        return live.bind(s, request.session_hash), s.history()

    def get_chat(s: ChatSession, request: gr.Request):
        """The visible chat, notices and error messages included, as a list of {"role", "text"}."""
        return live.bind(s, request.session_hash), s.transcript()

    def reset(s: ChatSession, request: gr.Request):
        """Start a new chat in this session."""
        live.bind(s, request.session_hash).reset()
        return s, "New chat started."

    def stop(s: ChatSession, request: gr.Request):
        """Stop the answer being generated in this session; it keeps the text generated so far."""
        return live.bind(s, request.session_hash), "Stopping." if s.stop() else "Nothing to stop."

    # every event of the "generate" group must name the limit: Gradio lowers a group's limit to the smallest
    # of its events', and an event without one counts as the queue's default (4), capping all answers at 4
    generate = dict(concurrency_id="generate", concurrency_limit=concurrency)
    asked = [session, image, question, backend, max_new_tokens]
    trigger.click(ask, asked, [session, answer], api_name="ask", **generate)
    trigger.click(describe, [session, image, backend], [session, answer], api_name="describe", **generate)
    trigger.click(facts, [session, image], [session, history], api_name="facts", **generate)
    trigger.click(get_history, session, [session, history], api_name="history", concurrency_limit=None)
    trigger.click(get_chat, session, [session, history], api_name="chat", concurrency_limit=None)
    trigger.click(reset, session, [session, answer], api_name="reset", concurrency_limit=None)
    trigger.click(stop, session, [session, answer], api_name="stop", queue=False)
