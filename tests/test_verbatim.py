"""Text from the photo, questions and answers shown verbatim: the chat's escaping and the shortening of long
photo text. The escaped Markdown is rendered here by markdown-it-py (CommonMark with GitHub's tables and
strikethrough, line breaks on); tests/test_browser.py checks Gradio's own renderer (marked) in Chromium and
tests/test_app.py the plain text of the API."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.notes import Note
from vqa_chat.chat.session import ChatSession
from vqa_chat.photo.answers import answer, describe
from vqa_chat.photo.facts import Code, PhotoFacts, TextLine
from vqa_chat.photo.wording import VERBATIM_LIMIT, verbatim
from vqa_chat.ui.markdown import chat_messages, escape, italic

RTL = ["مرحبا بالعالم، هذا نص عربي!", "שלום עולם (בדיקה) 123"]
EMOJI = "emoji 👩\u200d👩\u200d👧\u200d👦 🇫🇷 👍🏽 ✔️ ∑ 中文 e\u0301"
NASTY = [
    "[tap me](javascript:alert(1))", "<script>alert(1)</script>", '<img src=x onerror="alert(1)">',
    "javascript:alert(1) data:text/html,<b>x</b> file:///etc/passwd mailto:a@b.c",
    "<https://x.y> <javascript:alert(1)> ![i](http://x/y.png) [a]: http://x.y", "[a]: http://x.y\n[a]",
    "# h1\n## h2\n- l\n+ p\n* s\n1. one\n2) two\n1986. year\n> quote\n---\n***\n___\n=====\nx\n---\ny\n===",
    "| a | b |\n|---|---|\n| 1 | 2 |", "a\n:---:", "a | b\n--- | ---\n1 | 2", "pipe | in | a line",
    "```\ncode\n```\n~~~\nc\n~~~", "`c` ``d`` ``` e", "$$x^2$$ and $y$ $5",
    "back\\slash \\* \\\\ \\ end\\", "\\[x\\] \\<b\\>", "&lt;b&gt; &amp; &#60; &copy; &nbsp;x",
    "<!-- c --> <div>d</div> <b>b</b> <?php echo 1; ?>", "**bold** _i_ *e* ~~s~~ ~t~ snake_case_name 2*3*4",
    "- [ ] task\n- [x] done", "line one\r\nline two\rline three\n\nnew paragraph",
    "    indented code\n\n    more",
    ":smile: @user #tag 50% {a} ^b^ ==hl== H~2~O footnote[^1]", *RTL, EMOJI,
]  # fmt: skip
LONG = ("<b>*x*</b> [a](javascript:b) | `c` \\ $$ " * 200)[:4000]


class Text(HTMLParser):
    """The text a page shows for some HTML (<br> and paragraphs as line ends) and the tags it has."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.parts, self.tags = [], set()
        self.feed(html)
        self.text = re.sub(r"\n{3,}", "\n\n", "".join(self.parts)).strip()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.parts.append("\n" if tag == "br" else "\n\n" if tag == "p" else "")

    def handle_data(self, data):
        self.parts.append(data.replace("\n", ""))  # a soft line end inside a paragraph follows a <br>


def render(markdown: str) -> Text:
    md = MarkdownIt("commonmark", {"breaks": True}).enable(["table", "strikethrough"])
    return Text(md.render(markdown))


