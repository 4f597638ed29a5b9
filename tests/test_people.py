"""People counted honestly, both ways, on photos made in the test from photos inside installed wheels
(scikit-image, matplotlib's grace_hopper.jpg) and transformations of them (vqa_chat/bench/people_set.py):
a portrait is found also after a JPEG re-save, no-people photos get a negative that admits the detectors'
limits, weaker evidence is hedged, and a tiled group is counted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from vqa_chat.bench import people as people_bench
from vqa_chat.bench import people_set as made
from vqa_chat.photo import facts, people
from vqa_chat.photo.answers import answer, describe
from vqa_chat.photo.people_answers import NONE_SEEN


def counted(image: Image.Image, animal_share: float = 0.0) -> list[people.Person]:
    return [p for p in people.find_people(np.asarray(facts.working_copy(image)), animal_share) if p.sure]


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return made.skimage_photo("astronaut")


def test_a_portrait_is_counted_also_after_a_jpeg_resave(astronaut):
    grace = made.grace_hopper()
    head_and_shoulders = made.crop(astronaut, 0.15, 0.0, 0.75, 0.62)
    for portrait in (grace, made.jpeg(grace), made.jpeg(made.jpeg(grace)), head_and_shoulders,
                     made.jpeg(head_and_shoulders), made.scaled(made.jpeg(grace), 240)):
        found = counted(portrait)
        assert len(found) == 1 and found[0].kind == "face"
        assert people.where(found[0].box) == "centre"


def test_a_portrait_photo_is_answered_with_one_person():
    said = facts.photo_facts(made.jpeg(made.grace_hopper()))
    assert answer("How many people are there?", said) == "One person, in the centre."
    assert "One person, in the centre." in describe(said)


@pytest.mark.parametrize("name", ["chelsea", "coins"])
def test_no_people_photos_get_the_honest_negative(name):
    said = facts.photo_facts(made.skimage_photo(name))
    assert said.people == []
    reply = answer("How many people are there?", said)
    assert reply == NONE_SEEN and "no people" not in reply.lower()


def test_weaker_evidence_is_a_hedge(astronaut):
    person = made.crop(astronaut, 0.1, 0.0, 0.8, 1.0)
    far = made.pasted(made.skimage_photo("rocket"), person, 0.6, 0.6, 0.14)  # far away: face score 0.75
    said = facts.photo_facts(far)
    assert said.people and not any(p.sure for p in said.people)
    assert answer("how many people are there?", said) == "There may be one person, in the centre."
    assert "There may be one person" in describe(said)
    # on a photo the classifier calls an animal, a face is only a hint (a cheetah's face scores high)
    on_animal = people.find_people(np.asarray(astronaut), animal_share=0.9)
    assert on_animal and not any(p.sure for p in on_animal)


def test_a_tiled_group_is_counted_with_where_they_are(astronaut):
    grace = made.grace_hopper()
    three = made.jpeg(made.tiled([grace, astronaut, ImageOps.mirror(grace)], 3))
    found = counted(three)
    assert [people.where(p.box) for p in found] == ["left", "centre", "right"]
    four = made.tiled([astronaut, grace, ImageOps.mirror(astronaut), made.scaled(grace, 200)], 2)
    assert len(counted(four)) == 4


def test_the_labelled_set_and_its_evaluation():
    samples = made.people_set()
    assert len(samples) >= 40 and {s.name for s in samples if s.count == 0} >= {"chelsea", "coins", "page"}
    assert sum(s.count > 0 and s.clear for s in samples) >= 15
    few = people_bench.prepared([s for s in samples if s.name in ("grace_q90", "two_portraits", "coins")])
    figures, wrong = people_bench.evaluate(people.find_people, few)
    assert figures["recall clear"] == 1.0 and figures["claimed on empty"] == 0 and wrong == []
    assert "| chosen |" in people_bench.table({"chosen": figures})
