"""What each control of the chat page does: the page's events, wired to the session (chat/session.py).

Every event first binds the tab's `ChatSession` to its Gradio session hash (chat/lifetime.py) and hands
the session back as an output, so that its idle clock restarts; asking, describing and regenerating stream
the chat as it grows (handlers.py), the rest answer at once.
"""

from __future__ import annotations

import gradio as gr

from vqa_chat.chat.lifetime import Lifetime
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ui import a11y, handlers
from vqa_chat.ui.layout import DEFAULTS, SAMPLING, START_DECODING, Page
from vqa_chat.ui.markdown import chat_messages


def upload_path(payload) -> str | None:
    """The uploaded file behind an Image payload, unopened: images.load_image checks and cleans it, so a bad
    file gets our message in the chat (Gradio's own preprocessing would raise a generic error)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload or None


def settings_from(
    max_new_tokens,
    decoding=START_DECODING,
    temperature=DEFAULTS.temperature,
    top_p=DEFAULTS.top_p,
    beams=DEFAULTS.num_beams,
) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=int(max_new_tokens or DEFAULTS.max_new_tokens),
        do_sample=decoding == SAMPLING,
        temperature=float(temperature),
        top_p=float(top_p),
        num_beams=int(beams),
    )


def stream_to_chat(session: ChatSession, steps):
    """Run one of the session's generators for the UI: yields (session, chat, question box, status,
    announce, last answer); see handlers.stream_with_announcements. Every update hands the session back to
    its gr.State, so a session that is answering never counts as idle."""
    for outputs in handlers.stream_with_announcements(session, steps, chat_messages):
        yield session, *outputs


def wire(page: Page, session: gr.State, live: Lifetime, concurrency: int) -> None:
    """Connect the page's controls to the session, inside the `gr.Blocks` being built."""
    p = page
    ui_outputs = [session, p.chat, p.question, p.status, p.announce, p.last_answer]
    run = dict(concurrency_id="generate", concurrency_limit=concurrency, api_visibility="private")

    def on_ask(s: ChatSession, request: gr.Request, image_payload, text, backend_name, *settings):
        s = live.bind(s, request.session_hash)
        steps = s.ask(upload_path(image_payload), text, backend_name, settings_from(*settings))
        yield from stream_to_chat(s, steps)

    def on_describe(s: ChatSession, request: gr.Request, image_payload, backend_name, *settings):
        s = live.bind(s, request.session_hash)
        steps = s.describe(upload_path(image_payload), backend_name, settings_from(*settings))
        yield from stream_to_chat(s, steps)

    def on_regenerate(s: ChatSession, request: gr.Request, backend_name, *settings):
        s = live.bind(s, request.session_hash)
        yield from stream_to_chat(s, s.regenerate(backend_name, settings_from(*settings)))

    def on_stop(s: ChatSession, request: gr.Request) -> ChatSession:
        live.bind(s, request.session_hash).stop()  # the answering generator sees it within one token
        return s

    def on_new_chat(s: ChatSession, request: gr.Request):
        live.bind(s, request.session_hash).reset()
        return s, [], None, "", "New chat."

    def on_heatmap(s: ChatSession, request: gr.Request, backend_name: str):
        return live.bind(s, request.session_hash), *handlers.on_heatmap(s, backend_name)

    def on_delete(s: ChatSession, request: gr.Request):
        return live.bind(s, request.session_hash), *handlers.on_delete(s)

    gr.on(
        [p.send.click, p.question.submit], on_ask, [session, p.image, p.question, p.backend, *p.settings],
        ui_outputs, show_progress="hidden", preprocess=False, **run,  # raw payloads: the path (upload_path)
    ).then(None, js=a11y.FOCUS_JS)  # fmt: skip
    p.describe.click(
        on_describe, [session, p.image, p.backend, *p.settings], ui_outputs, show_progress="hidden",
        preprocess=False, **run,
    ).then(None, js=a11y.FOCUS_JS)  # fmt: skip
    p.regenerate.click(
        on_regenerate, [session, p.backend, *p.settings], ui_outputs, show_progress="hidden", **run
    ).then(None, js=a11y.FOCUS_JS)
    p.announce.change(None, [p.announce], None, js=a11y.ANNOUNCE_JS)
    p.repeat.click(None, [p.last_answer], None, js=a11y.REPEAT_JS)
    p.read.click(None, [p.last_answer], None, js=a11y.SPEAK_JS)
    p.contrast.change(None, [p.contrast], None, js=a11y.CONTRAST_JS)
    heatmap_outputs = [session, p.heat_image, p.heat_text, p.announce]
    p.heatmap.click(on_heatmap, [session, p.backend], heatmap_outputs, **run)
    deleted = [session, p.chat, p.image, p.question, p.status, p.heat_image, p.heat_text, p.last_answer]
    p.delete.click(on_delete, [session], [*deleted, p.announce], queue=False, api_visibility="private")
    p.stop.click(on_stop, [session], [session], queue=False, api_visibility="private")
    for clear in (p.new_chat.click, p.chat.clear):  # the chat's own trash button also starts a new chat
        clear(on_new_chat, [session], [session, p.chat, p.image, p.question, p.status], queue=False,
              api_visibility="private")  # fmt: skip
        clear(
            lambda: (gr.update(visible=False, value=None), "", ""), None,
            [p.heat_image, p.heat_text, p.last_answer], queue=False, api_visibility="private",
        )  # fmt: skip
