"""The real page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright), on tiny models.

Covers: upload, ask, the streamed answer, a follow-up, switching backend, describing with the keyboard
alone, stopping a long answer, the live region, focus, shortcuts, the heatmap, high contrast, 200 % zoom,
deleting the session, photo text (a QR code's Markdown and HTML) shown verbatim, and axe-core (zero serious
or critical violations). Screenshots of the main states go to screenshots/ (git-ignored). `make test`
installs Chromium (apt) and axe-core (npm, into .venv/node).
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import qr_photo
from PIL import Image

from vqa_chat import backends, settings
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.engine.types import BackendOptions

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = settings.read().chromium  # $VQA_CHAT_CHROMIUM or Debian's
AXE = REPO / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = REPO / "screenshots"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
BOT = '#chat [data-testid="bot"]'
TIMEOUT = 60_000  # ms
LONG = 200  # max new tokens of the answer to stop (the tiny models never stop by themselves)


def slow_when_long(stream, longer_than: int = LONG, seconds: float = 0.05):
    """Long answers come token by token at a real model's pace (a tiny model answers 100 tokens faster than
    one streamed update of the UI), slowly enough to press Stop halfway."""

    def slowed(image_embeds, prompt, settings, stop=None, **kwargs):
        for piece in stream(image_embeds, prompt, settings, stop, **kwargs):
            if settings.max_new_tokens >= longer_than:
                time.sleep(seconds)
            yield piece

    return slowed


@pytest.fixture(scope="module")
def app_setup(app_setup, tiny_blip2_dir, tiny_vlm):
    """conftest's app (in this process, BLIP-2 first) serving both tiny models, long answers slowed."""
    # without the product token and positions: this tiny model's answers never reach EOS in LONG tokens
    custom = CustomBackend(tiny_vlm(vit_grid=3, mp_product=False, mp_text_pos=False))
    custom.stream = slow_when_long(custom.stream)
    blip2 = Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))
    blip2.stream = slow_when_long(blip2.stream, longer_than=100, seconds=0.01)  # streamed in pieces
    with closing(custom), closing(blip2):
        yield replace(app_setup, backends={"custom": custom, "blip2": blip2})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for need in (CHROMIUM, AXE):
        if not Path(need).exists():
            pytest.fail(f"{need} is missing: run `make test` (it installs Chromium and axe-core)")
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / "axe-violations.json").unlink(missing_ok=True)
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=FLAGS,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1,
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("photos") / "sign.png"
    im = Image.new("RGB", (320, 240), (30, 90, 200))
    im.paste((240, 200, 20), (100, 60, 220, 180))
    im.save(path)
    return str(path)


@pytest.fixture
def page(app, browser):
    page = browser.new_page()
    page.goto(app.url)
    page.wait_for_function(
        "() => window.vqaAnnounce && document.getElementById('vqa-live') && document.querySelector("
        "'#image-input button') && document.getElementById('send-btn')",
        timeout=TIMEOUT,
    )
    page.evaluate(  # record every announcement the live region gets
        """() => { window.heard = []; const live = document.getElementById('vqa-live');
             new MutationObserver(() => { if (live.textContent) window.heard.push(live.textContent); })
             .observe(live, {childList: true, characterData: true, subtree: true}); }"""
    )
    yield page
    page.close()


def upload(page, path: str) -> None:
    page.locator("#image-input input[type=file]").set_input_files(path)
    page.wait_for_selector("#image-input img", timeout=TIMEOUT)


def wait_done(page, answers: int) -> None:
    """Until the status says the answer is finished and the chat shows `answers` bot messages or more."""
    page.wait_for_function(
        """(n) => /Done|Stopped|⚠/.test(document.querySelector('#status')?.innerText || '')
                  && document.querySelectorAll('#chat [data-testid="bot"]').length >= n""",
        arg=answers, timeout=TIMEOUT,
    )  # fmt: skip


def last_bot(page) -> str:
    return page.locator(BOT).last.inner_text().strip()


def set_max_tokens(page, n: int) -> None:
    """Type n into the Max new tokens box until the slider (the value sent with the question) has it: right
    after the settings open, a typed number is sometimes dropped, and the question would go with the
    default of 40 tokens, an answer over before a test can stop it."""
    page.get_by_text("Generation settings").click()
    box = page.get_by_label("number input for Max new tokens")
    slider = page.get_by_label("range slider for Max new tokens")
    for _ in range(20):
        box.fill(str(n))
        box.press("Tab")
        page.wait_for_timeout(250)
        if slider.input_value() == str(n):
            return
    raise AssertionError(f"Max new tokens did not take {n}: the slider shows {slider.input_value()}")


