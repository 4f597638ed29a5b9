"""Will a model fit? Its memory need from its config alone, against what this process may still use.

    python -m vqa_chat.backends.memory configs/blip2-opt-2.7b.json   # the estimates in every mode

`estimate` builds the model on the meta device (shapes, no storage: 0.3 s for blip2-opt-2.7b) and counts
bytes per parameter as transformers loads them: float32 4, float16/bfloat16 2 (the model's keep-in-fp32
modules, e.g. BLIP-2's Q-Former under float16, at 4); bitsandbytes 8-bit / 4-bit Linear weights at 1 / 0.5
byte plus their fp32 scales, except the modules transformers leaves unquantised; the CPU `int8` mode keeps
the whole fp32 model AND adds an int8 copy of the language model (engine/quantize.py `int8_decoder`).
Working memory for loading and the first answers comes on top (WORKING_*).

`free_bytes` is what this process may still use: on the CPU the smaller of /proc/meminfo's MemAvailable and
its cgroup's room (limit minus usage: Hugging Face Spaces and containers are cgroups); on CUDA the GPU's free
memory. `check_load` raises NotEnoughMemory (a ModelLoadError: one line naming the need, what is free and
what to do instead) before a single weight is allocated.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from vqa_chat import settings
from vqa_chat.backends.base import ModelLoadError

log = logging.getLogger(__name__)
GB = 1e9
# Working memory beyond the weights. scripts/load_peak.py measured a load and one answer peaking 3-4 % above
# the weights in fp32 and 5-9 % above weights + int8 copy with int8 (the quantisation's scratch): the share
# covers that; the fixed part what one answer does not show (a batch of answers' activations, allocator
# slack). Against blip2-opt-2.7b's measured peaks the estimate is 7-9 % over (README, "Will it fit?").
WORKING_FIXED = 0.5 * GB
WORKING_SHARE = 0.10
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge number (9223372036854771712)


class NotEnoughMemory(ModelLoadError):
    """The model would not fit in the memory this process may still use."""


@dataclass
class Need:
    parameters: int
    weights: int  # bytes of the weights as loaded
    int8_copy: int  # bytes of the CPU int8 decoder's copy of the language model (quantize="int8"), else 0
    working: int  # bytes of working memory on top

    @property
    def total(self) -> int:
        return self.weights + self.int8_copy + self.working


def mode_label(dtype: torch.dtype, quantize: str | None) -> str:
    extra = {"8bit": " with 8-bit weights", "4bit": " with 4-bit weights", "int8": " with an int8 decoder"}
    return str(dtype).removeprefix("torch.") + extra.get(quantize or "", "")


def estimate(
    model_cls, config, dtype: torch.dtype, quantize: str | None = None, lm_attr: str = "language_model",
    margin: int = 0,
) -> Need:  # fmt: skip
    """What `model_cls(config)` needs loaded in `dtype` with `quantize` (None, "8bit", "4bit", "int8");
    `lm_attr` names its language model (what int8 copies); `margin` bytes replace the working memory."""
    from transformers.core_model_loading import build_glob_alternation
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    with torch.device("meta"):  # no storage: nothing is allocated however big the model is
        model = model_cls(config)
    model.tie_weights()
    plan = model._get_dtype_plan(dtype)  # {module pattern: fp32}: what from_pretrained keeps in fp32
    kept = build_glob_alternation(list(plan))[0] if plan else None
    skip = get_keys_to_not_convert(model) + list(model._keep_in_fp32_modules or ())  # as bitsandbytes does
    size, seen, weights = torch.tensor([], dtype=dtype).element_size(), set(), 0
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied weight is stored once
                continue
            seen.add(id(p))
            if quantize in ("8bit", "4bit") and type(module) is nn.Linear and name == "weight" and \
                    should_convert_module(module_name, skip):  # fmt: skip
                bits = p.numel() + 4 * p.shape[0] if quantize == "8bit" else p.numel() // 2 + p.numel() // 16
                weights += bits  # 8-bit: an fp32 scale per row; 4-bit: an fp32 absmax per block of 64
            else:
                in_fp32 = kept is not None and kept.search(f"{module_name}.{name}".lstrip("."))
                weights += p.numel() * (4 if in_fp32 else size)
    int8_copy = _int8_copy_bytes(getattr(model, lm_attr)) if quantize == "int8" else 0
    working = margin or int(WORKING_FIXED + WORKING_SHARE * (weights + int8_copy))
    return Need(sum(p.numel() for p in model.parameters()), weights, int8_copy, working)


def _int8_copy_bytes(lm: nn.Module) -> int:
    """What quantize.int8_decoder adds: every Linear as a dynamic int8 Linear (an int8 weight; a scale, zero
    point and column offset per output row; the bias in fp32), the LM's other parameters copied in fp32
    except its input embeddings, which the copy shares."""
    seen, total = {id(p) for p in lm.get_input_embeddings().parameters()}, 0
    for module in lm.modules():
        linear = type(module) is nn.Linear  # each gets its own int8 weight, even one tied to the embeddings
        for p in module.parameters(recurse=False):
            if id(p) not in seen or linear:
                seen.add(id(p))
                total += p.numel() + 12 * p.shape[0] if linear and p is module.weight else p.numel() * 4
    return total


def _read(path: Path, key: str | None = None) -> int | None:
    """The number in a cgroup file ("max": UNLIMITED), or a `key value` line's value; None if missing."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    if key is None:
        return UNLIMITED if lines[0].strip() == "max" else int(lines[0])
    return next((int(line.split()[1]) for line in lines if line.split()[:1] == [key]), None)


