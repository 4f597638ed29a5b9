"""The one chat renderer (chat/render.py): one walk over the visible chat, shown as the /chat API's plain text
and as the page's Markdown, line for line the same chat."""

from __future__ import annotations

from types import SimpleNamespace

from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.notes import Note
from vqa_chat.chat.render import PLAIN, render, transcript
from vqa_chat.ui.markdown import MARKDOWN, chat_messages


def chat() -> tuple[list, Turn]:
    """Every kind of line the chat has, and the turn being answered (the last one)."""
    pending = Turn("Now?", " w0 w1 ", backend="blip2")
    log = [
        Note("Your image (64×48 pixels)", role="user", image="/tmp/x.png"),
        Turn("What *is* it?", "a <b>cat</b>", backend="custom"),
        Note("Now answering with the BLIP-2 backend."),
        Turn("And the colour?", "grey", backend="blip2", unsure=True, facts_note="The photo is dark."),
        Turn("How many?", "Two people.", backend="custom", source="photo facts",
             alternatives=[("two", 0.5), ("one", 0.004), ("three", 0.2)]),  # fmt: skip
        Turn("Long one?", "w0 w1", backend="blip2", stopped=True),
        Turn("Stopped early?", "", backend="blip2", stopped=True),
        Turn("Nothing?", "", backend="blip2"),
        Note("refused_question", role="user"),
        Note("Please *type* a question.", error=True),
        pending,
    ]
    return log, pending


def test_plain_text_for_the_api():
    log, _ = chat()
    assert transcript(log) == [{"role": role, "text": text} for role, text in [
        ("user", "[image: Your image (64×48 pixels)]"),
        ("user", "What *is* it?"), ("assistant", "a <b>cat</b>"),
        ("assistant", "Now answering with the BLIP-2 backend."),
        ("user", "And the colour?"),
        ("assistant", "I'm not sure about this. My best guess: grey The photo is dark."),
        ("user", "How many?"), ("assistant", "Two people."),
        ("user", "Long one?"), ("assistant", "w0 w1 (stopped)"),
        ("user", "Stopped early?"), ("assistant", "(stopped)"),
        ("user", "Nothing?"), ("assistant", ""),
        ("user", "refused_question"), ("assistant", "Please *type* a question."),
        ("user", "Now?"), ("assistant", "w0 w1"),
    ]]  # fmt: skip


def test_markdown_for_the_page():
    log, pending = chat()
    shown = [m["content"] for m in chat_messages(SimpleNamespace(log=log, pending=pending))]
    assert shown == [
        {"path": "/tmp/x.png", "alt_text": "Your image (64×48 pixels)"},
        "What \\*is\\* it?", "a &lt;b&gt;cat&lt;/b&gt;",
        "_Now answering with the BLIP-2 backend._",
        "And the colour?", "I'm not sure about this. My best guess: grey The photo is dark.",
        "How many?",
        "Two people.\n\n_Other possible answers: two (50%), three (20%)_\n\n"
        "_From photo facts (the Custom model wasn't trained on this)._",
        "Long one?", "w0 w1 _(stopped)_",
        "Stopped early?", "_(stopped)_",
        "Nothing?", "_(no answer)_",
        "refused\\_question", "⚠️ Please \\*type\\* a question.",
        "Now?", "w0 w1",
    ]  # fmt: skip
    pending.answer = ""
    assert chat_messages(SimpleNamespace(log=log, pending=pending))[-1]["content"] == "…"  # not begun yet


def test_both_are_one_walk_line_for_line():
    log, pending = chat()
    plain, page = render(log, pending, PLAIN), render(log, pending, MARKDOWN)
    assert [m["role"] for m in plain] == [m["role"] for m in page] and len(plain) == 18
