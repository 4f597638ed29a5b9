"""Benchmark the chat on the custom model:  python -m vqa_chat.bench [--json out.json] [--markdown out.md]

1. follow-up turns: time to first token (TTFT) of turn 1 and turn 5 of easy-VQA conversations (5 questions
   about one image, the app's prompt format and default settings), ours vs a naive implementation that
   re-encodes the image and prefills the whole prompt with transformers' `generate` on every turn. Ours in
   both custom-model modes: `question` (exact; the Q-Former reads each question, so the LM prefix changes
   every turn) and `first` (image tokens pinned per image, so the prefix KV cache is reused).
2. streaming: tokens/s through `backend.stream` (scheduler thread -> queue -> reader) vs a plain `generate`.
3. sessions: aggregate tokens/s of N concurrent sessions vs one session; p50/p95 TTFT and time between
   tokens; also N sessions each running their own `generate` in a thread (what serving without batching
   gives).
4. int8: decode tokens/s (batch 1) of the int8 LM vs fp32, and both vs the memory-bandwidth bound
   (measured read bandwidth / weight bytes read per token); fp32 on the compiled decode kernels vs F.linear.
5. app: through the real app (app.py in a child process, gradio_client; bench/through_app.py), the
   default short answers: N sessions asking at once vs one session, and one answer's time vs the same
   follow-up asked directly with backend.stream (--skip-app leaves this out).
GPU flags (--device cuda --dtype bfloat16 --attn-implementation sdpa --compile) switch the same code paths.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass, fields, replace

import torch

from vqa_chat.backends.custom import CustomBackend
from vqa_chat.bench import measure as M
from vqa_chat.bench import through_app as A
from vqa_chat.bench.report import Row, machine, text_table, write
from vqa_chat.chat.conversation import format_prompt
from vqa_chat.engine import decode_kernels
from vqa_chat.engine.quantize import weight_bytes_per_token
from vqa_chat.engine.types import BackendOptions, GenerationSettings


@dataclass
class BenchConfig:
    model: str | None = None  # custom model folder (default: the bundled assets/custom-model)
    device: str = "cpu"
    dtype: str | None = None  # default: fp32 on CPU, fp16 on CUDA
    attn_implementation: str | None = None  # GPU path: sdpa / eager / flash_attention_2
    compile: bool = False  # GPU path: static KV cache + torch.compile (engine "generate")
    threads: int = 0  # torch threads (0 = torch's default: all cores)
    conversations: int = 4  # easy-VQA images whose 5-question conversations are timed (+1 warm-up)
    turns: int = 5
    tokens: int = 64  # answer length for the throughput figures (EOS forbidden until then)
    repeats: int = 3
    sessions: int = 8
    accuracy: int = 0  # easy-VQA images for the pinned-mode accuracy check (0 = skip)
    bandwidth_mb: int = 512
    json: str | None = None
    markdown: str | None = None
    quick: bool = False  # a seconds-long smoke run (tests): tiny counts everywhere
    skip_app: bool = False  # leave out section 5 (it starts app.py in a child process)


def parse_args(argv=None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for f in fields(BenchConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action="store_true")
        else:
            kind = int if f.type == "int" else str
            p.add_argument(flag, type=kind, default=f.default)
    cfg = BenchConfig(**vars(p.parse_args(argv)))
    if cfg.quick:
        cfg = replace(cfg, conversations=1, turns=3, tokens=8, repeats=1, sessions=2, bandwidth_mb=32,
                      accuracy=min(cfg.accuracy, 2))  # fmt: skip
    return cfg


def easy_vqa_conversations(n: int, turns: int, skip: int = 0) -> list[list[dict]]:
    """The first n easy-VQA test images with >= `turns` questions: each image's first `turns` records."""
    from vqa_chat.data.datasets import load_easy_vqa

    by_image: dict = {}
    for r in load_easy_vqa("test"):
        by_image.setdefault(r["image_id"], []).append(r)
    groups = [g[:turns] for g in by_image.values() if len(g) >= turns]
    return groups[skip : skip + n]