def cgroup_free(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> int | None:
    """Bytes this process's cgroup, and every cgroup above it, may still take; None when none has a limit.
    v2: memory.max - memory.current; v1: memory.limit_in_bytes - memory.usage_in_bytes; both less the
    inactive page cache, which the kernel reclaims before it kills anyone (Kubernetes' "working set")."""
    v2 = (root / "cgroup.controllers").exists()  # the unified hierarchy is mounted here
    base = root if v2 else root / "memory"
    files = ("memory.max", "memory.current", "inactive_file") if v2 else \
        ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")  # fmt: skip
    try:  # lines "id:controllers:path"; v2's has no controllers
        fields = [line.split(":", 2) for line in proc.read_text().splitlines()]
    except OSError:
        return None
    path = next((f[2] for f in fields if (f[1] == "" if v2 else "memory" in f[1].split(","))), "/")
    folder, free = base / path.lstrip("/"), None
    while True:  # up to the mount's root: in a container the process's own cgroup is often the root
        limit, usage = _read(folder / files[0]), _read(folder / files[1])
        if limit is not None and usage is not None and limit < UNLIMITED:
            room = limit - usage + (_read(folder / "memory.stat", files[2]) or 0)
            free = room if free is None else min(free, room)
        if folder == base or base not in folder.parents:
            return None if free is None else max(free, 0)
        folder = folder.parent


def free_bytes(device: str = "cpu") -> int | None:
    """Bytes this process may still use where the weights go: the GPU's free memory on CUDA ("cuda": all
    GPUs, as device_map="auto" spreads over them), else min(MemAvailable, cgroup room); None if unknown."""
    if device.startswith("cuda"):
        gpus = range(torch.cuda.device_count()) if device == "cuda" else [torch.device(device).index]
        return sum(torch.cuda.mem_get_info(gpu)[0] for gpu in gpus)
    available = _read(Path("/proc/meminfo"), "MemAvailable:")
    known = [b for b in (available and available * 1024, cgroup_free()) if b is not None]
    return min(known) if known else None


def check_load(
    name: str, model_cls, source: str, device: str, dtype: torch.dtype, quantize: str | None,
    known: dict[str, Path] | None = None, lm_attr: str = "language_model",
) -> None:  # fmt: skip
    """Raise NotEnoughMemory when `model_cls` from `source` (a folder or hub id; `known`: config files by id)
    would not fit on `device`; `name` names it in the message. $VQA_CHAT_MEMORY_CHECK=0 skips this."""
    env = settings.read()
    config = read_config(source, known) if env.memory_check else None
    if config is None:
        return
    margin = env.memory_margin_mb * 2**20
    try:
        need = estimate(model_cls, config, dtype, quantize, lm_attr, margin).total
    except Exception as e:  # a config this class cannot be built from: from_pretrained will say what is wrong
        log.warning("no memory estimate for %r (%s): loading unchecked", source, e)
        return
    free, gpu = free_bytes(device), device.startswith("cuda")
    what = f"{name} in {mode_label(dtype, quantize)} needs about {need / GB:.1f} GB of {'GPU ' * gpu}memory"
    if free is None:
        log.warning("%s; how much is free is unknown: loading unchecked", what)
        return
    log.info("%s; %.1f GB are free", what, free / GB)
    if need <= free:
        return
    advice = "use a GPU with more free memory" if gpu else "use a GPU or a machine with more memory"
    smaller = [("8bit", "use 8-bit weights"), ("4bit", "use 4-bit weights")] if gpu else \
        [(None, "leave out the int8 decoder")] if quantize == "int8" else []  # fmt: skip
    for quantize_instead, instead in smaller:  # the first that fits, if any
        need_instead = estimate(model_cls, config, dtype, quantize_instead, lm_attr, margin).total
        if need_instead <= free:
            advice = f"{instead} (about {need_instead / GB:.1f} GB), or {advice}"
            break
    raise NotEnoughMemory(f"{what} and {free / GB:.1f} GB are free: {advice}")


def read_config(source: str, known: dict[str, Path] | None = None):
    """The config of a model folder or hub id: from the folder or the hub's local cache, else the known copy
    for that id, else the hub; None (logged: the load goes ahead unchecked) when none can be read."""
    from transformers import AutoConfig

    tries = [(source, True)] + ([(str(known[source]), True)] if known and source in known else [])
    error = None
    for where, local in [*tries, (source, False)]:  # the hub last: offline it retries for ~23 s
        try:
            return AutoConfig.from_pretrained(where, local_files_only=local)
        except Exception as e:
            error = e
    log.warning("no config for %r (%s): its memory need is unknown, loading unchecked", source, error)
    return None


def main(argv: list[str] | None = None) -> int:
    import transformers

    args = sys.argv[1:] if argv is None else argv
    config = read_config(args[0]) if len(args) == 1 else None
    if config is None:
        print("usage: python -m vqa_chat.backends.memory CONFIG_JSON_OR_MODEL_FOLDER", file=sys.stderr)
        return 2
    model_cls = getattr(transformers, config.architectures[0])
    print(f"{'mode':<30} {'weights':>8} {'int8 copy':>9} {'working':>8} {'total':>8}   (GB = 10^9 bytes)")
    modes = [(torch.float32, None), (torch.float16, None), (torch.bfloat16, None), (torch.float16, "8bit"),
             (torch.float16, "4bit"), (torch.float32, "int8")]  # fmt: skip
    for dtype, quantize in modes:
        need = estimate(model_cls, config, dtype, quantize)
        sizes = (need.weights, need.int8_copy, need.working, need.total)
        print(f"{mode_label(dtype, quantize):<30} " + " ".join(f"{b / GB:>8.2f}" for b in sizes))
    print(f"{need.parameters / 1e9:.3f} B parameters; free here now: {(free_bytes() or 0) / GB:.1f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
