"""A bounded load test of the app on loopback, driven by gradio_client (each Client is its own session).

    python scripts/load_test.py --tiny                   # a tiny random BLIP-2 (what the tests run)
    python scripts/load_test.py --backend custom         # the bundled custom model on the CPU

It starts `app.py` on 127.0.0.1 (or uses --url), then:
1. warm-up: every session uploads its own image (easy-VQA test pictures: the bundled model's domain, so
   the model answers, not the photo facts) and asks one question; the app's RSS is read;
2. load: the sessions ask their remaining turns concurrently (16 sessions x 5 turns by default), each
   question tagged with its session; then every session's /history must hold exactly its own questions and
   the answers /ask returned (no leaks), and a few sessions are replayed alone: greedy answers under load
   must equal the answers of the session alone;
3. the same load again (after /reset), --rounds times in all (8): memory must not keep growing. RSS is
   read after every round and judged by its trend, not by one new high (it moves up and down by 100 MB
   or more between rounds): the least-squares slope of RSS per round, over the rounds after the first
   (which fills caches and allocator pools), at most --rss-slope-mb (40 MB a round); it needs at least
   MIN_TREND_ROUNDS rounds to fit, so fewer --rounds leave memory unjudged;
4. busy: a burst of 3 x (max batch + max waiting) long answers at once: the engine's waiting line fills
   and the rest must get the clear "busy" message, not an error or a hang.
Prints one JSON summary; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vqa_chat.bench import through_app  # noqa: E402
from vqa_chat.data.datasets import load_easy_vqa  # noqa: E402

MIN_TREND_ROUNDS = 5  # rounds the RSS slope is fitted on (after the first): fewer say nothing about a trend


@dataclass
class Config:
    url: str | None = None  # an app that is already running (RSS is then not measured)
    tiny: bool = False  # start the app on a tiny random BLIP-2 built here
    backend: str = "custom"
    sessions: int = 16
    turns: int = 5
    max_new_tokens: int = 12
    max_batch: int = 8  # the app's engine: answers decoded together ...
    max_waiting: int = 8  # ... and answers allowed to wait; sessions <= both together, so no one is busy
    replay: int = 3  # sessions replayed alone to compare answers
    burst_tokens: int = 200
    rounds: int = 8  # the same load this many times (after /reset), RSS read after each
    rss_slope_mb: float = 40.0  # "stable": RSS grows at most this much per round (least squares, round 2 on)
    timeout: float = 600.0


@dataclass
class Summary:
    asks: int = 0
    errors: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    mismatches_alone: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    burst: dict[str, int] = field(default_factory=dict)
    rss_slope_mb: float | None = None  # least-squares RSS growth per round, rounds 2 on
    memory_stable: bool | None = None  # None: not judged (RSS not measured with --url, or too few rounds)
    ok: bool = False


def slope(values: list[float]) -> float:
    """Least-squares slope of `values` against their index: the trend per step."""
    n = len(values)
    x_mean, y_mean = (n - 1) / 2, sum(values) / n
    covariance = sum((x - x_mean) * (y - y_mean) for x, y in enumerate(values))
    return covariance / sum((x - x_mean) ** 2 for x in range(n))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


def start_app(cfg: Config, workdir: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    backend = cfg.backend
    if cfg.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import make_tiny_blip2

        env["VQA_CHAT_BLIP2_MODEL"] = str(make_tiny_blip2(workdir / "tiny-blip2"))
        backend = "blip2"
    capacity = cfg.max_batch + cfg.max_waiting
    args = ["--backend", backend, "--max-batch", str(cfg.max_batch), "--max-waiting", str(cfg.max_waiting),
            "--concurrency", str(4 * capacity), "--max-queue", str(8 * capacity)]  # fmt: skip
    return through_app.start_app(args, workdir / "app.log", env, timeout=120)


def make_images(n: int) -> list[str]:
    """n different easy-VQA test pictures: what the bundled model knows, so the model answers (a picture or
    question outside its domain is answered from photo facts, and the engine would not be tested)."""
    return list(dict.fromkeys(r["image"] for r in load_easy_vqa("test")))[:n]


PHRASINGS = ["what shape is in the image?", "what color is the shape?", "is there a blue shape in the image?",
             "does the image contain a circle?", "what is the color of the shape?"]  # fmt: skip


def question(session: int, turn: int) -> str:
    """An in-domain question tagged with its session and turn (digits are not words to the domain check)."""
    return f"[{session:02d}] {PHRASINGS[turn % len(PHRASINGS)]} ({turn})"


class Session:
    def __init__(self, cfg: Config, url: str, index: int, image: str, backend: str):
        self.cfg, self.index, self.image, self.backend = cfg, index, image, backend
        self.client = Client(url, verbose=False)
        self.answers: list[str] = []

    def ask(self, turn: int) -> str:
        image = handle_file(self.image) if turn == 0 else None
        answer = self.client.predict(image, question(self.index, turn), self.backend, self.cfg.max_new_tokens,
                                     api_name="/ask")  # fmt: skip
        self.answers.append(answer)
        return answer

    def check(self, summary: Summary) -> None:
        """The session's history holds exactly its own questions and the answers /ask gave it."""
        history = self.client.predict(api_name="/history")
        want = [question(self.index, t) for t in range(len(self.answers))]
        if [h["question"] for h in history] != want:
            asked = [h["question"] for h in history]
            summary.leaks.append(f"session {self.index}: history questions {asked}")
        elif [h["said"] for h in history] != [a.strip() for a in self.answers]:
            summary.leaks.append(f"session {self.index}: answers in history differ from what /ask returned")

    def reset(self) -> None:
        self.client.predict(api_name="/reset")
        self.answers = []