@dataclass
class Setup:
    """What every section uses: the three ways of serving the same loaded model, and the inputs."""

    options: BackendOptions
    exact: CustomBackend  # ours, image tokens from each question (the default)
    pinned: CustomBackend  # ours, image tokens pinned per image
    naive: CustomBackend  # transformers' generate per answer, no reuse
    convs: list[list[dict]]  # easy-VQA conversations; the first one warms up
    images: list
    prompts: list[str]  # one-turn prompts of the conversations' first questions
    patches: list[torch.Tensor]

    def close(self) -> None:
        for backend in (self.exact, self.pinned, self.naive):
            backend.close()  # their engine threads


def setup(cfg: BenchConfig) -> Setup:
    from vqa_chat.chat.images import load_image

    options = BackendOptions(
        model=cfg.model, device=cfg.device, dtype=cfg.dtype, compile=cfg.compile,
        attn_implementation=cfg.attn_implementation, max_batch=max(16, cfg.sessions),
    )  # fmt: skip
    exact = CustomBackend.load(options)
    pinned = CustomBackend(exact.model, exact.model_id, replace(options, image_tokens="first"))
    naive = CustomBackend(exact.model, exact.model_id, replace(options, engine="generate"))
    convs = easy_vqa_conversations(cfg.conversations + 1, cfg.turns)
    images = [load_image(c[0]["image"]) for c in convs]
    prompts = [format_prompt([], c[0]["question"]) for c in convs]
    patches = [exact.encode_image(im) for im in images]
    return Setup(options, exact, pinned, naive, convs, images, prompts, patches)


def followups(cfg: BenchConfig, s: Setup) -> list[Row]:
    """1. TTFT of turn 1 and turn N, ours (both modes) vs naive."""
    from vqa_chat.chat.images import load_image

    settings = GenerationSettings()  # the app's defaults
    ttft = {"exact": [], "pinned": [], "naive": []}
    for i, conv in enumerate(s.convs):
        image, questions = load_image(conv[0]["image"]), [r["question"] for r in conv]
        for mode in ttft:
            backend = getattr(s, mode)
            times, _ = M.conversation_ttft(backend, image, questions, settings, naive=mode == "naive")
            if i:  # conversation 0 warms up
                ttft[mode].append(times)

    def ms(mode: str, turn: int) -> float:
        return 1000 * M.median([c[turn] for c in ttft[mode]])

    n, last = cfg.turns, cfg.turns - 1
    pinned_n, exact_n, naive_n = ms("pinned", last), ms("exact", last), ms("naive", last)
    sec = "follow-ups"
    rows = [
        Row(sec, "TTFT turn 1", ms("exact", 0), "ms", ms("naive", 0), "naive turn 1"),
        Row(sec, f"TTFT turn {n}, pinned", pinned_n, "ms", ms("pinned", 0), "pinned turn 1", "<= 1x",
            pinned_n <= ms("pinned", 0)),
        Row(sec, f"TTFT turn {n}, pinned", pinned_n, "ms", naive_n, f"naive turn {n}", "<= 0.5x",
            pinned_n <= 0.5 * naive_n),
        Row(sec, f"TTFT turn {n}, exact", exact_n, "ms", ms("exact", 0), "exact turn 1", "<= 1x",
            exact_n <= ms("exact", 0)),
        Row(sec, f"TTFT turn {n}, exact", exact_n, "ms", naive_n, f"naive turn {n}", "<= 0.5x",
            exact_n <= 0.5 * naive_n),
    ]  # fmt: skip
    return rows


def accuracy(cfg: BenchConfig, s: Setup) -> list[Row]:
    """The accuracy cost of pinned image tokens: follow-up answers of easy-VQA conversations (last: slow)."""
    from vqa_chat.eval.evaluate import greedy_settings

    convs = easy_vqa_conversations(cfg.accuracy, cfg.turns, skip=100)  # not the timed images
    acc = M.conversation_accuracy(s.exact, s.pinned, convs, greedy_settings())
    sec = "follow-ups"
    return [
        Row(sec, "easy-VQA accuracy, turns 2+, pinned", acc["pinned"], "%", acc["exact"], "exact"),
        Row(sec, "easy-VQA accuracy, turns 2+, exact", acc["exact"], "%", acc["alone"], "asked alone"),
    ]