def watch_chat(page) -> None:
    page.evaluate(
        """() => { window.lengths = []; const chat = document.getElementById('chat');
             new MutationObserver(() => { const b = chat.querySelectorAll('[data-testid="bot"]');
               if (b.length) window.lengths.push(b[b.length - 1].innerText.length); })
             .observe(chat, {childList: true, characterData: true, subtree: true}); }"""
    )


def focused_in(page, selector: str) -> bool:
    return page.evaluate("(s) => !!document.activeElement?.closest(s)", selector)


def assert_accessible(page) -> None:
    violations = axe_violations(page)
    if violations:  # the whole list, for whoever fixes it
        (SHOTS / "axe-violations.json").write_text(json.dumps(violations, indent=1))
    assert violations == [], "serious/critical axe-core violations: see screenshots/axe-violations.json"


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [[n["target"], n["html"][:200]] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_ask_stream_follow_up_switch_backend_and_heatmap(page, photo):
    assert_accessible(page)  # the empty page
    upload(page, photo)
    set_max_tokens(page, 120)
    watch_chat(page)
    question = page.get_by_label("Question", exact=True)
    question.fill("What is on the sign?")
    question.press("Enter")
    wait_done(page, 1)
    first = last_bot(page)
    lengths = page.evaluate("window.lengths")
    assert first and len({n for n in lengths if n > 1}) >= 2, "the answer should arrive in pieces"
    page.wait_for_function("() => window.heard.length > 0", timeout=TIMEOUT)
    page.wait_for_timeout(300)
    heard = page.evaluate("window.heard")
    assert len(heard) <= first.count(". ") + 2, f"announced per sentence or whole, not per token: {heard}"
    assert heard[-1].strip() in first or first.startswith("I'm not sure")
    page.wait_for_function("() => !!document.activeElement?.closest('#question')", timeout=TIMEOUT)
    page.screenshot(path=str(SHOTS / "01-answer.png"), full_page=True)

    question.fill("What colour is it?")  # a follow-up in the same conversation
    page.get_by_role("button", name="Send", exact=True).click()
    wait_done(page, 2)
    assert page.locator(BOT).count() >= 2
    page.screenshot(path=str(SHOTS / "02-follow-up.png"), full_page=True)

    page.get_by_label("Custom").check()  # switch backend mid-conversation
    question.fill("And the shape?")
    question.press("Enter")
    page.wait_for_function(
        "() => document.getElementById('chat').innerText.includes('Now answering with the Custom backend')",
        timeout=TIMEOUT,
    )
    wait_done(page, 3)

    page.get_by_role("button", name="Where the model looked").click()
    heat = page.locator("#heatmap img")
    heat.wait_for(timeout=TIMEOUT)
    assert "Heatmap of where the model looked" in heat.get_attribute("alt")
    assert "brightest area" in page.locator("#heatmap-text").inner_text()
    page.screenshot(path=str(SHOTS / "03-heatmap.png"), full_page=True)
    assert_accessible(page)  # with a chat, a heatmap and notices


def test_describe_with_the_keyboard_alone(page, photo):
    with page.expect_file_chooser() as chooser:  # listening before any key is pressed
        page.keyboard.press("Alt+Shift+I")  # focus the image upload button
        focus = "() => document.activeElement?.matches('#image-input button')"
        page.wait_for_function(focus, timeout=TIMEOUT)
        page.keyboard.press("Enter")  # opens the file chooser
    chooser.value.set_files(photo)
    page.wait_for_selector("#image-input img", timeout=TIMEOUT)
    page.keyboard.press("Alt+Shift+D")
    wait_done(page, 1)
    chat = page.locator("#chat").inner_text()
    assert "Describe this image in detail." in chat
    description = last_bot(page)
    assert description
    page.wait_for_function("() => !!document.activeElement?.closest('#question')", timeout=TIMEOUT)
    page.screenshot(path=str(SHOTS / "04-describe.png"), full_page=True)
    page.keyboard.type("Is it outside?")  # the follow-up, still with the keyboard only
    page.keyboard.press("Enter")
    wait_done(page, 2)
    page.evaluate("window.heard = []")
    page.keyboard.press("Alt+Shift+R")  # Repeat last answer: the whole answer again, in the live region
    page.wait_for_function("() => window.heard.length > 0", timeout=TIMEOUT)
    assert page.evaluate("window.heard.at(-1)").strip().startswith(last_bot(page)[:10].strip())
    page.evaluate("() => { window.spoken = []; speechSynthesis.speak = (u) => window.spoken.push(u.text); }")
    page.keyboard.press("Alt+Shift+A")  # Read aloud: the browser's speech synthesis gets the whole answer
    page.wait_for_function("() => window.spoken.length > 0", timeout=TIMEOUT)
    assert page.evaluate("window.spoken[0]").startswith(last_bot(page)[:10].strip())
    page.keyboard.press("Alt+Shift+N")  # New chat
    page.wait_for_function(f"() => document.querySelectorAll('{BOT}').length === 0", timeout=TIMEOUT)


def test_stop_a_long_answer_with_escape(page, photo):
    upload(page, photo)
    page.get_by_label("Custom").check()
    set_max_tokens(page, LONG)
    question = page.get_by_label("Question", exact=True)
    question.fill("Tell me everything about it.")
    question.press("Enter")
    page.wait_for_function(  # the answer itself is streaming (not a "Loading the backend…" note before it)
        """() => { const sel = '#chat [data-testid="user"], #chat [data-testid="bot"]';
                   const [q, a] = [...document.querySelectorAll(sel)].slice(-2);
                   return q && q.dataset.testid === 'user' && q.innerText.includes('Tell me everything')
                     && a.dataset.testid === 'bot' && a.innerText.replace('…', '').trim().length > 5; }""",
        timeout=TIMEOUT,
    )
    page.keyboard.press("Escape")
    wait_done(page, 1)
    assert "(stopped)" in last_bot(page)
    page.screenshot(path=str(SHOTS / "05-stopped.png"), full_page=True)


def test_high_contrast_zoom_and_delete(page, photo, browser):
    upload(page, photo)
    question = page.get_by_label("Question", exact=True)
    question.fill("What is it?")
    question.press("Enter")
    wait_done(page, 1)
    page.get_by_label("High contrast").check()
    page.wait_for_function("() => document.body.classList.contains('vqa-hc')")
    bg = page.evaluate("getComputedStyle(document.querySelector('.gradio-container')).backgroundColor")
    assert bg in ("rgb(0, 0, 0)", "rgba(0, 0, 0, 0)")
    page.screenshot(path=str(SHOTS / "06-high-contrast.png"), full_page=True)
    assert_accessible(page)
    page.get_by_label("High contrast").uncheck()

    zoomed = browser.new_page()
    zoomed.set_viewport_size({"width": 640, "height": 450})  # what 1280 x 900 shows at 200 % zoom
    zoomed.goto(page.url)
    zoomed.wait_for_selector("#send-btn", timeout=TIMEOUT)
    overflow = zoomed.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page scrolls sideways at 200 % zoom ({overflow} px)"
    for name in ("Send", "Describe image", "Stop", "New chat"):
        button = zoomed.get_by_role("button", name=name, exact=True)
        box = button.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 641, name
    zoomed.screenshot(path=str(SHOTS / "07-zoom-200.png"), full_page=True)
    zoomed.close()

    page.get_by_role("button", name="Delete my session").click()
    page.wait_for_function(
        "() => (document.querySelector('#status')?.innerText || '').includes('session was deleted')",
        timeout=TIMEOUT,
    )
    assert page.locator(BOT).count() == 0


def test_photo_text_is_shown_verbatim(page, tmp_path, monkeypatch):
    """A QR code holding Markdown, HTML and links of every scheme, and a question typed with markup: the chat
    shows their very characters (Gradio's marked and sanitiser), and nothing in them becomes a link."""
    monkeypatch.setattr(backends.get_backend("custom"), "picture_in_domain", lambda *a: False)  # facts answer
    payload = (
        "[tap me](javascript:alert(1)) <script>alert(1)</script> <img src=x onerror=alert(1)>\n"
        "# not a heading | a | b | `c` **d** _e_ $$x^2$$ \\ &lt; https://example.com/a_b www.example.com "
        "a@b.co data:text/html,x file:///etc/passwd مرحبا שלום 👍"
    )  # read by OpenCV from the photo below, exactly (checked: its reader misses some larger codes)
    upload(page, str(qr_photo(tmp_path / "qr.png", payload)))
    page.get_by_label("Custom").check()
    question = page.get_by_label("Question", exact=True)
    asked = "Scan the *QR code* <b>now</b> & [tell](me)"
    question.fill(asked)
    question.press("Enter")
    wait_done(page, 1)
    said = f'A QR code: "{payload}".'
    assert page.locator('#chat [data-testid="user"]').last.inner_text().strip() == asked
    answer = page.locator(BOT).last
    assert answer.locator("p").first.inner_text() == said
    source = "From photo facts (the Custom model wasn't trained on this)."
    assert answer.locator("p em").inner_text() == source
    assert answer.locator("a, img, script, code, h1, table").count() == 0
    hrefs = page.locator("#chat a[href]").evaluate_all("links => links.map(a => a.href)")
    assert all(href.startswith(("http://", "https://")) for href in hrefs), hrefs
    page.wait_for_function("() => window.heard.length > 0", timeout=TIMEOUT)
    heard = " ".join(" ".join(page.evaluate("window.heard")).split())
    assert " ".join(said.split()) in heard  # the screen reader hears the same characters
    page.screenshot(path=str(SHOTS / "08-verbatim.png"), full_page=True)
