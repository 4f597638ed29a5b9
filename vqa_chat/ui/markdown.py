"""Plain text shown verbatim on the page: the chat's messages and the heatmap's text are Markdown; the
chat's messages as the Chatbot shows them (`chat_messages`: chat/render.py's walk, in the `MARKDOWN` style).

Everything a session holds is plain text: questions, answers, notes, and what was read from the photo (OCR
lines, QR and barcode payloads). gr.Chatbot and gr.Markdown render Markdown in the browser (marked, GitHub
flavoured, single newlines as line breaks; `$$...$$` as LaTeX) and then sanitise the HTML: unescaped, a QR
code holding `[tap me](javascript:alert(1))` shows as "tap me" and one holding `<script>...</script>` shows
as nothing. `escape` turns plain text into Markdown that shows exactly its characters, and nothing in it
becomes a link, a tag, emphasis, a heading, a list, a table or a formula; `italic` is the app's own italics
around such text. Checked against the installed Gradio 6.31 front end (templates/frontend/assets/
markdown-code-*.js: marked's GFM tokenizers, then the sanitiser) and in Chromium (tests/test_browser.py).

Photo text is untrusted (a QR code can point anywhere), so web addresses are shown as text, not links,
whatever their scheme: the user hears and sees the address and can copy it, and opening it stays their own
deliberate act.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vqa_chat.chat.notes import Note
from vqa_chat.chat.render import Style, render

if TYPE_CHECKING:
    from vqa_chat.chat.session import ChatSession

# Backslash escapes for Markdown's inline syntax (CommonMark: any ASCII punctuation may be escaped):
# \ escape, ` code, * _ emphasis, ~ strikethrough, [ ] links, | table cells, $ LaTeX ("\$\$" holds no "$$",
# so Gradio's $$ delimiters never match). HTML entities for HTML's own: < tags and <scheme:...> autolinks,
# > quotes, & entities (a payload "&lt;" shows as "&lt;", not "<").
_INLINE = str.maketrans({c: "\\" + c for c in "\\`*_~[]|$"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# GitHub's bare autolinks (marked's gfm `url`, case-insensitive): "scheme://", "www." and e-mail addresses
_AUTOLINK = re.compile(r"(?=://)|(?i:(?<=www))(?=\.)|(?=@)")
_LIST_NUMBER = re.compile(r"^(\d{1,9})([.)])")  # "1." or "1)" starting a line: an ordered list
_PUNCTUATION = set("!\"#%'()*+,-./:;=?@^{}")  # the rest of ASCII's; first on a line: heading, list, rule...
_NEWLINE = re.compile(r"\r\n|\r|\n")  # what marked counts as a line end


def _line(line: str) -> str:
    # leading spaces would make an indented code block (and are not shown anyway: HTML collapses them)
    line = _AUTOLINK.sub("\\\\", line.lstrip(" \t").translate(_INLINE))
    if line[:1] in _PUNCTUATION:  # "# x", "- x", "+ x", "=====", "---", ":---:" (a table's delimiter row)
        return "\\" + line
    return _LIST_NUMBER.sub(r"\1\\\2", line)


def escape(text: str) -> str:
    """Markdown that gr.Chatbot / gr.Markdown show as exactly `text` (line ends as line breaks)."""
    return "\n".join(_line(line) for line in _NEWLINE.split(text))


def italic(text: str) -> str:
    """`text` escaped, in the app's italics (each line on its own: emphasis never spans a paragraph)."""
    lines = (_line(part.strip()) for part in _NEWLINE.split(text))
    return "\n".join(f"_{line}_" if line else "" for line in lines)


def _picture(note: Note) -> dict:
    return {"path": note.image, "alt_text": note.text}


# the Chatbot's messages: every piece of the session's plain text escaped here, once, so the chat shows the
# exact characters of questions, answers and photo text; only the app's own italics are Markdown
MARKDOWN = Style(
    text=escape, aside=italic, image=_picture, error="⚠️ ", stopped="_(stopped)_", waiting="…",
    empty="_(no answer)_", details=True, key="content",
)  # fmt: skip


def chat_messages(session: ChatSession) -> list[dict]:
    """The session's chat in the Chatbot's messages format: turns, pictures, notices (italic), errors (⚠️),
    and under an answer its other likely answers and its source."""
    return render(session.log, session.pending, MARKDOWN)
