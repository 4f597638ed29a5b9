"""Prefix KV reuse across turns: cached answers == uncached answers (greedy), on tiny random models."""

from __future__ import annotations

from contextlib import closing

import pytest
import torch
from PIL import Image

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat.conversation import Turn, format_prompt
from vqa_chat.engine import kv as kvlib
from vqa_chat.engine.types import BackendOptions, GenerationSettings

QUESTIONS = ["what is in the picture?", "what color is the car?", "how many dogs are there?",
             "where is the man?", "what is the woman holding?"]  # fmt: skip
SETTINGS = [GenerationSettings(max_new_tokens=6, plain=True), GenerationSettings(max_new_tokens=6)]


def conversation(backend, image_embeds, settings, state=None) -> tuple[list[str], list[int]]:
    """Five turns in the app's prompt format; returns the answers and the state's reuse after each turn."""
    turns, answers, hits = [], [], []
    for q in QUESTIONS:
        prompt = format_prompt(turns, q)
        kwargs = {"state": state} if state is not None else {}
        answer = "".join(backend.stream(image_embeds, prompt, settings, **kwargs)).strip()
        turns.append(Turn(question=q, answer=answer))
        answers.append(answer)
        hits.append(state.hits if state is not None else 0)
    return answers, hits


@pytest.fixture(scope="module")
def blip2(tiny_blip2_dir):
    with closing(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))) as backend:
        yield backend


@pytest.fixture(scope="module")
def blip2_generate(tiny_blip2_dir):
    with closing(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), engine="generate"))) as backend:
        yield backend


@pytest.fixture
def tiny_custom(tiny_vlm, close_after):
    """`tiny_custom(image_last=False, **options)`: a custom backend on the tiny model (closed afterwards)."""

    def build(image_last=False, **options) -> CustomBackend:
        model = tiny_vlm(lm_image_last=image_last)
        return close_after(CustomBackend(model, options=BackendOptions(**options)))

    return build


def test_kv_stack_take_select_round_trip():
    a = [(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))]  # 1 layer, 3 positions
    b = [(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))]  # 5 positions
    both = kvlib.stack([a, b], [3, 5])  # [2, 2, 5, 4], row 0 left-padded by 2
    assert both[0][0].shape == (2, 2, 5, 4) and both[0][0][0, :, :2].abs().sum() == 0
    assert torch.equal(kvlib.take(both, 0, 3)[0][0], a[0][0])
    assert torch.equal(kvlib.take(both, 1, 5)[0][1], b[0][1])
    only_a = kvlib.select(both, [0], drop_front=2)
    assert torch.equal(only_a[0][0], a[0][0])


def test_prefix_cache_reuses_the_common_prefix_only():
    cache = kvlib.PrefixCache()
    embeds = torch.randn(6, 4)
    cache.store(embeds, [(torch.randn(1, 2, 6, 3), torch.randn(1, 2, 6, 3))])
    assert cache.reuse(embeds)[1] == 5  # the same input: all but the last position (it must run)
    changed = embeds.clone()
    changed[3] += 1
    kv, n = cache.reuse(torch.cat([changed, torch.randn(2, 4)]))
    assert n == 3 and kvlib.length(kv) == 3
    assert cache.reuse(torch.randn(6, 4))[1] == 0


@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "defaults"])
def test_blip2_cached_turns_equal_uncached(blip2, blip2_generate, settings):
    image = blip2.encode_image(Image.new("RGB", (40, 40), (200, 30, 30)))
    cached, hits = conversation(blip2, image, settings, blip2.new_state())
    fresh, _ = conversation(blip2, image, settings)  # the same engine, no reuse
    reference, _ = conversation(blip2_generate, image, settings)  # transformers' generate, no reuse
    assert cached == fresh == reference
    assert all(cached)
    # turn 2 reuses at least the image tokens and the whole first prompt (BOS + "Question: ... Answer:")
    first_prompt = blip2.count_tokens(format_prompt([], QUESTIONS[0]))
    assert hits[0] == 0 and hits[1] >= blip2.num_image_tokens + first_prompt
    assert hits == sorted(hits) and hits[-1] > hits[1]


@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "defaults"])
def test_custom_exact_mode_equals_uncached_and_reuses_only_repeats(tiny_custom, settings):
    backend = tiny_custom()
    reference = tiny_custom(engine="generate")
    patches = backend.encode_image(Image.new("RGB", (40, 40), "blue"))
    state = backend.new_state()
    cached, hits = conversation(backend, patches, settings, state)
    assert cached == conversation(reference, patches, settings)[0]
    # the Q-Former reads the question, so the image tokens (first LM positions) differ every turn
    assert hits == [0] * len(QUESTIONS)
    prompt = format_prompt([], QUESTIONS[0])
    first = "".join(backend.stream(patches, prompt, settings, state=state))
    again = "".join(backend.stream(patches, prompt, settings, state=state))  # Regenerate: same input
    assert first == again and state.hits > 0


