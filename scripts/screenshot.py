"""Screenshot of the app after uploading an image and asking two questions, in headless Chromium.

    python scripts/screenshot.py --backend custom --out assets/screenshot.png
    python scripts/screenshot.py --backend custom --heatmap --out assets/heatmap.png

With --heatmap it then presses "Where the model looked" and saves the image, heatmap and chat only.

Starts the app in this process on a free loopback port, drives Debian's Chromium (`apt-get install
chromium`) with Playwright, saves the picture and stops everything.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(page, question: str, turn: int, timeout_ms: int) -> None:
    box = page.get_by_label("Question", exact=True)
    box.fill(question)
    box.press("Enter")
    # wait until the answer is finished: the status line reads Done./Stopped. and the bot has `turn` answers
    page.wait_for_function(
        """(turn) => {
            const status = document.querySelector('#status')?.innerText || '';
            const bots = document.querySelectorAll('#chat .message-row.bot-row, #chat [data-testid="bot"]');
            return /Done|Stopped|⚠/.test(status) && bots.length >= turn;
        }""",
        arg=turn,
        timeout=timeout_ms,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="custom")
    p.add_argument("--image", default="assets/examples/blue_triangle.png")
    p.add_argument("--questions", nargs=2, default=["What shape is in the image?", "What color is it?"])
    p.add_argument("--out", default="assets/screenshot.png")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--user-data-dir", default="/tmp/vqa-chat-chromium-profile")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each answer")
    p.add_argument("--heatmap", action="store_true", help="show where the model looked; shoot that part")
    args = p.parse_args()

    demo = build_app(AppConfig(backend=args.backend))
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, **launch_kwargs())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                args.user_data_dir,
                executable_path=args.chromium,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900},
                device_scale_factor=1,
            )
            page = browser.new_page()
            page.goto(demo.local_url)
            page.locator("input[type=file]").first.set_input_files(args.image)
            page.wait_for_selector("img[src*='gradio_api/file']", timeout=30_000)
            for turn, question in enumerate(args.questions, start=1):
                ask(page, question, turn, int(args.timeout * 1000))
            page.wait_for_timeout(500)
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
            browser.close()
        print(f"saved {args.out}")
    finally:
        demo.close()


if __name__ == "__main__":
    main()
