"""Screenshot of the app after uploading a photo and asking about it, in headless Chromium.

    python scripts/screenshot.py --out assets/screenshot.png           # the cat photo, two questions
    python scripts/screenshot.py --heatmap --out assets/heatmap.png    # a drawn triangle, shape and colour
    python scripts/screenshot.py --url http://127.0.0.1:7861/          # an app that is already running
    python scripts/screenshot.py --image me.jpg --questions "Who is here?" --transcript  # print the chat

With --heatmap it asks about the drawn triangle (the custom model's own domain), then presses "Where the
model looked" and saves the image, heatmap and chat only.

Without --url it starts the app in this process on a free loopback port. It drives Debian's Chromium
(`apt-get install chromium`) with Playwright, with a browser profile and temp folder in one temporary
directory that is removed at the end, saves the picture and stops everything.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vqa_chat import settings  # noqa: E402
from vqa_chat.chat import privacy  # noqa: E402
from vqa_chat.ports import free_port  # noqa: E402
from vqa_chat.ui.page import AppConfig, build_app, launch_kwargs  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHOTO = ("assets/examples/cat.jpg", ["What is this?", "What colour is it?"])
DRAWN = ("assets/examples/blue_triangle.png", ["What shape is in the image?", "What color is it?"])


USER_MESSAGES = "() => document.querySelectorAll('#chat [data-testid=\"user\"]').length"


# the chat as a person reads it: each question and answer in order, as the page shows them
TRANSCRIPT = """() => [...document.querySelectorAll('#chat [data-testid="user"], #chat [data-testid="bot"]')]
    .map((e) => (e.dataset.testid === 'user' ? 'Q: ' : 'A: ') + e.innerText.trim())"""


# how many pixels of the chat's messages are scrolled out of view
CHAT_HIDDEN = """() => {
    const boxes = [...document.querySelectorAll('#chat *')].filter((e) => e.scrollHeight > e.clientHeight + 1
        && getComputedStyle(e).overflowY !== 'visible');
    return Math.max(0, ...boxes.map((e) => e.scrollHeight - e.clientHeight));
}"""


def ask(page, question: str, timeout_ms: int) -> None:
    before = page.evaluate(USER_MESSAGES)
    box = page.get_by_label("Question", exact=True)
    box.fill(question)
    box.press("Enter")
    # wait until this answer is finished: the chat shows the new question and the status reads Done./Stopped.
    page.wait_for_function(
        f"""(before) => {{
            const status = document.querySelector('#status')?.innerText || '';
            return ({USER_MESSAGES})() > before && /Done|Stopped|⚠/.test(status);
        }}""",
        arg=before,
        timeout=timeout_ms,
    )


def converse(page, url: str, image: str, questions: list[str], timeout: float):
    """Open the app in `page`, upload `image` and ask `questions` in turn; returns the page."""
    page.goto(url)
    page.locator("#image-input input[type=file]").set_input_files(image)
    page.wait_for_selector("#image-input img", timeout=30_000)
    for question in questions:
        ask(page, question, int(timeout * 1000))
    page.wait_for_timeout(500)
    return page


def shoot(url: str, args, browser_dir: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            browser_dir,
            executable_path=args.chromium,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
            device_scale_factor=1,
        )
        # a first chat, not shot: the backend loads, and its one-time "loaded in N s" notice stays there
        converse(browser.new_page(), url, args.image, args.questions[:1], args.timeout).close()
        page = converse(browser.new_page(), url, args.image, args.questions, args.timeout)
        if args.heatmap:
            page.get_by_role("button", name="Where the model looked").click()
            page.locator("#heatmap img").wait_for(timeout=int(args.timeout * 1000))
            page.wait_for_timeout(500)
            row = page.locator("#main-row").bounding_box()
            text = page.locator("#heatmap-text").bounding_box()  # down to the heatmap's description
            bottom = max(text["y"] + text["height"], page.locator("#question").bounding_box()["y"]) + 16
            clip = {"x": row["x"], "y": row["y"], "width": row["width"], "height": bottom - row["y"]}
            page.screenshot(path=args.out, clip=clip, full_page=True)
        else:
            page.screenshot(path=args.out, full_page=True)
        if args.transcript:
            print("\n".join(page.evaluate(TRANSCRIPT)))
        hidden = page.evaluate(CHAT_HIDDEN)
        if hidden > 0:
            print(f"note: the chat scrolls, {hidden} px of it are not in the picture (ask fewer questions)")
        browser.close()


def main() -> None:
    env = settings.read()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default=env.backend,
                   help="the backend selected when the app starts here (default: $VQA_CHAT_BACKEND, custom)")
    p.add_argument("--url", help="drive the app running at this URL instead of starting one here")
    p.add_argument("--image", type=settings.user_path, help=f"default: {PHOTO[0]} ({DRAWN[0]}: --heatmap)")
    p.add_argument("--questions", nargs="+", help="asked in turn (default: about the cat, or the triangle)")
    p.add_argument("--out", default="assets/screenshot.png", type=settings.user_path)
    p.add_argument("--chromium", default=env.chromium, help="default: $VQA_CHAT_CHROMIUM, /usr/bin/chromium")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each answer")
    p.add_argument("--heatmap", action="store_true", help="show where the model looked; shoot that part")
    p.add_argument("--transcript", action="store_true", help="print the questions and answers as shown")
    args = p.parse_args()
    image, questions = DRAWN if args.heatmap else PHOTO
    args.image, args.questions = args.image or image, args.questions or questions

    with tempfile.TemporaryDirectory(prefix="vqa-chat-screenshot-") as tmp:
        os.environ["TMPDIR"] = tmp  # Playwright's driver and Chromium write their temp files in here too
        if args.url:
            shoot(args.url, args, str(Path(tmp) / "profile"))
        else:
            privacy.keep_uploads_private()  # uploads in the app's own temp folder, removed at exit
            demo = build_app(AppConfig(backend=args.backend))
            demo.launch(
                server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, **launch_kwargs()
            )
            try:
                shoot(demo.local_url, args, str(Path(tmp) / "profile"))
            finally:
                demo.close()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