def streaming(cfg: BenchConfig, s: Setup) -> list[Row]:
    """2. tokens/s through backend.stream vs a plain generate."""
    ours, plain = M.streaming_vs_generate(s.exact, s.patches[0], s.prompts[0], cfg.tokens, cfg.repeats)
    metric, ok = f"tokens/s, {cfg.tokens}-token answer, backend.stream", ours >= 0.95 * plain
    return [Row("streaming", metric, ours, "tok/s", plain, "plain generate", ">= 0.95x", ok)]


def sessions(cfg: BenchConfig, s: Setup) -> list[Row]:
    """3. N concurrent sessions on one model vs one session, and vs N threads of generate."""
    k = len(s.patches)
    jobs = [(s.patches[i % k], s.prompts[i % k]) for i in range(cfg.sessions)]
    M.concurrent_sessions(s.exact, jobs[:2], 4)  # warm-up
    one = [M.concurrent_sessions(s.exact, jobs[:1], cfg.tokens) for _ in range(cfg.repeats)]
    many = [M.concurrent_sessions(s.exact, jobs, cfg.tokens) for _ in range(cfg.repeats)]
    threads = M.concurrent_sessions(s.naive, jobs, cfg.tokens)
    single, agg = M.median([r["tokens_per_s"] for r in one]), M.median([r["tokens_per_s"] for r in many])

    def pct(runs, key, q) -> float:
        return 1000 * M.percentile([x for r in runs for x in r[key]], q)

    n, sec = cfg.sessions, "sessions"
    return [
        Row(sec, f"aggregate tokens/s, {n} sessions", agg, "tok/s", single, "1 session", ">= 3x",
            agg >= 3 * single),
        Row(sec, f"aggregate tokens/s, {n} sessions", agg, "tok/s", threads["tokens_per_s"],
            f"{n} threads of generate"),
        Row(sec, f"TTFT p50, {n} sessions", pct(many, "ttft", 50), "ms", pct(one, "ttft", 50), "1 session"),
        Row(sec, f"TTFT p95, {n} sessions", pct(many, "ttft", 95), "ms", pct(one, "ttft", 95), "1 session"),
        Row(sec, f"time between tokens p50, {n} sessions", pct(many, "gaps", 50), "ms", pct(one, "gaps", 50),
            "1 session"),
        Row(sec, f"time between tokens p95, {n} sessions", pct(many, "gaps", 95), "ms", pct(one, "gaps", 95),
            "1 session"),
    ]  # fmt: skip


