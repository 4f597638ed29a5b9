"""The Gradio app: the chat page, its events, and the API endpoints of api.py.

All chat logic lives in chat/session.py; this module only lays out components and wires events. Each
browser tab and each gradio_client `Client` gets its own `ChatSession` through a `gr.State` that every
event hands back (restarting its idle clock) and that ends after the idle limit (chat/lifetime.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from vqa_chat import settings as env
from vqa_chat.backends import REGISTRY, label
from vqa_chat.chat import privacy
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.lifetime import Lifetime
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ui import a11y, handlers
from vqa_chat.ui.api import add_api
from vqa_chat.ui.markdown import escape, italic

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [  # (file in assets/examples, question)
    ("cat.jpg", "What is this?"),  # real photos: scikit-image's sample photos, CC0 (see README)
    ("coffee.jpg", "Describe the picture"),
    ("red_circle.png", "What shape is in the image?"),  # drawn: easy-VQA's kind of picture and question
    ("blue_triangle.png", "What color is the shape?"),
    ("green_square.png", "Is there a green shape in the picture?"),
    ("shapes.png", "How many shapes are there?"),
]
CSS = """
#chat { flex-grow: 1; }
#chat .message img { max-height: 150px; width: auto; object-fit: contain; }
#chat button[aria-label="Share"] { display: none; }  /* "share to HF discussions" on chat images */
#status p { margin: 0; min-height: 1.5em; }
footer { display: none !important; }
"""


@dataclass
class AppConfig:
    backend: str = "custom"  # the Backend selected when a page opens
    concurrency: int = 16  # answers in progress at once, across sessions (decoded together as one batch)
    max_queue: int = 64  # requests waiting beyond that get a "queue is full" message
    examples_dir: str = str(ROOT / "assets" / "examples")
    idle_minutes: float = field(default_factory=lambda: env.read().idle_minutes)  # 0: sessions never end
    max_sessions: int = field(default_factory=lambda: env.read().max_sessions)  # Gradio's session capacity


def upload_path(payload) -> str | None:
    """The uploaded file behind an Image payload, unopened: images.load_image checks and cleans it, so a bad
    file gets our message in the chat (Gradio's own preprocessing would raise a generic error)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload or None


DEFAULTS = GenerationSettings()  # where the settings panel starts
GREEDY, SAMPLING = "Greedy", "Sampling"  # the Decoding radio's choices: do_sample False / True
START_DECODING = SAMPLING if DEFAULTS.do_sample else GREEDY


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


def chat_messages(session: ChatSession) -> list[dict]:
    """The session's chat in the Chatbot's messages format: turns, pictures, notices (italic), errors (⚠️).

    The session's text is plain; every piece of it is escaped here, once (markdown.py), so the chat shows the
    exact characters of questions, answers and photo text, and only the app's own italics are Markdown."""
    out = []
    for item in session.log:
        if isinstance(item, Turn):
            out.append({"role": "user", "content": escape(item.question)})
            answer = escape(item.answer.strip())
            if item is session.pending:
                answer = answer or "…"
            elif not answer and not item.stopped:
                answer = "_(no answer)_"
            if item.stopped:
                answer = f"{answer} _(stopped)_".strip()
            elif item is not session.pending:  # hedged when unsure, retake advice when measured
                answer = escape(item.said()) or answer
                likely = [(a, p) for a, p in item.alternatives if p >= 0.01]  # not the "(0%)" ones
                if likely:
                    others = ", ".join(f"{a} ({p:.0%})" for a, p in likely)
                    answer += "\n\n" + italic(f"Other possible answers: {others}")
                if item.source != "model":
                    model = label(item.backend)
                    source = f"From {item.source} (the {model} model wasn't trained on this)."
                    answer += "\n\n" + italic(source)
            out.append({"role": "assistant", "content": answer})
        elif item.image:
            out.append({"role": item.role, "content": {"path": item.image, "alt_text": item.text}})
        elif item.error:
            out.append({"role": "assistant", "content": f"⚠️ {escape(item.text)}"})
        elif item.role == "user":
            out.append({"role": "user", "content": escape(item.text)})
        else:
            out.append({"role": "assistant", "content": italic(item.text)})
    return out


def stream_to_chat(session: ChatSession, steps):
    """Run one of the session's generators for the UI: yields (session, chat, question box, status,
    announce, last answer); see handlers.stream_with_announcements. Every update hands the session back to
    its gr.State, so a session that is answering never counts as idle."""
    for outputs in handlers.stream_with_announcements(session, steps, chat_messages):
        yield session, *outputs


def build_app(config: AppConfig | None = None) -> gr.Blocks:
    config = config or AppConfig()
    backends = [(label(name), name) for name in REGISTRY]
    blocks = dict(title="vqa-chat", fill_height=True, delete_cache=(3600, 24 * 3600), analytics_enabled=False)
    live = Lifetime(config.idle_minutes * 60)
    ttl = live.idle_seconds if config.idle_minutes > 0 else None
    with gr.Blocks(**blocks) as demo:  # no usage analytics: privacy by default
        # Gradio deep-copies this empty session for every new browser tab / API client, and ends it after
        # `ttl` seconds without being handed back by an event (every event below hands it back)
        session = gr.State(ChatSession(), time_to_live=ttl, delete_callback=live.expire)
        gr.Markdown("## vqa-chat\nAdd an image, then ask questions about it, turn after turn.")
        if privacy.log_dir() is not None:
            gr.Markdown("**Note:** this server keeps a log of the questions, answers and images (--log-dir).")
        with gr.Row(equal_height=False, elem_id="main-row"):
            with gr.Column(scale=2, min_width=280) as left:
                image = gr.Image(
                    label="Image",
                    type="filepath",
                    sources=["upload", "webcam", "clipboard"],
                    height=320,
                    elem_id="image-input",
                )
                heat_image = gr.Image(
                    label="Where the model looked", visible=False, interactive=False, elem_id="heatmap"
                )
                heat_text = gr.Markdown("", elem_id="heatmap-text")
                backend = gr.Radio(backends, value=config.backend, label="Backend")
                with gr.Accordion("Generation settings", open=False):
                    max_new = gr.Slider(1, 256, value=DEFAULTS.max_new_tokens, step=1, label="Max new tokens")
                    decoding = gr.Radio([GREEDY, SAMPLING], value=START_DECODING, label="Decoding")
                    temperature = gr.Slider(
                        0.1, 2.0, value=DEFAULTS.temperature, step=0.05, label="Temperature (sampling)"
                    )
                    top_p = gr.Slider(0.1, 1.0, value=DEFAULTS.top_p, step=0.05, label="Top-p (sampling)")
                    beams = gr.Slider(
                        1, 5, value=DEFAULTS.num_beams, step=1, label="Beams (1 = no beam search)"
                    )
            with gr.Column(scale=3, min_width=320):
                chat = gr.Chatbot(
                    label="Chat",
                    elem_id="chat",
                    height=560,
                    buttons=["copy_all"],
                    feedback_options=None,
                    allow_file_downloads=False,
                )
                status = gr.Markdown("", elem_id="status")
                with gr.Row():
                    question = gr.Textbox(
                        label="Question",
                        placeholder="Ask about the image and press Enter",
                        lines=1,
                        max_lines=4,
                        scale=5,
                        autofocus=True,
                        elem_id="question",
                    )
                    send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send-btn")
                with gr.Row():
                    describe = gr.Button("Describe image", size="sm", elem_id="describe-btn")
                    stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop-btn")
                    regenerate = gr.Button("Regenerate", size="sm")
                    new_chat = gr.Button("New chat", size="sm", elem_id="new-chat-btn")
                with gr.Row():
                    repeat = gr.Button("Repeat last answer", size="sm", elem_id="repeat-btn")
                    read = gr.Button("Read aloud", size="sm", elem_id="read-btn")
                    heat_btn = gr.Button("Where the model looked", size="sm", elem_id="heatmap-btn")
                with gr.Row():
                    contrast = gr.Checkbox(label="High contrast", value=False, elem_id="contrast")
                    delete = gr.Button("Delete my session", size="sm", variant="stop", elem_id="delete-btn")
                gr.Markdown(a11y.shortcuts_markdown(), elem_id="shortcuts")
                announce = gr.Textbox(visible="hidden", elem_id="announce", label="announcement")
                last_answer = gr.Textbox(visible="hidden", elem_id="last-answer", label="last answer")
        examples = [
            [str(Path(config.examples_dir) / name), q]
            for name, q in EXAMPLES
            if (Path(config.examples_dir) / name).exists()
        ]
        if examples:
            with left:  # under the settings, now that the question box exists
                gr.Examples(examples, inputs=[image, question], label="Examples: click one, then Send")

        settings_inputs = [max_new, decoding, temperature, top_p, beams]
        ui_outputs = [session, chat, question, status, announce, last_answer]
        run = dict(concurrency_id="generate", concurrency_limit=config.concurrency, api_visibility="private")

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
            [send.click, question.submit],
            on_ask,
            [session, image, question, backend, *settings_inputs],
            ui_outputs,
            show_progress="hidden",
            preprocess=False,  # raw payloads: the image path unopened (see upload_path)
            **run,
        ).then(None, js=a11y.FOCUS_JS)
        describe.click(
            on_describe,
            [session, image, backend, *settings_inputs],
            ui_outputs,
            show_progress="hidden",
            preprocess=False,
            **run,
        ).then(None, js=a11y.FOCUS_JS)
        regenerate.click(
            on_regenerate, [session, backend, *settings_inputs], ui_outputs, show_progress="hidden", **run
        ).then(None, js=a11y.FOCUS_JS)
        announce.change(None, [announce], None, js=a11y.ANNOUNCE_JS)
        repeat.click(None, [last_answer], None, js=a11y.REPEAT_JS)
        read.click(None, [last_answer], None, js=a11y.SPEAK_JS)
        contrast.change(None, [contrast], None, js=a11y.CONTRAST_JS)
        demo.load(None, None, [contrast], js=a11y.LOAD_CONTRAST_JS)
        heat_btn.click(
            on_heatmap, [session, backend], [session, heat_image, heat_text, announce],
            concurrency_id="generate", concurrency_limit=config.concurrency, api_visibility="private",
        )  # fmt: skip
        delete.click(
            on_delete, [session],
            [session, chat, image, question, status, heat_image, heat_text, last_answer, announce],
            queue=False, api_visibility="private",
        )  # fmt: skip
        stop.click(on_stop, [session], [session], queue=False, api_visibility="private")
        for clear in (new_chat.click, chat.clear):  # the chat's own trash button also starts a new chat
            clear(
                on_new_chat, [session], [session, chat, image, question, status], queue=False,
                api_visibility="private",
            )
            clear(
                lambda: (gr.update(visible=False, value=None), "", ""), None,
                [heat_image, heat_text, last_answer], queue=False, api_visibility="private",
            )  # fmt: skip
        add_api(session, config.backend, live, config.concurrency)

        def on_unload(request: gr.Request) -> None:  # a closed tab (a reload is a new session): free it now
            live.closed(request.session_hash)

        demo.unload(on_unload)
    privacy.keep_files(set().union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values())))
    demo.queue(max_size=config.max_queue, default_concurrency_limit=4)
    return demo


def launch_kwargs(config: AppConfig | None = None) -> dict:
    """Look, privacy and session options for `demo.launch()` (Gradio 6 takes theme and css here)."""
    sessions = (config or AppConfig()).max_sessions
    return dict(
        theme=gr.themes.Soft(), css=CSS + a11y.CSS, head=a11y.head(), run_history=False, ssr_mode=False,
        state_session_capacity=sessions,
    )  # fmt: skip
