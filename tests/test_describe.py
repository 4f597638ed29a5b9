"""Describe mode: BLIP-2's composed description, the custom model's describe prompt, follow-ups after it."""

from __future__ import annotations

import torch
from fakes import FakeBackend
from PIL import Image

from vqa_chat.backends.base import Capabilities
from vqa_chat.chat import describe
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import GenerationSettings

ANSWERS = {  # BLIP-2 part prompt -> answer
    "": "a man riding a red bicycle",
    "this is a picture of": "a man on a bike in a city street",
    "Question: What are the main colours in this image? Answer:": "red and grey",
    "Question: How many people are in this image? Answer:": "1",
    "Question: Is there any writing in this image? Answer:": "yes",
    "Question: What does the writing in this image say? Answer:": "stop",
}


class FakeBlip2(FakeBackend):
    """Answers the describe prompts from ANSWERS, anything else with "w0 w1 ..."."""

    capabilities = Capabilities(composes_descriptions=True)

    def __init__(self, answers=ANSWERS):
        super().__init__("blip2")
        self.answers = answers

    def stream(self, image_embeds, prompt, settings, stop=None, state=None, log=None):
        self.prompts.append(prompt)
        if prompt in self.answers:
            yield " " + self.answers[prompt]
        else:
            yield from (f" w{i}" for i in range(settings.max_new_tokens))


def test_composed_description_combines_caption_prompted_caption_and_questions():
    d = describe.composed_description(FakeBlip2(), torch.zeros(1, 4, 8), GenerationSettings())
    text = "".join(d)
    assert text == (
        "A man riding a red bicycle. It looks like a picture of a man on a bike in a city street. "
        "The main colours are red and grey. There is one person. "
        'There is some writing; it seems to say "stop".'
    )
    assert d.caption == "a man riding a red bicycle"


def test_composed_description_skips_what_adds_nothing():
    answers = dict(ANSWERS)
    answers["this is a picture of"] = "a man riding a bicycle"  # says the caption again
    answers["Question: How many people are in this image? Answer:"] = "none"
    answers["Question: Is there any writing in this image? Answer:"] = "no"
    d = describe.composed_description(FakeBlip2(answers), torch.zeros(1, 4, 8), GenerationSettings())
    text = "".join(d)
    assert "It looks like" not in text
    assert "I don't see any people." in text and "I don't see any writing." in text


def test_sentences_and_people_counts():
    assert describe.count_people("two") == 2 and describe.count_people("3 people") == 3
    assert describe.count_people("a lot") is None
    assert describe.sentence("people", "2") == "There are two people."
    assert describe.sentence("people", "many") == ""  # not a count: said nothing rather than guess
    assert describe.similar("a red car on a road", "the red car on the road")


def test_describe_prompt_matches_the_custom_model_training_format():
    from vqa_chat.chat.conversation import format_prompt

    assert format_prompt([], describe.describe_question()) == (
        "Question: Describe this image in detail. Answer:"
    )


def picture(tmp_path):
    path = tmp_path / "pic.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return str(path)


def test_session_describe_with_one_prompt_model_then_follow_up(fake, tmp_path):
    s = ChatSession()
    list(s.describe(picture(tmp_path), "fake", GenerationSettings(max_new_tokens=3)))
    assert fake["fake"].prompts == ["Question: Describe this image in detail. Answer:"]
    list(s.ask(None, "What colour?", "fake", GenerationSettings(max_new_tokens=2)))
    assert fake["fake"].prompts[-1] == (
        "Question: Describe this image in detail. Answer: w0 w1 w2 Question: What colour? Answer:"
    )
    assert [t["question"] for t in s.history()] == ["Describe this image in detail.", "What colour?"]


def test_session_describe_on_blip2_composes_and_follow_up_continues(install, tmp_path):
    blip2 = FakeBlip2()
    install(blip2=blip2)
    s = ChatSession()
    list(s.describe(picture(tmp_path), "blip2", GenerationSettings()))
    description = s.history()[0]["answer"]
    assert description.startswith("A man riding a red bicycle.") and blip2.encoded == 1
    list(s.ask(None, "Is it raining?", "blip2", GenerationSettings(max_new_tokens=2)))
    assert blip2.prompts[-1] == (
        f"Question: Describe this image in detail. Answer: {description} Question: Is it raining? Answer:"
    )
    assert blip2.encoded == 1  # the image was encoded once for the description and the follow-up


def test_blip2_describe_adds_the_text_ocr_read_without_putting_it_in_later_prompts(install, tmp_path):
    from PIL import ImageDraw, ImageFont

    blip2 = FakeBlip2()
    install(blip2=blip2)
    sign = Image.new("RGB", (640, 240), "white")  # a well-lit sign: its text is read, no advice to retake
    ImageDraw.Draw(sign).text((40, 80), "OPEN 24 HOURS", fill="black", font=ImageFont.load_default(size=64))
    sign.save(tmp_path / "sign.png")
    s = ChatSession()
    list(s.describe(str(tmp_path / "sign.png"), "blip2", GenerationSettings()))
    turn = s.conversation.turns[-1]
    assert turn.facts_note == 'The text reads "OPEN 24 HOURS".'
    assert turn.said().startswith("A man riding a red bicycle.") and turn.said().endswith(turn.facts_note)
    list(s.ask(None, "Is it open?", "blip2", GenerationSettings(max_new_tokens=2)))
    assert "24 HOURS" not in blip2.prompts[-1]  # the model's own words carry the conversation


def test_regenerate_keeps_the_turns_mode(install, tmp_path):
    blip2 = FakeBlip2()
    install(blip2=blip2)
    s = ChatSession()
    list(s.describe(picture(tmp_path), "blip2", GenerationSettings()))
    assert s.conversation.turns[-1].mode == "describe"
    list(s.regenerate("blip2", GenerationSettings()))  # composed again, not asked as a question
    assert s.conversation.turns[-1].mode == "describe" and len(s.conversation.turns) == 1
    assert s.history()[0]["answer"].startswith("A man riding a red bicycle.")
    list(s.ask(None, describe.describe_question(), "blip2", GenerationSettings(max_new_tokens=2)))
    assert s.conversation.turns[-1].mode == "ask" and s.history()[-1]["answer"] == "w0 w1"  # typed: asked