def int8(cfg: BenchConfig, s: Setup) -> tuple[list[Row], dict]:
    """4. int8 vs fp32 decode speed, both against the memory-bandwidth bound."""
    bandwidth = M.read_bandwidth(cfg.bandwidth_mb)
    q = CustomBackend(s.exact.model, s.exact.model_id, replace(s.options, quantize="int8"))  # same model
    fp32_bytes = weight_bytes_per_token(s.exact.model.lm)
    int8_bytes = weight_bytes_per_token(q.scheduler.decode_lm)
    fp32_rate = M.decode_rate(s.exact, s.patches[0], s.prompts[0], cfg.tokens, cfg.repeats)
    int8_rate = M.decode_rate(q, s.patches[0], s.prompts[0], cfg.tokens, cfg.repeats)
    kernels = decode_kernels.compiled_linears(s.exact.model.lm)
    if kernels:  # the same decode steps on F.linear (MKL), for comparison
        decode_kernels.plain_linears(s.exact.model.lm)
        plain_rate = M.decode_rate(s.exact, s.patches[0], s.prompts[0], cfg.tokens, cfg.repeats)
        decode_kernels.compile_decode_linears(s.exact.model.lm)
    settings = GenerationSettings()
    same = sum(s.exact.generate(p, prompt, settings) == q.generate(p, prompt, settings)
               for p, prompt in zip(s.patches, s.prompts))  # fmt: skip
    q.close()
    sec, rate = "int8", "decode tokens/s (batch 1)"
    rows = [
        Row(sec, "memory read bandwidth", bandwidth / 1e9, "GB/s"),
        Row(sec, f"{rate}, int8", int8_rate, "tok/s", fp32_rate, "fp32"),
        Row(sec, f"{rate}, fp32", fp32_rate, "tok/s", bandwidth / fp32_bytes,
            f"bound, {fp32_bytes / 1e6:.0f} MB/tok", ">= 0.5x", fp32_rate >= 0.5 * bandwidth / fp32_bytes),
        Row(sec, f"{rate}, int8", int8_rate, "tok/s", bandwidth / int8_bytes,
            f"bound, {int8_bytes / 1e6:.0f} MB/tok", ">= 0.5x", int8_rate >= 0.5 * bandwidth / int8_bytes),
    ]  # fmt: skip
    if kernels:
        rows.insert(3, Row(sec, f"{rate}, fp32, compiled kernels", fp32_rate, "tok/s", plain_rate,
                           "F.linear (MKL)"))  # fmt: skip
    meta = {"int8_same_answers": f"{same}/{len(s.prompts)}", "fp32_bytes_per_token": fp32_bytes,
            "int8_bytes_per_token": int8_bytes, "bandwidth_bytes_per_s": bandwidth}  # fmt: skip
    return rows, meta


def app(cfg: BenchConfig, s: Setup) -> list[Row]:
    """5. through the app: short answers of N sessions at once vs one session; app vs direct."""
    convs = easy_vqa_conversations(cfg.sessions, cfg.turns, skip=len(s.convs))  # one image per session
    runs = A.through_app(cfg.model, convs, cfg.sessions, cfg.repeats + 2)
    alone = M.median(A.direct(s.exact, convs[0], runs["session0"]))
    n, one, many = cfg.sessions, M.median(runs["one"]), M.median(runs["many"])
    return [
        Row("app", f"short answers/s, {n} sessions at once, through the app", n / many, "ans/s", 1 / one,
            "1 session", ">= 3x", n / many >= 3 / one),
        Row("app", "short answer, through the app", 1000 * one, "ms", 1000 * alone, "direct backend.stream",
            "<= +100 ms", one - alone <= 0.1),
    ]  # fmt: skip


def run(cfg: BenchConfig) -> tuple[list[Row], dict]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    s = setup(cfg)
    rows, extra = [], {"load_average_start": A.load_average()}
    try:
        for name, section in (("follow-up turns", followups), ("streaming", streaming),
                              ("sessions", sessions)):  # fmt: skip
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows += section(cfg, s)
        if cfg.device == "cpu":
            print("int8 ...", file=sys.stderr, flush=True)
            more, extra = int8(cfg, s)
            rows += more
        if cfg.accuracy:
            print("accuracy of follow-ups ...", file=sys.stderr, flush=True)
            rows += accuracy(cfg, s)
        if not cfg.skip_app:
            print("through the app ...", file=sys.stderr, flush=True)
            rows += app(cfg, s)
    finally:
        s.close()
    extra["load_average_end"] = A.load_average()  # (1, 5, 15 minutes): other work on the machine
    meta = {
        "machine": machine(), "model": s.exact.model_id, "device": cfg.device,
        "dtype": str(next(s.exact.model.lm.parameters()).dtype).replace("torch.", ""),
        "command": "python -m vqa_chat.bench " + shlex.join(sys.argv[1:]), "config": vars(cfg),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **extra,
    }  # fmt: skip
    return rows, meta


def main(argv=None) -> int:
    cfg = parse_args(argv)
    rows, meta = run(cfg)
    print(text_table(rows))
    for key in ("int8_same_answers",):
        if key in meta:
            print(f"int8 greedy answers equal to fp32: {meta[key]}")
    write(rows, meta, cfg.json, cfg.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