def shown(text: str) -> str:
    """What a page can show of plain text: lines without their leading blanks (HTML collapses them), at most
    one empty line in a row."""
    lines = [line.lstrip(" \t") for line in re.split(r"\r\n|\r|\n", text)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@pytest.mark.parametrize("text", NASTY + [LONG])
def test_escaped_text_shows_exactly_its_characters(text):
    page = render(escape(text))
    assert page.text == shown(text)
    assert page.tags <= {"p", "br"}  # no link, image, code, emphasis, heading, list, table, quote or HTML


@pytest.mark.parametrize("text", NASTY + [LONG, "see https://x.y, HTTP://X.Y, Www.x.y, ftp://f.g or a.b@c.d"])
def test_no_bare_autolink_or_formula_is_left(text):
    """GitHub's autolinks (marked's gfm `url`) start at "http://", "https://", "ftp://", "www." or an e-mail
    address, and Gradio's formulas at "$$": none of them is left whole in the escaped text."""
    escaped = escape(text)
    assert not re.search(r"(?i)(?<!\\)://|www\.|(?<!\\)@", escaped) and "$$" not in escaped


def test_plain_words_rtl_text_and_emoji_pass_unchanged():
    for text in (*RTL, EMOJI, "What colour is the car?"):
        assert escape(text) == text


def test_italic_keeps_the_text_and_adds_only_emphasis():
    page = render(italic("Other possible answers: <b>a_b</b> (5%), *c* (3%)"))
    assert page.text == "Other possible answers: <b>a_b</b> (5%), *c* (3%)" and page.tags == {"p", "em"}
    assert render(italic("one\n\n# two")).text == "one\n\n# two"  # each line in italics, none a heading


def facts(text=(), codes=()) -> PhotoFacts:
    return PhotoFacts(width=640, height=480, labels=[], text=list(text), people=[], colours=[("grey", 0.9)],
                      brightness=0.5, light="normal", sharpness=300.0, blurry=False, text_cut_off=False,
                      codes=list(codes), seconds=0.1)  # fmt: skip


def test_the_chat_shows_questions_answers_and_notes_verbatim():
    payload = "[tap me](javascript:alert(1)) <script>x</script>\n# not a heading | `c` \\ $$x$$"
    question = "Scan the *QR code* <b>now</b> &lt; [tell](me)"
    said = answer(question, facts(codes=[Code("QR code", payload)]))
    assert said == f'A QR code: "{payload}".'  # the answer stays plain text
    s = ChatSession()
    turn = Turn(question, said, backend="custom", source="photo facts", alternatives=[("<i>", 0.2)])
    s.log += [turn, Note("a <note> with _under_scores_"), Note("<b>refused</b> question", role="user"),
              Note("failed: <error>", error=True)]  # fmt: skip
    pages = [render(m["content"]) for m in chat_messages(s)]
    assert [p.text for p in pages] == [
        question,
        f"{said}\n\nOther possible answers: <i> (20%)\n\n"
        "From photo facts (the Custom model wasn't trained on this).",
        "a <note> with _under_scores_", "<b>refused</b> question", "⚠️ failed: <error>",
    ]  # fmt: skip
    assert [p.tags for p in pages] == [{"p"}, {"p", "br", "em"}, {"p", "em"}, {"p"}, {"p"}]


def test_long_photo_text_is_shortened_with_its_length_said():
    payload = "https://example.com/?q=" + "x" * 3977
    said = answer("Is there a QR code?", facts(codes=[Code("QR code", payload)]))
    assert said == f'A QR code: "{payload[:VERBATIM_LIMIT]}…" (the first 300 of 4,000 characters).'
    assert verbatim("y" * VERBATIM_LIMIT) == f'"{"y" * VERBATIM_LIMIT}"'  # at the limit: whole
    line = TextLine("z" * 500, 0.9, (0.1, 0.1, 0.9, 0.2))
    assert answer("What does it say?", facts(text=[line])) == (
        f'One line: "{"z" * 300}…" (the first 300 of 500 characters).'
    )
    lines = [line, TextLine("b", 0.9, (0.1, 0.3, 0.9, 0.4)), TextLine("c", 0.9, (0.1, 0.5, 0.9, 0.6))]
    assert f'starting "{"z" * 300}…" (the first 300 of 500 characters).' in describe(facts(text=lines))


def test_shortening_never_splits_a_character():
    family = "👩\u200d👩\u200d👧\u200d👦"  # 7 code points, one emoji
    for start, rest in ((298, family), (299, "e\u0301"), (299, "🇫🇷")):  # each would end past the limit
        text = "a" * start + rest + "tail"
        assert verbatim(text).startswith(f'"{"a" * start}…" (the first {start} of ')  # whole or not at all
