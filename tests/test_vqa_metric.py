"""The official VQA accuracy on hand-made cases (values as the official vqaEval.py computes them)."""

from __future__ import annotations

import pytest

from vqa_chat.eval.vqa_metric import (
    accuracy_report,
    evaluate,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    question_accuracy,
)


def official_per_question(acc: float) -> float:
    return round(100 * acc, 2)  # what the script stores per question (evalQA)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes.", "yes"),  # a period not followed by a digit goes
        ("3.5", "3.5"),  # a decimal point stays
        ("1,000", "1000"),  # a comma between digits: every mark is deleted
        ("x-ray", "x ray"),  # a mark touching no space becomes a space
        ("x - ray", "x  ray"),  # a mark next to a space is deleted
        ("red, white", "red white"),
        ("(red)", " red "),
        ("don't", "don't"),  # the apostrophe is not in the list
        ("what?!", "what  "),
        ("a:b", "a:b"),  # nor is the colon
    ],
)
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Two Dogs", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero..ten (and none) are mapped
        ("the cat", "cat"),
        ("an apple a day", "apple day"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("Im", "im"),  # keys with capitals never match after lowercasing
        ("  many   spaces ", "many spaces"),
    ],
)
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected


def test_normalize_answer_chains_everything():
    assert normalize_answer("  The Two dogs.\n") == "2 dogs"
    assert normalize_answer("A dont!") == "don't"


@pytest.mark.parametrize(
    "matches, expected",
    [(0, 0.0), (1, 30.0), (2, 60.0), (3, 90.0), (4, 100.0), (10, 100.0)],
)
def test_leave_one_out_average(matches, expected):
    # 2 of 10: leaving out one of the 2 leaves 1 match (1/3), leaving out one of the other 8 leaves 2 (2/3)
    # -> (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    gts = ["cat"] * matches + ["dog"] * (10 - matches)
    assert official_per_question(question_accuracy(gts, "cat")) == expected


def test_exact_fractions():
    assert question_accuracy(["cat"] * 2 + ["dog"] * 8, "cat") == pytest.approx(0.6)
    assert question_accuracy(["cat"] * 3 + ["dog"] * 7, "cat") == pytest.approx(0.9)
    assert question_accuracy(["cat"] * 1 + ["dog"] * 9, "cat") == pytest.approx(0.3)


def test_normalises_when_annotators_disagree():
    gts = ["two dogs", "2 dogs", "2 dogs!", "the two dogs", "Two Dogs."] + ["dogs"] * 5
    assert question_accuracy(gts, "Two dogs.") == 1.0  # five annotators said "2 dogs" once normalised
    gts = ["don't"] * 2 + ["no"] * 8
    assert official_per_question(question_accuracy(gts, "dont")) == 60.0  # contraction restored
    gts = ["red"] * 9 + ["the red"]
    assert question_accuracy(gts, "a red") == 1.0  # articles dropped


def test_no_normalisation_when_all_annotators_agree():
    # the official quirk: with one distinct ground-truth answer nothing but whitespace is cleaned
    assert question_accuracy(["yes"] * 10, "yes") == 1.0
    assert question_accuracy(["yes"] * 10, " yes\n") == 1.0  # newlines, tabs, outer spaces always go
    assert question_accuracy(["yes"] * 10, "Yes") == 0.0
    assert question_accuracy(["yes"] * 10, "yes.") == 0.0
    assert question_accuracy(["2"] * 10, "two") == 0.0
    assert question_accuracy(["the cat"] * 10, "cat") == 0.0
    # ... but one dissenting annotator switches normalisation on for everyone
    assert question_accuracy(["2"] * 9 + ["3"], "two") == 1.0
    assert question_accuracy(["the cat"] * 9 + ["dog"], "Cat.") == 1.0


def test_empty_ground_truth_is_an_error():
    with pytest.raises(ValueError):
        question_accuracy([], "yes")


def _ann(qid, answers, qtype, atype):
    return {"question_id": qid, "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(answers, 1)],
            "question_type": qtype, "answer_type": atype}  # fmt: skip


def test_evaluate_report_keys_and_values():
    annotations = [
        _ann(1, ["yes"] * 10, "is the", "yes/no"),
        _ann(2, ["2"] * 2 + ["3"] * 8, "how many", "number"),
        _ann(3, ["red"] * 10, "what color is the", "other"),
        _ann(4, ["no"] * 10, "is the", "yes/no"),
    ]
    results = {1: "yes", 2: "two", 3: "blue", 4: "yes"}
    report, per_question = evaluate(annotations, results)
    assert list(report) == ["overall", "perQuestionType", "perAnswerType"]
    assert per_question == pytest.approx({1: 1.0, 2: 0.6, 3: 0.0, 4: 0.0})
    assert report["overall"] == 40.0  # round(100 * 1.6 / 4, 2)
    assert report["perAnswerType"] == {"yes/no": 50.0, "number": 60.0, "other": 0.0}
    assert report["perQuestionType"] == {"is the": 50.0, "how many": 60.0, "what color is the": 0.0}


def test_report_rounds_to_two_decimals():
    report = accuracy_report([1.0, 0.0, 0.0], ["a", "a", "b"], ["x", "y", "y"])
    assert report["overall"] == 33.33
    assert report["perQuestionType"] == {"a": 50.0, "b": 0.0}
    assert report["perAnswerType"] == {"x": 100.0, "y": 0.0}
    assert accuracy_report([0.6, 1.0, 1.0], ["a"] * 3, ["x"] * 3)["overall"] == 86.67


def test_results_must_match_annotations():
    annotations = [_ann(1, ["yes"] * 10, "is", "yes/no"), _ann(2, ["no"] * 10, "is", "yes/no")]
    with pytest.raises(ValueError, match="1 annotated questions have no answer"):
        evaluate(annotations, {1: "yes"})
    with pytest.raises(ValueError, match="1 answers have no annotation"):
        evaluate(annotations, {1: "yes", 2: "no", 3: "yes"})


def test_repeated_question_id_counts_once_with_the_last_annotation():
    annotations = [_ann(1, ["yes"] * 10, "is", "yes/no"), _ann(1, ["no"] * 10, "is", "yes/no")]
    report, _ = evaluate(annotations, {1: "no"})
    assert report["overall"] == 100.0
