"""The Gradio app: the chat page (layout.py), what its controls do (events.py) and the API for scripts
(api.py: /ask, /describe, /facts, /history, /chat, /reset, /stop), built into one `gr.Blocks`.

All chat logic lives in chat/session.py. Each browser tab and each gradio_client `Client` gets its own
`ChatSession` through a `gr.State` that every event hands back (restarting its idle clock) and that ends
after the idle limit (chat/lifetime.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from vqa_chat import settings as env
from vqa_chat.chat import privacy
from vqa_chat.chat.lifetime import Lifetime
from vqa_chat.chat.session import ChatSession
from vqa_chat.ui import a11y
from vqa_chat.ui.api import add_api
from vqa_chat.ui.events import wire
from vqa_chat.ui.layout import CSS, lay_out

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AppConfig:
    backend: str = field(default_factory=lambda: env.read().backend)  # the backend selected when a page opens
    concurrency: int = 16  # answers in progress at once, across sessions (decoded together as one batch)
    max_queue: int = 64  # requests waiting beyond that get a "queue is full" message
    examples_dir: str = str(ROOT / "assets" / "examples")
    idle_minutes: float = field(default_factory=lambda: env.read().idle_minutes)  # 0: sessions never end
    max_sessions: int = field(default_factory=lambda: env.read().max_sessions)  # Gradio's session capacity


def build_app(config: AppConfig | None = None) -> gr.Blocks:
    config = config or AppConfig()
    live = Lifetime(config.idle_minutes * 60)
    ttl = live.idle_seconds if config.idle_minutes > 0 else None
    blocks = dict(title="vqa-chat", fill_height=True, delete_cache=(3600, 24 * 3600), analytics_enabled=False)
    with gr.Blocks(**blocks) as demo:  # no usage analytics: privacy by default
        # Gradio deep-copies this empty session for every new browser tab / API client, and ends it after
        # `ttl` seconds without being handed back by an event (every event hands it back)
        session = gr.State(ChatSession(), time_to_live=ttl, delete_callback=live.expire)
        page = lay_out(config.backend, config.examples_dir, logging_note=privacy.log_dir() is not None)
        wire(page, session, live, config.concurrency)
        demo.load(None, None, [page.contrast], js=a11y.LOAD_CONTRAST_JS)
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
