"""Event handlers of the chat page beyond asking: describe, heatmap, delete, and what gets announced.

ui.py lays out the components and wires these up; the session logic is in session.py / session_extras.py.
"""

from __future__ import annotations

import itertools
import logging

import gradio as gr

from vqa_chat.backends import get_backend
from vqa_chat.chat import confidence
from vqa_chat.chat.session import ChatError, ChatSession, label
from vqa_chat.chat.session_extras import heatmap_for, last_answered
from vqa_chat.ui.a11y import Announcer

log = logging.getLogger(__name__)

_counter = itertools.count()
MARK = "\u200b"  # announcements end with MARK + a counter: the same words twice still count as a change


def announce_value(text: str | None):
    """A value for the hidden `announce` box (the page script strips the counter), or gr.skip()."""
    return f"{text}{MARK}{next(_counter)}" if text else gr.skip()


def spoken(turn) -> str:
    """The whole answer as the chat shows it, in plain words (for Repeat last answer and Read aloud)."""
    if turn is None:
        return ""
    answer = turn.answer.strip() or "No answer."
    if turn.stopped:
        return f"{answer} (stopped)"
    if turn.unsure:
        return f"{confidence.UNSURE_PREFIX} {answer}. {confidence.RETAKE_ADVICE}"
    return answer


def stream_with_announcements(session: ChatSession, steps, chat_messages):
    """Run one of the session's generators for the UI.

    Yields (chat, question box, status, announce, last answer): the live region hears whole sentences of a
    long answer as they complete, then the rest of the finished answer, never single tokens."""
    clear = ""  # the question box is emptied once, when the question is accepted
    announcer, turn = Announcer(), None
    try:
        for status in steps:
            turn = session.pending or turn
            say = announcer.update(turn.answer) if session.pending is not None else None
            yield chat_messages(session), clear, status, announce_value(say), gr.skip()
            clear = gr.skip()
    except ChatError as e:
        # keep the question box: the user may fix the problem and send it again
        status = "⚠️ Not answered: see the message in the chat."
        yield chat_messages(session), gr.skip(), status, announce_value(f"Not answered. {e}"), gr.skip()
        return
    if turn is None:
        return
    said_before = announcer.said > 0
    rest = announcer.finish(turn.answer)
    if turn.unsure and not turn.stopped:  # nothing stated as fact: the hedge and the advice, in full
        say = spoken(turn)
        if said_before:  # its sentences were read out already: add the doubt and the advice
            say = f"I'm not sure about this. {rest or ''} {confidence.RETAKE_ADVICE}"
    elif turn.stopped:
        say = f"{rest or ''} Stopped.".strip()
    else:
        say = rest or (None if said_before else "No answer.")
    yield chat_messages(session), gr.skip(), gr.skip(), announce_value(say), spoken(turn)


def on_heatmap(session: ChatSession, backend_name: str):
    """Show where the model looked for the last answer: (image update, text, announcement)."""
    turn = last_answered(session)
    name = turn.backend if turn is not None else backend_name
    try:
        backend = get_backend(name)
        path, alt = heatmap_for(session, backend)
    except ValueError as e:
        return gr.update(visible=False, value=None), str(e), announce_value(str(e))
    except Exception as e:
        log.exception("heatmap failed")
        text = f"The {label(name)} model could not show where it looked ({type(e).__name__})."
        return gr.update(visible=False, value=None), text, announce_value(text)
    return gr.update(visible=True, value=path, alt_text=alt), alt, announce_value(alt)


def on_delete(session: ChatSession):
    """Delete my session: everything this session holds, at once. Outputs: chat, image, question, status,
    heatmap, heatmap text, last answer, announce."""
    session.delete()
    text = "Your session was deleted: its images, cached image features and chat history are gone."
    hidden = gr.update(visible=False, value=None)
    return [], None, "", text, hidden, "", "", announce_value(text)
