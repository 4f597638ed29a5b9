"""How close is the memory check's estimate to a real load's peak? (backends/memory.py)

    python scripts/load_peak.py [--vision-layers 12] [--text-layers 8] [--modes fp32 int8]

Saves a BLIP-2 checkpoint with blip2-opt-2.7b's widths (configs/blip2-opt-2.7b.json: ViT-g 1408, OPT 2560,
vocabulary 50,304) but fewer layers, random weights in fp32 as the hub stores them, to a temporary folder.
Then, for each mode, a fresh process imports the backend, notes its RSS, loads the checkpoint the way the
app does (`get_backend("blip2")`: the check, from_pretrained, the engine with its decode kernels or int8
copy), encodes a picture and answers one question, and reports its peak RSS (VmHWM) above that start,
beside the estimate's weights and working memory. Needs ~3x the checkpoint (4.7 GB at the defaults) free.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def save_checkpoint(folder: Path, vision_layers: int, text_layers: int) -> int:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from vqa_chat.bench.blip2_cpu import CONFIG, processor

    proc = processor()  # SmolLM2's tokenizer with BLIP-2's <image> token, as the CPU bench uses
    fields = {k: v for k, v in json.loads(CONFIG.read_text()).items() if not k.startswith("_")}
    fields["text_config"] = {k: v for k, v in fields["text_config"].items() if k != "torch_dtype"}
    fields["text_config"]["num_hidden_layers"] = text_layers
    fields["vision_config"]["num_hidden_layers"] = vision_layers
    config = Blip2Config(**{**fields, "image_token_index": proc.tokenizer.convert_tokens_to_ids("<image>")})
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def child(folder: str, mode: str) -> None:
    """One load in this fresh process; prints a JSON line."""
    import gc
    import threading
    import time

    from PIL import Image

    from vqa_chat import backends
    from vqa_chat.backends import memory
    from vqa_chat.backends.base import DTYPES, BackendOptions, GenerationSettings
    from vqa_chat.backends.blip2 import Blip2ForConditionalGeneration

    quantize = "int8" if mode == "int8" else None
    dtype = "bfloat16" if mode == "bf16" else "float32"
    need = memory.estimate(Blip2ForConditionalGeneration, memory.read_config(folder), DTYPES[dtype], quantize)
    gc.collect()
    start, anon, done = status_mb("VmRSS"), [status_mb("RssAnon")], threading.Event()

    def sample():  # RSS counts the checkpoint's mapped file pages too: the anonymous part is not page cache
        while not done.wait(0.02):
            anon.append(max(anon[-1], status_mb("RssAnon")))

    threading.Thread(target=sample, daemon=True).start()
    backends.configure("blip2", BackendOptions(model=folder, device="cpu", dtype=dtype, quantize=quantize))
    backend = backends.get_backend("blip2")
    loaded = status_mb("VmRSS")
    embeds = backend.encode_image(Image.new("RGB", (640, 480), "olive"))
    backend.generate(embeds, "Question: what is it? Answer:", GenerationSettings(max_new_tokens=8))
    done.set()
    time.sleep(0.05)
    row = {"weights": need.weights / 2**20, "int8 copy": need.int8_copy / 2**20, "loaded": loaded - start,
           "peak": status_mb("VmHWM") - start, "anon peak": anon[-1] - anon[0],
           "working est.": need.working / 2**20, "estimate": need.total / 2**20}  # fmt: skip
    print(json.dumps({"start": start, **row}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vision-layers", type=int, default=12)
    p.add_argument("--text-layers", type=int, default=8)
    p.add_argument("--modes", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8", "bf16"])
    p.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        params = save_checkpoint(Path(tmp), args.vision_layers, args.text_layers)
        print(f"checkpoint: {params / 1e9:.3f} B parameters, ViT {args.vision_layers} and OPT "
              f"{args.text_layers} layers at blip2-opt-2.7b's widths", flush=True)  # fmt: skip
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        print("MB above the process's start (RSS after its imports); anon: without mapped file pages")
        columns = ["weights", "int8 copy", "loaded", "peak", "anon peak", "working est.", "estimate"]
        print(f"{'mode':<6}" + "".join(f"{c:>13}" for c in columns) + f"{'est./peak':>10}{'start':>8}")
        for mode in args.modes:
            command = [sys.executable, __file__, "--child", tmp, mode]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            cells = "".join(f"{r[c]:>13,.0f}" for c in columns)
            print(f"{mode:<6}{cells}{r['estimate'] / r['peak']:>10.2f}{r['start']:>8,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
