"""How close is the memory check's estimate to a real load's peak? (backends/memory.py)

    python scripts/load_peak.py [--modes fp32 int8 bf16] [--vision-layers 12] [--text-layers 8]
    python scripts/load_peak.py --published      # blip2-opt-2.7b itself, in memory (needs ~20 GB free)

Default: saves a BLIP-2 checkpoint with blip2-opt-2.7b's widths (configs/blip2-opt-2.7b.json: ViT-g 1408,
OPT 2560, vocabulary 50,304) but fewer layers, random weights in fp32 as the hub stores them, to a temporary
folder. Then, for each mode, a fresh process imports the backend, notes its RSS, loads the checkpoint the way
the app does (`get_backend("blip2")`: the check, from_pretrained, the engine with its decode kernels or int8
copy), encodes a picture and answers one question, and reports its peak RSS (VmHWM) above that start, and
the peak of its anonymous part (RSS without mapped file pages: from_pretrained maps the checkpoint), beside
the estimate. Needs ~3x the checkpoint (4.7 GB at the defaults) free.

--published: blip2-opt-2.7b's whole architecture built in memory with random weights, as the CPU bench
(vqa_chat/bench/blip2_cpu.py) does, nothing saved: the peak once it answered in fp32, then once the int8
decoder was added beside it and answered.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
COLUMNS = ["weights", "int8 copy", "loaded", "peak", "anon peak", "working est.", "estimate"]


def status_gb(key: str) -> float:
    """A /proc/self/status figure (kB there: KiB) in GB (10^9 bytes), the unit of backends/memory.py."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) * 1024 / 1e9


def blip2_config(vision_layers: int | None = None, text_layers: int | None = None):
    from transformers import Blip2Config

    from vqa_chat.bench.blip2_cpu import CONFIG, processor

    proc = processor()  # SmolLM2's tokenizer with BLIP-2's <image> token, as the CPU bench uses
    fields = {k: v for k, v in json.loads(CONFIG.read_text()).items() if not k.startswith("_")}
    fields["text_config"] = {k: v for k, v in fields["text_config"].items() if k != "torch_dtype"}
    fields["text_config"]["num_hidden_layers"] = text_layers or 32
    fields["vision_config"]["num_hidden_layers"] = vision_layers or 39
    image_token = proc.tokenizer.convert_tokens_to_ids("<image>")
    return Blip2Config(**{**fields, "image_token_index": image_token}), proc


def save_checkpoint(folder: Path, vision_layers: int, text_layers: int) -> int:
    import torch
    from transformers import Blip2ForConditionalGeneration

    config, proc = blip2_config(vision_layers, text_layers)
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


class Peaks:
    """RSS at the start, and the peak of its anonymous part since (sampled every 20 ms)."""

    def __init__(self):
        self.start, self.anon, self.done = status_gb("VmRSS"), [status_gb("RssAnon")], threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self.done.wait(0.02):
            self.anon.append(max(self.anon[-1], status_gb("RssAnon")))

    def row(self, need, loaded: float) -> dict:
        self.anon.append(max(self.anon[-1], status_gb("RssAnon")))
        return {"start": self.start, "weights": need.weights / 1e9, "int8 copy": need.int8_copy / 1e9,
                "loaded": loaded - self.start, "peak": status_gb("VmHWM") - self.start,
                "anon peak": self.anon[-1] - self.anon[0], "working est.": need.working / 1e9,
                "estimate": need.total / 1e9}  # fmt: skip


def child(folder: str, mode: str) -> None:
    """One load in this fresh process; prints a JSON line per row."""
    import gc

    import torch
    from PIL import Image

    from vqa_chat import backends
    from vqa_chat.backends import memory
    from vqa_chat.backends.blip2 import Blip2Backend, Blip2ForConditionalGeneration
    from vqa_chat.engine.types import BackendOptions, GenerationSettings

    def answer(backend):
        embeds = backend.encode_image(Image.new("RGB", (640, 480), "olive"))
        backend.generate(embeds, "Question: what is it? Answer:", GenerationSettings(max_new_tokens=8))

    def estimate(config, dtype, quantize):
        return memory.estimate(Blip2ForConditionalGeneration, config, dtype, quantize)

    if folder == "published":  # the CPU bench's way: built in memory, then the int8 decoder beside it
        config, proc = blip2_config()
        gc.collect()
        peaks = Peaks()
        with torch.device("cpu"):
            torch.manual_seed(0)
            model = Blip2ForConditionalGeneration(config).eval().requires_grad_(False)
        fp32 = Blip2Backend(model, proc, "blip2-opt-2.7b, random weights", BackendOptions(device="cpu"))
        loaded = status_gb("VmRSS")
        answer(fp32)
        print(json.dumps({"mode": "fp32", **peaks.row(estimate(config, torch.float32, None), loaded)}))
        int8 = Blip2Backend(model, proc, fp32.model_id, BackendOptions(device="cpu", quantize="int8"))
        loaded = status_gb("VmRSS")
        answer(int8)
        print(json.dumps({"mode": "int8", **peaks.row(estimate(config, torch.float32, "int8"), loaded)}))
        return
    quantize, dtype = ("int8" if mode == "int8" else None), ("bfloat16" if mode == "bf16" else "float32")
    need = estimate(memory.read_config(folder), getattr(torch, dtype), quantize)
    gc.collect()
    peaks = Peaks()
    backends.configure("blip2", BackendOptions(model=folder, device="cpu", dtype=dtype, quantize=quantize))
    backend = backends.get_backend("blip2")
    loaded = status_gb("VmRSS")
    answer(backend)
    print(json.dumps({"mode": mode, **peaks.row(need, loaded)}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=["fp32", "int8", "bf16"], choices=["fp32", "int8", "bf16"])
    p.add_argument("--vision-layers", type=int, default=12)
    p.add_argument("--text-layers", type=int, default=8)
    p.add_argument("--published", action="store_true", help="blip2-opt-2.7b itself, in memory (~20 GB)")
    p.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.published:
            from vqa_chat.backends.memory import free_bytes

            if (free_bytes() or 0) < 20e9:
                print(f"needs ~20 GB free, {(free_bytes() or 0) / 1e9:.1f} GB are", file=sys.stderr)
                return 1
            runs = [("published", "fp32 int8")]
            print("blip2-opt-2.7b (3.745 B parameters), random weights built in memory", flush=True)
        else:
            runs = [(tmp, mode) for mode in args.modes]
            params = save_checkpoint(Path(tmp), args.vision_layers, args.text_layers)
            print(f"checkpoint: {params / 1e9:.3f} B parameters, ViT {args.vision_layers} and OPT "
                  f"{args.text_layers} layers at blip2-opt-2.7b's widths", flush=True)  # fmt: skip
        print("GB (10^9 bytes) above the process's start (RSS after its imports); anon: without mapped files")
        print(f"{'mode':<6}" + "".join(f"{c:>13}" for c in COLUMNS) + f"{'est./peak':>10}{'start':>8}")
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        for folder, mode in runs:
            command = [sys.executable, __file__, "--child", folder, mode]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            for line in out.strip().splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    cells = "".join(f"{r[c]:>13.2f}" for c in COLUMNS)
                    print(f"{r['mode']:<6}{cells}{r['estimate'] / r['peak']:>10.2f}{r['start']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
