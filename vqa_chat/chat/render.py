"""The one walk over the visible chat (its turns and notes, oldest first), for every front end that shows it.

`render(log, pending, style)` says what each line is: the question; the answer as users get it (hedged when
the model was unsure, with the photo facts' note), or the text so far while it streams, marked when it was
stopped; pictures; notices; errors. The `Style` says how: `PLAIN` is the /chat API's plain text
(`transcript`), ui/markdown.py's style the page's Markdown (escaped, the app's own words in italics, an
answer's other likely answers and its source underneath).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vqa_chat.backends import label
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.notes import Note

LIKELY = 0.01  # other answers shown from this probability on (not the "(0%)" ones)


def _same(text: str) -> str:
    return text


def _image_text(note: Note) -> str:
    return f"[image: {note.text}]"


@dataclass(frozen=True)
class Style:
    text: Callable[[str], str] = _same  # plain text as shown (questions, answers, photo text)
    aside: Callable[[str], str] = _same  # the app's own words: notices, an answer's details
    image: Callable[[Note], object] = _image_text  # a picture in the chat
    error: str = ""  # before an error message
    stopped: str = "(stopped)"  # after a stopped answer
    waiting: str = ""  # an answer not begun yet
    empty: str = ""  # an answer that came back empty
    details: bool = False  # under an answer: its other likely answers and where it came from
    key: str = "text"  # each line is {"role", key: what it shows}


PLAIN = Style()


def answer(turn: Turn, pending: bool, style: Style) -> str:
    """What the chat shows for a turn's answer."""
    text = style.text(turn.answer.strip())
    if turn.stopped:
        return f"{text} {style.stopped}".strip()
    if pending:
        return text or style.waiting
    shown = style.text(turn.said()) or style.empty  # hedged when unsure, with the facts' note
    if not style.details:
        return shown
    likely = ", ".join(f"{a} ({p:.0%})" for a, p in turn.alternatives if p >= LIKELY)
    if likely:
        shown += "\n\n" + style.aside(f"Other possible answers: {likely}")
    if turn.source != "model":
        model = label(turn.backend)
        shown += "\n\n" + style.aside(f"From {turn.source} (the {model} model wasn't trained on this).")
    return shown


def render(log: list[Turn | Note], pending: Turn | None, style: Style = PLAIN) -> list[dict]:
    """Every line of the chat, {"role", style.key: shown}; `pending` is the turn being answered now."""
    lines = []
    for item in log:
        if isinstance(item, Turn):
            said = answer(item, item is pending, style)
            lines += [("user", style.text(item.question)), ("assistant", said)]
        elif item.image:
            lines.append((item.role, style.image(item)))
        elif item.error:
            lines.append(("assistant", style.error + style.text(item.text)))
        elif item.role == "user":
            lines.append(("user", style.text(item.text)))
        else:
            lines.append(("assistant", style.aside(item.text)))
    return [{"role": role, style.key: shown} for role, shown in lines]


def transcript(log: list[Turn | Note]) -> list[dict]:
    """The chat as plain text lines, {"role", "text"} (the /chat API): answers as users get them (hedged
    when unsure, with retake advice), pictures as [image: ...]."""
    return render(log, None, PLAIN)
