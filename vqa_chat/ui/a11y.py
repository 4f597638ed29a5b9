"""Screen-reader and keyboard support for the chat page: what is announced, shortcuts, speech, contrast.

- A polite live region (`#vqa-live`) announces whole sentences of an answer as they complete, or the
  finished answer, never token by token (`Announcer` decides what, `announce_value` hands it to the page
  through the hidden `announce` box; the browser script speaks it). `spoken(turn)` is the whole answer in
  plain words, for Repeat last answer and Read aloud.
- Focus goes back to the question box after every answer.
- Keyboard shortcuts (SHORTCUTS) work anywhere on the page; the list is shown on the page too.
- "Read aloud" uses the browser's speech synthesis; "High contrast" switches to a black/white/yellow theme
  (remembered in the browser); the layout reflows at 200 % zoom (CSS below).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import gradio as gr

from vqa_chat.chat.conversation import Turn

# (keys, what they do, element id of the button they press); shown on the page as a table
SHORTCUTS = [
    ("Enter", "Send the question (in the question box)", None),
    ("Alt+Shift+S", "Send", "send-btn"),
    ("Escape", "Stop the answer", "stop-btn"),
    ("Alt+Shift+D", "Describe image", "describe-btn"),
    ("Alt+Shift+R", "Repeat last answer", "repeat-btn"),
    ("Alt+Shift+A", "Read aloud", "read-btn"),
    ("Alt+Shift+N", "New chat", "new-chat-btn"),
    ("Alt+Shift+Q", "Go to the question box", None),
    ("Alt+Shift+I", "Go to the image upload", None),
]
KEYS = {"Alt+Shift+S": "KeyS", "Alt+Shift+D": "KeyD", "Alt+Shift+R": "KeyR", "Alt+Shift+A": "KeyA",
        "Alt+Shift+N": "KeyN"}  # fmt: skip

_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_counter = itertools.count()
MARK = "\u200b"  # announcements end with MARK + a counter: the same words twice still count as a change


def shortcuts_markdown() -> str:
    rows = "\n".join(f"| {keys} | {action} |" for keys, action, _ in SHORTCUTS)
    return f"**Keyboard shortcuts**\n\n| Keys | Action |\n|---|---|\n{rows}"


def announce_value(text: str | None):
    """A value for the hidden `announce` box (the page script strips the counter), or gr.skip()."""
    return f"{text}{MARK}{next(_counter)}" if text else gr.skip()


def spoken(turn: Turn | None) -> str:
    """The whole answer as the chat shows it, in plain words (for Repeat last answer and Read aloud)."""
    if turn is None:
        return ""
    answer = turn.answer.strip() or "No answer."
    if turn.stopped:
        return f"{answer} (stopped)"
    return turn.said() or "No answer."


class Announcer:
    """What the live region should say while one answer streams: complete sentences, then the rest."""

    def __init__(self):
        self.said = 0  # characters of the answer already announced

    def update(self, answer: str) -> str | None:
        """New complete sentences of a growing answer, or None."""
        ends = [m.end() for m in _SENTENCE_END.finditer(answer, self.said)]
        if not ends:
            return None
        text, self.said = answer[self.said : ends[-1]].strip(), ends[-1]
        return text or None

    def finish(self, answer: str) -> str | None:
        """What is left to announce once the answer is complete."""
        text = answer[self.said :].strip()
        self.said = len(answer)
        return text or None

    def finished(self, turn: Turn) -> str | None:
        """What to say when `turn` is done: the rest of the answer; "Stopped." after a stopped one; the
        doubt, never a guess stated as fact, when the model was unsure; retake advice when measured."""
        said_before = self.said > 0
        rest = self.finish(turn.answer)
        if turn.stopped:
            return f"{rest or ''} Stopped.".strip()
        if turn.unsure:
            if said_before:  # its sentences were read out already: add the doubt (and any advice)
                return " ".join(f"I'm not sure about this. {rest or ''} {turn.facts_note}".split())
            return spoken(turn)
        said = " ".join(part for part in (rest, turn.facts_note) if part)
        return said or (None if said_before else "No answer.")


CSS = (Path(__file__).resolve().parent / "static" / "a11y.css").read_text(encoding="utf-8")

SCRIPT = Path(__file__).resolve().parent / "static" / "a11y.js"  # live region, shortcuts, speech, contrast


def head() -> str:
    """The <script> for launch(head=...)."""
    keys = {code: next(i for k, _, i in SHORTCUTS if k == name) for name, code in KEYS.items()}
    labelled = [[k, i] for k, _, i in SHORTCUTS if i]
    script = SCRIPT.read_text(encoding="utf-8")
    script = script.replace("%KEYS%", json.dumps(keys)).replace("%SHORTCUTS%", json.dumps(labelled))
    return f"<script>\n{script}</script>\n"


# js= snippets for events
ANNOUNCE_JS = "(text) => { if (text) window.vqaAnnounce(text.replace(/\\u200b\\d+$/, '')); }"
FOCUS_JS = "() => { setTimeout(window.vqaFocusQuestion, 50); }"
REPEAT_JS = "(text) => { window.vqaAnnounce(text || 'There is no answer yet.'); }"
SPEAK_JS = "(text) => { window.vqaSpeak(text); }"
CONTRAST_JS = "(on) => { window.vqaContrast(on); }"
LOAD_CONTRAST_JS = "() => window.vqaContrastSaved()"
