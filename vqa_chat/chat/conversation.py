"""One chat's question/answer turns, split into segments by image, and the prompt built from them.

The prompt format is BLIP-2's zero-shot VQA format, from the templates in prompts/:
a single question is exactly `Question: {q} Answer:` and follow-ups carry the earlier turns about the same
image, `Question: q1 Answer: a1 Question: q2 Answer:`. A new image starts a new segment: every turn stays
in the history, but the prompt only uses the current segment's turns. When the prompt would not fit in
the model's context, the oldest turns are left out and the caller is told how many.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from vqa_chat.prompts import load_prompt

MAX_QUESTION_CHARS = 500


class ConversationError(ValueError):
    """A question that can't be asked; str(error) is a user-readable sentence."""


UNSURE_PREFIX = "I'm not sure about this. My best guess:"  # how an answer the model was unsure of begins


@dataclass(eq=False)  # compared by identity: two equal turns are still two turns
class Turn:
    question: str
    answer: str = ""
    backend: str = ""  # which backend answered ("blip2", "custom")
    mode: str = "ask"  # "ask", or "describe": a detailed description (describe.py; Regenerate keeps it)
    segment: int = 0  # which image the turn is about (index of the image in this chat)
    stopped: bool = False  # the user stopped generation: `answer` is partial
    prompt: str = ""  # the prompt the answer was generated for (the heatmap uses it)
    confidence: float | None = None  # calibrated statistic of the answer's token log-probs (confidence.py)
    unsure: bool = False  # confidence below the backend's threshold: the chat hedges the answer
    source: str = "model"  # "model", or "photo facts": out of the model's domain (photo/answers.py)
    facts_note: str = ""  # shown after the answer, not in later prompts: text the photo facts read that a
    # description missed, and retake advice only when the measured light or sharpness call for it
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # other likely answers, probability

    def said(self) -> str:
        """The answer as every user gets it (chat, screen reader, API): hedged when the model was unsure,
        then the photo facts' note (retake advice only when measured light or sharpness call for it)."""
        answer = self.answer.strip()
        if self.unsure and not self.stopped:
            answer = f"{UNSURE_PREFIX} {answer}"
        return f"{answer} {self.facts_note}" if self.facts_note else answer


@cache
def templates() -> tuple[str, str]:
    """(question template, past-turn template) from prompts/question.txt and prompts/turn.txt."""
    return load_prompt("question").strip(), load_prompt("turn").strip()


def format_prompt(past: list[Turn], question: str) -> str:
    """`Question: q1 Answer: a1 ... Question: {question} Answer:` (only the last part if `past` is empty)."""
    question_tpl, turn_tpl = templates()
    parts = [turn_tpl.format(question=t.question, answer=t.answer.strip()) for t in past]
    parts.append(question_tpl.format(question=question))
    return " ".join(parts)


def clean_question(text: str | None, max_chars: int = MAX_QUESTION_CHARS) -> tuple[str, str | None]:
    """Normalise whitespace and cap the length. Returns (question, note or None); raises on empty."""
    question = " ".join((text or "").split())  # one line: newlines and runs of spaces become one space
    if not question:
        raise ConversationError("Please type a question about the image.")
    if len(question) <= max_chars:
        return question, None
    cut = question[:max_chars]
    if " " in cut[max_chars // 2 :]:  # end on a word boundary when one is near
        cut = cut[: cut.rindex(" ")]
    note = f"Your question was {len(question)} characters long; I used only its first {len(cut)}."
    return cut, note


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    segment: int = 0  # current image; bumped by new_segment()

    def new_segment(self) -> int:
        """A new image: later prompts ignore the turns so far. Returns how many were about the old one."""
        left_behind = len(self.segment_turns())
        self.segment += 1
        return left_behind

    def segment_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.segment == self.segment]

    def last_answered(self, pending: Turn | None = None) -> Turn | None:
        """The newest finished turn about the current image (not `pending`, the one being answered)."""
        for turn in reversed(self.segment_turns()):
            if turn.answer.strip() and turn is not pending:
                return turn
        return None

    def build_prompt(
        self, question: str, count_tokens: Callable[[list[str]], list[int]], budget: int
    ) -> tuple[str, int]:
        """The prompt for `question` after this segment's answered turns, fitted into `budget` tokens.

        `budget` = context length - image tokens - max_new_tokens; `count_tokens` counts a list of texts at
        once (Backend.count_tokens_batch). Oldest turns are dropped until the prompt fits; returns (prompt,
        number of turns dropped). The whole prompt is counted first; only when it does not fit are the
        shorter ones counted, all in one call. Raises ConversationError if even the question alone does not
        fit.
        """
        past = [t for t in self.segment_turns() if t.answer.strip()]
        prompts = [format_prompt(past[dropped:], question) for dropped in range(len(past) + 1)]
        counts = count_tokens(prompts[:1])
        if counts[0] > budget and len(prompts) > 1:
            counts += count_tokens(prompts[1:])
        for dropped, (prompt, count) in enumerate(zip(prompts, counts)):
            if count <= budget:
                return prompt, dropped
        raise ConversationError(
            "That question is too long for this model's context. Please ask a shorter question, "
            "or lower the maximum answer length in the generation settings."
        )

    def add_turn(self, question: str, backend: str, mode: str = "ask") -> Turn:
        turn = Turn(question=question, backend=backend, mode=mode, segment=self.segment)
        self.turns.append(turn)
        return turn

    def remove(self, turn: Turn) -> None:
        self.turns.remove(turn)

    def history(self) -> list[dict]:
        """The turns as plain dicts (the /history API): "answer" is the model's text (what later prompts
        carry), "said" what the user was told."""
        return [
            {"question": t.question, "answer": t.answer, "backend": t.backend, "said": t.said(),
             "unsure": t.unsure, "source": t.source, "other_answers": [list(a) for a in t.alternatives]}
            for t in self.turns
        ]  # fmt: skip
