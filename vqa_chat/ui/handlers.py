"""Event handlers of the chat page beyond asking: streaming with announcements, heatmap, delete.

layout.py lays out the components and events.py wires these up; the session logic is in chat/session.py,
what is announced in a11y.py.
"""

from __future__ import annotations

import logging

import gradio as gr

from vqa_chat.backends import get_backend, label
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.ui.a11y import Announcer, announce_value, spoken
from vqa_chat.ui.markdown import escape

log = logging.getLogger(__name__)


def stream_with_announcements(session: ChatSession, steps, chat_messages):
    """Run one of the session's generators for the UI.

    Yields (chat, question box, status, announce, last answer): the live region hears whole sentences of a
    long answer as they complete, then the rest of the finished answer, never single tokens."""
    clear = ""  # the question box is emptied once, when the question is accepted
    announcer, turn, heard = Announcer(), None, None
    try:
        for status in steps:
            turn = session.pending or turn
            say = announcer.update(turn.answer) if session.pending is not None else None
            if session.pending is None and status.startswith("Loading the") and status != heard:
                say = heard = status  # a wait of seconds: said once, so Enter is never followed by silence
            yield chat_messages(session), clear, status, announce_value(say), gr.skip()
            clear = gr.skip()
    except ChatError as e:
        # keep the question box: the user may fix the problem and send it again
        status = "⚠️ Not answered: see the message in the chat."
        yield chat_messages(session), gr.skip(), status, announce_value(f"Not answered. {e}"), gr.skip()
        return
    if turn is None:
        return
    say = announcer.finished(turn)
    yield chat_messages(session), gr.skip(), gr.skip(), announce_value(say), spoken(turn)


def on_heatmap(session: ChatSession, backend_name: str):
    """Show where the model looked for the last answer: (image update, text, announcement)."""
    turn = session.last_answered()
    name = turn.backend if turn is not None else backend_name
    try:
        backend = get_backend(name)
        path, alt = session.heatmap_for(backend)
    except ValueError as e:
        return gr.update(visible=False, value=None), escape(str(e)), announce_value(str(e))
    except Exception as e:
        log.exception("heatmap failed")
        text = f"The {label(name)} model could not show where it looked ({type(e).__name__})."
        return gr.update(visible=False, value=None), text, announce_value(text)
    # the Markdown text names the user's question: shown verbatim (the picture's alt text is plain)
    return gr.update(visible=True, value=path, alt_text=alt), escape(alt), announce_value(alt)


def on_delete(session: ChatSession):
    """Delete my session: everything this session holds, at once. Outputs: chat, image, question, status,
    heatmap, heatmap text, last answer, announce."""
    session.delete()
    text = "Your session was deleted: its images, cached image features and chat history are gone."
    hidden = gr.update(visible=False, value=None)
    return [], None, "", text, hidden, "", "", announce_value(text)
