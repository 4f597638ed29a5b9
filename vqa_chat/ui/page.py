"""The Gradio app: the chat page and the /ask, /history, /chat, /reset and /stop API endpoints.

All chat logic lives in session.py; this module only lays out components and wires events. Each browser
tab and each gradio_client `Client` gets its own `ChatSession` through a `gr.State`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from vqa_chat.backends import REGISTRY
from vqa_chat.backends.base import GenerationSettings
from vqa_chat.chat import privacy
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.notes import ChatError, label
from vqa_chat.chat.session import ChatSession
from vqa_chat.ui import a11y, handlers
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
    """Run one of the session's generators for the UI: yields (chat, question box, status, announce, last
    answer); see handlers.stream_with_announcements."""
    yield from handlers.stream_with_announcements(session, steps, chat_messages)


def build_app(config: AppConfig | None = None) -> gr.Blocks:
    config = config or AppConfig()
    backends = [(label(name), name) for name in REGISTRY]
    blocks = dict(title="vqa-chat", fill_height=True, delete_cache=(3600, 24 * 3600), analytics_enabled=False)
    with gr.Blocks(**blocks) as demo:  # no usage analytics: privacy by default
        # Gradio deep-copies this empty session for every new browser tab / API client.
        session = gr.State(ChatSession(), delete_callback=ChatSession.close)
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
        ui_outputs = [chat, question, status, announce, last_answer]
        run = dict(concurrency_id="generate", concurrency_limit=config.concurrency, api_visibility="private")

        def on_ask(s: ChatSession, image_payload, text, backend_name, *settings):
            steps = s.ask(upload_path(image_payload), text, backend_name, settings_from(*settings))
            yield from stream_to_chat(s, steps)

        def on_describe(s: ChatSession, image_payload, backend_name, *settings):
            steps = s.describe(upload_path(image_payload), backend_name, settings_from(*settings))
            yield from stream_to_chat(s, steps)

        def on_regenerate(s: ChatSession, backend_name, *settings):
            yield from stream_to_chat(s, s.regenerate(backend_name, settings_from(*settings)))

        def on_stop(s: ChatSession) -> None:
            s.stop()  # the answering generator sees it within one token and sends the final chat

        def on_new_chat(s: ChatSession):
            s.reset()
            return [], None, "", "New chat."

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
            handlers.on_heatmap, [session, backend], [heat_image, heat_text, announce],
            concurrency_id="generate", concurrency_limit=config.concurrency, api_visibility="private",
        )  # fmt: skip
        delete.click(
            handlers.on_delete, [session],
            [chat, image, question, status, heat_image, heat_text, last_answer, announce],
            queue=False, api_visibility="private",
        )  # fmt: skip
        stop.click(on_stop, [session], None, queue=False, api_visibility="private")
        for clear in (new_chat.click, chat.clear):  # the chat's own trash button also starts a new chat
            clear(
                on_new_chat, [session], [chat, image, question, status], queue=False, api_visibility="private"
            )
            clear(
                lambda: (gr.update(visible=False, value=None), "", ""), None,
                [heat_image, heat_text, last_answer], queue=False, api_visibility="private",
            )  # fmt: skip
        add_api(session, config)
    demo.queue(max_size=config.max_queue, default_concurrency_limit=4)
    return demo


def add_api(session: gr.State, config: AppConfig) -> None:
    """Endpoints for scripts: /ask, /describe, /facts, /history, /chat, /reset, /stop (hidden components)."""
    with gr.Column(visible=False):
        image = gr.File(label="image", type="filepath")
        question = gr.Textbox(label="question")
        backend = gr.Textbox(label="backend", value=config.backend)
        max_new_tokens = gr.Number(
            label="max_new_tokens", value=DEFAULTS.max_new_tokens, precision=0
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
                yield turn.answer if turn else ""
        except ChatError as e:
            raise gr.Error(str(e), print_exception=False) from None
        yield turn.said() if turn else ""

    def ask(s: ChatSession, image=None, question="", backend=config.backend, max_new_tokens=None):
        """Ask about `image` (None keeps the session's image); streams the answer text."""
        settings = settings_from(max_new_tokens)
        yield from answer_stream(s, s.ask(image, question, backend or config.backend, settings))

    def describe(s: ChatSession, image=None, backend=config.backend):
        """Describe `image` (None: the session's image) in detail; streamed, and a turn of the chat."""
        yield from answer_stream(s, s.describe(image, backend or config.backend, settings_from(None)))

    def facts(s: ChatSession, image=None) -> dict:
        """What the offline parts measured in `image` (None: the session's image), as JSON."""
        try:
            if image and image != s.image_source:
                s.set_image(image)
            return s.photo_facts().to_json()
        except ChatError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def get_history(s: ChatSession) -> list[dict]:
        """The session's turns as a list of {"question", "answer", "backend"}."""
        return s.history()

    def get_chat(s: ChatSession) -> list[dict]:
        """The visible chat, notices and error messages included, as a list of {"role", "text"}."""
        return s.transcript()

    def reset(s: ChatSession) -> str:
        """Start a new chat in this session."""
        s.reset()
        return "New chat started."

    def stop(s: ChatSession) -> str:
        """Stop the answer being generated in this session; it keeps the text generated so far."""
        return "Stopping." if s.stop() else "Nothing to stop."

    # every event of the "generate" group must name the limit: Gradio lowers a group's limit to the smallest
    # of its events', and an event without one counts as the queue's default (4), capping all answers at 4
    generate = dict(concurrency_id="generate", concurrency_limit=config.concurrency)
    asked = [session, image, question, backend, max_new_tokens]
    trigger.click(ask, asked, answer, api_name="ask", **generate)
    trigger.click(describe, [session, image, backend], answer, api_name="describe", **generate)
    trigger.click(facts, [session, image], history, api_name="facts", **generate)
    trigger.click(get_history, session, history, api_name="history", concurrency_limit=None)
    trigger.click(get_chat, session, history, api_name="chat", concurrency_limit=None)
    trigger.click(reset, session, answer, api_name="reset", concurrency_limit=None)
    trigger.click(stop, session, answer, api_name="stop", queue=False)


def launch_kwargs() -> dict:
    """Look and privacy options for `demo.launch()` (Gradio 6 takes theme and css here)."""
    return dict(
        theme=gr.themes.Soft(), css=CSS + a11y.CSS, head=a11y.head(), run_history=False, ssr_mode=False
    )
