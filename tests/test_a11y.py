"""What the screen reader hears about an answer (ui/a11y.py): sentences as they complete, then the rest."""

from __future__ import annotations

from vqa_chat.chat.conversation import UNSURE_PREFIX, Turn
from vqa_chat.ui.a11y import MARK, Announcer, announce_value, spoken


def test_a_long_answer_is_announced_by_sentence_then_the_rest():
    announcer = Announcer()
    assert announcer.update("A red") is None
    assert announcer.update("A red car. It is par") == "A red car."
    assert announcer.finished(Turn("q", "A red car. It is parked")) == "It is parked"
    assert Announcer().finished(Turn("q", "")) == "No answer."


def test_stopped_and_unsure_answers_say_so():
    assert Announcer().finished(Turn("q", "a dog", stopped=True)) == "a dog Stopped."
    unsure = Turn("q", "exit. maybe", unsure=True)
    assert Announcer().finished(unsure) == spoken(unsure)  # nothing read yet: the hedge in full
    assert spoken(unsure) == f"{UNSURE_PREFIX} exit. maybe"  # no retake advice for doubt alone
    announcer = Announcer()
    announcer.update(unsure.answer)  # "exit." was read out already: add the doubt
    assert announcer.finished(unsure) == "I'm not sure about this. maybe"
    assert spoken(Turn("q", "a dog", stopped=True)) == "a dog (stopped)" and spoken(None) == ""


def test_measured_retake_advice_is_announced_after_the_answer():
    dark = Turn("q", "A cup.", facts_note="The photo is very dark. Try again with more light.")
    assert Announcer().finished(dark) == "A cup. The photo is very dark. Try again with more light."
    assert spoken(dark) == "A cup. The photo is very dark. Try again with more light."


def test_the_same_words_twice_still_change_the_announce_box():
    first, second = announce_value("Done."), announce_value("Done.")
    assert first != second and first.split(MARK)[0] == second.split(MARK)[0] == "Done."
