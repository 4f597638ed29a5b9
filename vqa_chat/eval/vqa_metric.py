"""The official VQA accuracy, computed exactly as the VQA evaluation script (vqaEval.py, GT-Vision-Lab) does.

For each question, with the annotators' answers `gts` (10 in VQA) and the model's answer `res`:

1. newlines and tabs become spaces and both ends are stripped, in every answer;
2. only when the annotators disagree (more than one distinct answer) are the answers normalised:
   punctuation (`process_punctuation`), then number words, articles and contractions
   (`process_digit_article`). When all annotators agree nothing else is done, so "Yes" or "two" scores 0
   against ten "yes" or ten "2": with single-answer data (easy-VQA) the metric is exact match;
3. each annotator in turn is left out and the answer scores `min(#other annotators who gave it / 3, 1)`;
   the question's accuracy is the mean over the leave-one-out subsets (2 matches of 10 -> 0.6);
4. the report averages the question accuracies overall, per question type and per answer type, in percent
   rounded the way the script rounds: `round(100 * sum / count, 2)`.

The script leaves out an annotator by dropping every answer *dict* equal to it; the answer ids in VQA files
make those dicts distinct, and then that is exactly leaving out one position, which is what we do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Contractions written without their apostrophe -> with it (the script's table, kept as data; its keys that
# hold capitals never match, since words are lowercased first).
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
# Number words -> digits (only these eleven words; "none" counts as 0).
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ("a", "an", "the")
# The punctuation the script handles; note that ' : . * # $ % & ^ | ~ are not in it ("." has its own rule).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
               ",", "?", "!")  # fmt: skip
# A comma between digits ("1,000"): when the text holds one, every punctuation mark is deleted outright.
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The script's pattern as written: "(?!<=\d)" is a lookahead (not a lookbehind) that never matters, so this
# deletes each "." not followed by a digit ("3.5" keeps its point).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
PERIOD_STRIP_COUNT = 32  # the script passes re.UNICODE (= 32) as sub()'s `count`: at most 32 periods go


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip: done to every answer before anything else."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Delete each mark that touches a space (or every mark, if a digit comma is present), else make it a
    space; then delete periods that are not followed by a digit."""
    delete_all = COMMA_STRIP.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete_all or mark + " " in text or " " + mark in text:  # tested on the input text, as the script
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lowercase, split on whitespace, number words to digits, drop articles, restore contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """The full normalisation the script applies (when annotators disagree)."""
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def question_accuracy(gt_answers: Sequence[str], answer: str) -> float:
    """Official accuracy of one answer against the annotators' answers, in [0, 1] (not rounded)."""
    if not gt_answers:
        raise ValueError("a question needs at least one ground-truth answer")
    gts = [clean_whitespace(a) for a in gt_answers]
    res = clean_whitespace(answer)
    if len(set(gts)) > 1:  # the quirk: normalise only when the annotators disagree
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        res = process_digit_article(process_punctuation(res))
    accs = []
    for left_out in range(len(gts)):
        matches = sum(1 for i, gt in enumerate(gts) if i != left_out and gt == res)
        accs.append(min(1, float(matches) / 3))
    return float(sum(accs)) / len(accs)


def _percent(values: list[float], n: int) -> float:
    return round(100 * float(sum(values)) / len(values), n)  # the script's exact arithmetic and rounding


def accuracy_report(
    accuracies: Sequence[float], question_types: Sequence[str], answer_types: Sequence[str], n: int = 2
) -> dict:
    """The script's `accuracy` dict from per-question accuracies (in question order):
    `{"overall": %, "perQuestionType": {type: %}, "perAnswerType": {type: %}}`, rounded to `n` decimals."""
    if not accuracies:
        raise ValueError("nothing to score")
    by_question_type: dict[str, list[float]] = {}
    by_answer_type: dict[str, list[float]] = {}
    for acc, qtype, atype in zip(accuracies, question_types, answer_types, strict=True):
        by_question_type.setdefault(qtype, []).append(acc)
        by_answer_type.setdefault(atype, []).append(acc)
    return {
        "overall": _percent(list(accuracies), n),
        "perQuestionType": {k: _percent(v, n) for k, v in by_question_type.items()},
        "perAnswerType": {k: _percent(v, n) for k, v in by_answer_type.items()},
    }


def evaluate(
    annotations: Sequence[Mapping], results: Mapping[int, str], n: int = 2
) -> tuple[dict, dict[int, float]]:
    """Score `results` (question_id -> answer) against official-layout annotations.

    `annotations` are the dicts of an annotations file's "annotations" list (each with `question_id`,
    `answers` [{"answer": ...}], `question_type`, `answer_type`); questions are scored in their order.
    Like the script, every annotated question needs an answer and every answer an annotated question.
    Returns (report, {question_id: accuracy in [0, 1]}).
    """
    # A repeated question id: the last annotation counts and it is scored once, as in the script.
    by_id = {ann["question_id"]: ann for ann in annotations}
    ids = list(by_id)
    missing = [qid for qid in ids if qid not in results]
    extra = set(results) - set(ids)
    if missing or extra:
        raise ValueError(
            f"results do not match the annotations: {len(missing)} annotated questions have no answer "
            f"(e.g. {missing[:3]}), {len(extra)} answers have no annotation (e.g. {sorted(extra)[:3]})"
        )
    per_question = {
        qid: question_accuracy([a["answer"] for a in ann["answers"]], results[qid])
        for qid, ann in by_id.items()
    }
    report = accuracy_report(
        list(per_question.values()),
        [ann["question_type"] for ann in by_id.values()],
        [ann["answer_type"] for ann in by_id.values()],
        n,
    )
    return report, per_question