@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "defaults"])
def test_custom_exact_mode_with_image_last_reuses_the_conversation(tiny_custom, settings):
    """Image tokens right before the answer (the bundled model): a follow-up's LM input starts with the
    previous turn's prompt, so its KV is reused, and the answers are the uncached ones."""
    backend = tiny_custom(image_last=True)
    reference = tiny_custom(image_last=True, engine="generate")
    patches = backend.encode_image(Image.new("RGB", (40, 40), "blue"))
    state = backend.new_state()
    cached, hits = conversation(backend, patches, settings, state)
    assert cached == conversation(reference, patches, settings)[0]
    reused = [b - a for a, b in zip([0, *hits], hits)]  # positions reused by each turn
    previous = [len(backend.tokenizer(format_prompt([], q)).input_ids) for q in QUESTIONS]
    assert reused[0] == 0 and reused[1] >= previous[0] - 1 and all(r > reused[1] for r in reused[2:])


def test_custom_pinned_image_tokens_reuse_the_prefix(tiny_custom):
    settings = SETTINGS[0]
    backend = tiny_custom(image_tokens="first")
    patches = backend.encode_image(Image.new("RGB", (40, 40), "green"))
    state = backend.new_state()
    cached, hits = conversation(backend, patches, settings, state)
    assert hits[0] == 0 and hits[1] >= backend.num_image_tokens and hits[-1] > hits[1]
    # uncached reference: the same LM input (image tokens of the first prompt), run by transformers' generate
    model, tokenizer = backend.model, backend.tokenizer
    first = tokenizer([format_prompt([], QUESTIONS[0])], return_tensors="pt")
    image, _ = model.image_tokens(patches, first.input_ids, first.attention_mask)
    turns = []
    for q, answer in zip(QUESTIONS, cached):
        ids = tokenizer([format_prompt(turns, q)], return_tensors="pt").input_ids
        embeds = torch.cat([image, model.embed(ids)], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        out = model.lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=settings.max_new_tokens, do_sample=False
        )
        assert tokenizer.decode(out[0], skip_special_tokens=True).strip() == answer
        turns.append(Turn(question=q, answer=answer))


def test_the_session_keeps_one_state_per_backend_and_image(blip2, blip2_generate, tmp_path, install):
    from vqa_chat.chat import session
    from vqa_chat.chat.session import ChatSession

    install(blip2=blip2)
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(red)
    Image.new("RGB", (40, 40), (30, 30, 200)).save(blue)
    s = ChatSession()
    for i, q in enumerate(QUESTIONS[:3]):
        list(s.ask(str(red) if i == 0 else None, q, "blip2", SETTINGS[1]))
    state = s.kv["blip2"]
    assert state.hits > 0  # turns 2 and 3 reused the prefix
    # the answers are those of the uncached reference conversation
    expected, _ = conversation(blip2_generate, blip2.encode_image(s.image), SETTINGS[1])
    assert [t["answer"] for t in s.history()] == expected[:3]
    list(s.ask(str(blue), QUESTIONS[0], "blip2", SETTINGS[1]))  # a new image: a new, empty state
    assert s.kv["blip2"] is not state and s.kv["blip2"].hits == 0
    s.reset()
    assert s.kv == {}
    assert session.ChatSession().kv == {}


def test_the_memory_budget_drops_the_least_recently_used_caches(monkeypatch):
    budget = kvlib.Budget(limit_bytes=3 * 4000)
    monkeypatch.setattr(kvlib, "BUDGET", budget)

    def cache_of(n_bytes: int) -> kvlib.PrefixCache:
        c = kvlib.PrefixCache()
        half = (n_bytes - 16) // 8  # floats in K and in V, beside 16 bytes of embeds
        c.store(torch.zeros(1, 4), [(torch.zeros(half), torch.zeros(half))])
        return c

    a, b, c = cache_of(4000), cache_of(4000), cache_of(4000)  # exactly at the limit
    assert a.kv is not None and budget.total == 12000
    d = cache_of(4000)  # over the limit: `a`, the least recently stored, is dropped
    assert a.kv is None and b.kv is not None and d.kv is not None and budget.total == 12000
    b.store(b.embeds, b.kv)  # b is used again: now c is the oldest
    e = cache_of(4000)
    assert c.kv is None and b.kv is not None and e.kv is not None
    del d
    import gc

    gc.collect()
    assert budget.total == 8000  # a collected session's cache no longer counts