def run_turns(sessions: list[Session], turns: range, summary: Summary) -> None:
    def one(s: Session) -> None:
        for t in turns:
            try:
                s.ask(t)
                summary.asks += 1
            except Exception as e:  # every error counts; the run goes on
                summary.errors.append(f"session {s.index} turn {t}: {e}")

    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(one, sessions))


def burst(cfg: Config, url: str, image: str, backend: str, summary: Summary) -> dict[str, int]:
    """3 x capacity long answers at once: the first ones are served, the rest must hear "busy"."""
    n = 3 * (cfg.max_batch + cfg.max_waiting)
    clients = [Client(url, verbose=False) for _ in range(n)]
    counts = {"answered": 0, "busy": 0, "other_errors": 0}
    lock, go = threading.Lock(), threading.Barrier(n)

    def one(client: Client) -> None:
        go.wait()
        key, error = "answered", None
        try:
            client.predict(handle_file(image), question(0, 0), backend, cfg.burst_tokens, api_name="/ask")
        except Exception as e:
            key, error = ("busy", None) if "busy" in str(e).lower() else ("other_errors", e)
        with lock:
            counts[key] += 1
            if error is not None:
                summary.errors.append(f"burst: {type(error).__name__}: {error}")

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, clients))
    return counts


def run(cfg: Config) -> Summary:
    summary = Summary()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        app, url = (None, cfg.url) if cfg.url else start_app(cfg, workdir)
        backend = "blip2" if cfg.tiny else cfg.backend
        try:
            images = make_images(cfg.sessions)
            sessions = [Session(cfg, url, i, images[i], backend) for i in range(cfg.sessions)]
            t0 = time.perf_counter()
            run_turns(sessions, range(1), summary)  # warm-up: one turn each, the model loads
            summary.seconds["warm-up"] = round(time.perf_counter() - t0, 1)
            if app:
                summary.rss_mb["after warm-up"] = rss_mb(app.pid)
            for round_ in range(1, cfg.rounds + 1):
                if round_ > 1:
                    for s in sessions:
                        s.reset()
                    run_turns(sessions, range(1), summary)
                t0 = time.perf_counter()
                run_turns(sessions, range(1, cfg.turns), summary)
                summary.seconds[f"round {round_}"] = round(time.perf_counter() - t0, 1)
                for s in sessions:
                    s.check(summary)
                if app:
                    summary.rss_mb[f"after round {round_}"] = rss_mb(app.pid)
            for s in sessions[: cfg.replay]:  # the same conversation alone must give the same answers
                under_load = list(s.answers)
                s.reset()
                alone = [s.ask(t) for t in range(cfg.turns)]
                summary.mismatches_alone += sum(a != b for a, b in zip(under_load, alone))
            summary.burst = burst(cfg, url, images[0], backend, summary)
            for s in sessions:  # still serving normally after the burst
                s.reset()
            run_turns(sessions[:2], range(2), summary)
        finally:
            if app:
                app.terminate()
                app.wait(30)
    clean = not summary.errors and not summary.leaks and summary.mismatches_alone == 0
    trend = [summary.rss_mb[f"after round {r}"] for r in range(2, cfg.rounds + 1)] if summary.rss_mb else []
    if len(trend) >= MIN_TREND_ROUNDS:  # the same load again must not need more and more memory
        summary.rss_slope_mb = round(slope(trend), 1)
        summary.memory_stable = summary.rss_slope_mb <= cfg.rss_slope_mb
        clean = clean and summary.memory_stable
    summary.ok = clean and summary.burst.get("busy", 0) > 0 and summary.burst.get("other_errors", 1) == 0
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in asdict(Config()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(default) if default is not None else str, default=default)
    summary = run(Config(**vars(p.parse_args(argv))))
    print(json.dumps(asdict(summary), indent=2))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
