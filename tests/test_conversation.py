"""Prompt formatting, truncation at the context limit, new-image segments, question cleaning."""

from __future__ import annotations

import pytest

from vqa_chat.chat.conversation import (
    MAX_QUESTION_CHARS,
    Conversation,
    ConversationError,
    clean_question,
    format_prompt,
)
from vqa_chat.prompts import load_prompt


def words(text: str) -> int:  # a stand-in tokenizer: one token per word
    return len(text.split())


def counts(texts: list[str]) -> list[int]:  # Backend.count_tokens_batch with that tokenizer
    return [words(t) for t in texts]


def chat(*pairs: tuple[str, str]) -> Conversation:
    conv = Conversation()
    for q, a in pairs:
        conv.add_turn(q, "blip2").answer = a
    return conv


def test_single_question_is_exactly_blip2_zero_shot_format():
    prompt, dropped = Conversation().build_prompt("What is this?", counts, budget=100)
    assert prompt == "Question: What is this? Answer:"
    assert dropped == 0


def test_templates_come_from_prompts_folder():
    assert load_prompt("question") == "Question: {question} Answer:"
    assert load_prompt("turn") == "Question: {question} Answer: {answer}"


def test_follow_ups_carry_earlier_turns():
    conv = chat(("q1", "a1"), ("q2", "a2"))
    prompt, dropped = conv.build_prompt("q3", counts, budget=100)
    assert prompt == "Question: q1 Answer: a1 Question: q2 Answer: a2 Question: q3 Answer:"
    assert dropped == 0


def test_turns_without_answer_are_left_out():
    conv = chat(("q1", "a1"), ("q2", "  "))
    prompt, _ = conv.build_prompt("q3", counts, budget=100)
    assert prompt == "Question: q1 Answer: a1 Question: q3 Answer:"


def test_user_text_with_braces_is_not_a_template():
    assert format_prompt([], "what is {x}?") == "Question: what is {x}? Answer:"


def test_truncation_drops_oldest_turns_to_fit():
    conv = chat(("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    full, _ = conv.build_prompt("q4", counts, budget=100)
    assert words(full) == 3 * 4 + 3
    # one token short of the full prompt: the oldest turn (4 words) goes
    prompt, dropped = conv.build_prompt("q4", counts, budget=words(full) - 1)
    assert dropped == 1
    assert prompt == "Question: q2 Answer: a2 Question: q3 Answer: a3 Question: q4 Answer:"
    # exactly at the limit nothing is dropped
    assert conv.build_prompt("q4", counts, budget=words(full)) == (full, 0)
    # room for the question alone
    assert conv.build_prompt("q4", counts, budget=3) == ("Question: q4 Answer:", 3)
    assert len(conv.turns) == 3  # truncation only shortens the prompt, never the history


def test_prompts_are_counted_whole_first_then_the_shorter_ones_together():
    conv = chat(("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return counts(texts)

    full, _ = conv.build_prompt("q4", counting, budget=100)
    assert calls == [1]  # it fits: one count
    calls.clear()
    assert conv.build_prompt("q4", counting, budget=words(full) - 5)[1] == 2
    assert calls == [1, 3]  # the whole prompt, then the three shorter ones in one call


def test_budget_follows_context_minus_image_and_new_tokens():
    # how the session computes it: context_length - image tokens - max_new_tokens
    context_length, image_tokens, max_new_tokens = 28, 4, 10
    budget = context_length - image_tokens - max_new_tokens  # 14 words: 2 past turns (4 words each) + 3
    conv = chat(("q1", "a1"), ("q2", "a2"), ("q3", "a3"), ("q4", "a4"))
    prompt, dropped = conv.build_prompt("q5", counts, budget)
    assert words(prompt) <= budget and dropped == 2
    assert prompt.startswith("Question: q3 Answer: a3")


def test_question_too_long_for_the_context_is_refused():
    with pytest.raises(ConversationError, match="too long"):
        chat(("q1", "a1")).build_prompt("a long question here", counts, budget=3)
    with pytest.raises(ConversationError):
        Conversation().build_prompt("q", counts, budget=0)


def test_new_image_starts_a_segment():
    conv = chat(("q1", "a1"), ("q2", "a2"))
    assert conv.new_segment() == 2
    prompt, dropped = conv.build_prompt("q3", counts, budget=100)
    assert prompt == "Question: q3 Answer:" and dropped == 0  # earlier image's turns are not used
    conv.add_turn("q3", "custom").answer = "a3"
    prompt, _ = conv.build_prompt("q4", counts, budget=100)
    assert prompt == "Question: q3 Answer: a3 Question: q4 Answer:"
    assert [t.segment for t in conv.turns] == [0, 0, 1]
    assert [{k: h[k] for k in ("question", "answer", "backend")} for h in conv.history()] == [
        {"question": "q1", "answer": "a1", "backend": "blip2"},
        {"question": "q2", "answer": "a2", "backend": "blip2"},
        {"question": "q3", "answer": "a3", "backend": "custom"},
    ]
    assert conv.new_segment() == 1


def test_remove_uses_identity():
    conv = chat(("same", "x"), ("same", "x"))
    second = conv.turns[1]
    conv.remove(second)
    assert len(conv.turns) == 1 and conv.turns[0] is not second


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", None])
def test_empty_question_is_refused(text):
    with pytest.raises(ConversationError, match="type a question"):
        clean_question(text)


def test_question_whitespace_is_normalised():
    assert clean_question("  what   colour\nis it? ") == ("what colour is it?", None)


def test_long_question_is_capped_with_a_note():
    text = "word " * 400
    question, note = clean_question(text)
    assert len(question) <= MAX_QUESTION_CHARS
    assert question.endswith("word") and not question.endswith(" ")  # cut on a word boundary
    assert note and "first" in note and str(len(question)) in note
    one_word = "x" * 1000
    question, note = clean_question(one_word, max_chars=10)
    assert question == "x" * 10 and note
