"""Train the custom VLM's connector (the vision encoder and the LM stay frozen).

    python -m vqa_chat.train --config configs/bundled.json [key=value ...]

Every step prints loss, time and throughput; every `eval_every` steps it answers held-out questions and
prints accuracy per answer type; every `save_every` steps it writes a resumable checkpoint to
`out_dir/checkpoint` (a killed run continues from there when started again with the same command).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields

import torch
from tqdm import tqdm

from vqa_chat.model.answer_head import AnswerHead, answer_vocabulary
from vqa_chat.model.config import VLMConfig
from vqa_chat.model.vision_language_model import VisionLanguageModel
from vqa_chat.train.data import FeatureCache, build_examples, load_split, with_past_turn


@dataclass
class TrainConfig:
    dataset: str = "easy-vqa"  # easy-vqa | vqav2 | graphcore | captions | flickr8k
    data_dir: str = ""  # folder of the data set (not needed for easy-vqa)
    train_split: str = "train"  # split to train on
    eval_split: str = "test"  # split for periodic evaluation
    describe: bool = True  # easy-VQA: one "describe" example per image ("A blue circle on a light ...")
    contrast: bool = False  # easy-VQA: add a twin with the other answer to every yes/no question
    followup_every: int = 5  # every N-th step trains follow-ups (an earlier Q/A about the image first)
    out_dir: str = "runs/custom"  # checkpoints, history, curves
    export_dir: str = ""  # final model (config.json + model.safetensors); "" = out_dir/final
    stage1_steps: int = 0  # first stage: steps training the Q-Former with an answer classifier, no LM
    stage1_batch_size: int = 256  # examples per first-stage step (they cost no LM pass)
    stage1_answers: int = 1000  # classes of the first stage's classifier: the most frequent targets
    stage1_weight: float = 1.0  # weight of the classifier's loss in the second stage (keeps its skill)
    batch_size: int = 32  # examples per optimizer step (before accumulation)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr * 0.05 (in each stage)
    max_steps: int = 3000  # optimizer steps, both stages together
    max_minutes: float = 0.0  # >0: stop (and save) after this much training time
    eval_every: int = 250  # steps between evaluations
    eval_limit: int = 500  # held-out questions per periodic evaluation
    save_every: int = 50  # steps between resumable checkpoints
    precision: str = "bf16"  # fp32 | bf16 | fp16 (fp16 only on CUDA)
    device: str = ""  # "" = cuda if available else cpu
    seed: int = 0  # seeds python, torch and the data order
    model: VLMConfig = field(default_factory=VLMConfig)


def load_config(path: str | None, overrides: list[str]) -> TrainConfig:
    data = {}
    if path:
        with open(path) as f:
            data = json.load(f)
    cfg = TrainConfig(**{k: v for k, v in data.items() if k != "model"})
    cfg.model = VLMConfig.from_dict(data.get("model", {}))
    for item in overrides:  # key=value; model fields by their prefixed names (mp_layers=2)
        key, value = item.split("=", 1)
        target = cfg if key in {f.name for f in fields(TrainConfig)} else cfg.model
        if key not in {f.name for f in fields(target)}:
            raise SystemExit(f"unknown setting {key!r}")
        setattr(
            target,
            key,
            json.loads(value)
            if value[:1] in "[{" or value in ("true", "false")
            else type(getattr(target, key))(value),
        )
    return cfg


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Warm-up then cosine decay, restarted at the second stage."""
    first = step < cfg.stage1_steps
    length = cfg.stage1_steps if first else cfg.max_steps - cfg.stage1_steps
    step = step if first else step - cfg.stage1_steps
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, length - cfg.warmup_steps)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def tokenize(tokenizer, prompts: list[str], targets: list[str] | None, device):
    tokenizer.padding_side = "left"
    p = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    if targets is None:
        return p.input_ids, p.attention_mask
    tokenizer.padding_side = "right"
    t = tokenizer(
        [" " + a + tokenizer.eos_token for a in targets],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    ).to(device)
    return p.input_ids, p.attention_mask, t.input_ids, t.attention_mask


@torch.no_grad()
def evaluate(model: VisionLanguageModel, examples, features, limit: int, head=None, batch_size=64) -> dict:
    """Exact-match accuracy (= official VQA accuracy when the ten annotators agree) per answer type:
    of the generated answers, or of the first stage's classifier `head` if given."""
    model.eval()
    examples = examples[:limit]
    right, total = {}, {}
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        patches = features.get([e.image for e in batch]).to(model.device)
        if head is None:
            answers = model.generate(patches, [e.prompt for e in batch], max_new_tokens=8)
        else:
            ids, mask = tokenize(model.tokenizer, [e.prompt for e in batch], None, model.device)
            answers = head.predict(model.image_tokens(patches, ids, mask)[0])
        for e, a in zip(batch, answers):
            for key in ("all", e.answer_type):
                total[key] = total.get(key, 0) + 1
                right[key] = right.get(key, 0) + (a.strip().lower() == e.target.lower())
    model.connector.train()
    return {k: round(100 * right[k] / total[k], 2) for k in total}


def save_checkpoint(model, head, optimizer, step, history, cfg: TrainConfig) -> None:
    folder = os.path.join(cfg.out_dir, "checkpoint")
    tmp = folder + ".tmp"
    model.save_pretrained(tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "history": history,
        "head": head.state_dict(),
        "rng": torch.get_rng_state(),
    }
    torch.save(state, os.path.join(tmp, "trainer_state.pt"))
    if os.path.exists(folder):
        os.replace(folder, folder + ".old")
    os.replace(tmp, folder)
    if os.path.exists(folder + ".old"):
        import shutil

        shutil.rmtree(folder + ".old")


def plot_curves(history: dict, path: str, stage1_steps: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps, losses = zip(*history["loss"]) if history["loss"] else ((), ())
    ax1.plot(steps, losses, lw=0.6, alpha=0.5, label="loss")
    if len(losses) >= 20:
        k = 20
        smooth = [sum(losses[i - k : i]) / k for i in range(k, len(losses) + 1)]
        ax1.plot(steps[k - 1 :], smooth, label=f"mean of {k}")
    ax1.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax1.legend()
    for key in sorted({k for _, acc in history["eval"] for k in acc}):
        pts = [(s, acc[key]) for s, acc in history["eval"] if key in acc]
        ax2.plot(*zip(*pts), marker="o", label=key)
    ax2.set(xlabel="step", ylabel="accuracy (%)", title="held-out accuracy", ylim=(0, 100))
    if stage1_steps:  # stage 1 scores the classifier (loss: classifier), stage 2 the generated answers
        for ax in (ax1, ax2):
            ax.axvline(stage1_steps, color="gray", ls="--", lw=0.8)
        ax2.text(stage1_steps, 3, " stage 2: the LM answers", color="gray", fontsize=8)
        ax2.text(stage1_steps, 3, "stage 1: classifier ", color="gray", fontsize=8, ha="right")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="JSON file with TrainConfig fields and a 'model' object")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. lr=3e-4 mp_layers=2")
    cfg = load_config(parser.parse_args(argv).config, parser.parse_args(argv).overrides)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_float32_matmul_precision("high")
    os.makedirs(cfg.out_dir, exist_ok=True)

    resume = os.path.join(cfg.out_dir, "checkpoint")
    if os.path.exists(os.path.join(resume, "trainer_state.pt")):
        model = VisionLanguageModel.from_pretrained(resume, device)
        state = torch.load(os.path.join(resume, "trainer_state.pt"), weights_only=False)
        print(f"resuming from {resume} at step {state['step']}")
    else:
        model, state = VisionLanguageModel(cfg.model, device), None
    cfg.model = model.cfg
    with open(os.path.join(cfg.out_dir, "train_config.json"), "w") as f:
        json.dump(asdict(cfg), f, indent=2)

    train = build_examples(load_split(cfg.dataset, cfg.train_split, cfg.data_dir), cfg.describe, cfg.contrast)
    held_out = build_examples(load_split(cfg.dataset, cfg.eval_split, cfg.data_dir), describe=False)
    random.Random(cfg.seed + 1).shuffle(held_out)
    features = FeatureCache(model.vision, [e.image for e in train + held_out])
    by_image = {}
    for e in train:
        by_image.setdefault(e.image, []).append(e)
    answers = answer_vocabulary([e.target for e in train], cfg.stage1_answers)
    head = AnswerHead(answers, model.cfg.lm_dim, last=model.cfg.mp_product)
    head.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    print(
        f"{len(train):,} training examples, {len(held_out):,} held out; "
        f"{sum(p.numel() for p in params) / 1e6:.2f}M trained parameters; device {device}, {cfg.precision}"
    )
    params += list(head.parameters())  # trained in the first stage only, never exported

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, {"loss": [], "eval": []}
    if state:
        optimizer.load_state_dict(state["optimizer"])
        head.load_state_dict(state["head"])
        step, history = state["step"], state["history"]
        torch.set_rng_state(state["rng"])
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    model.connector.train()
    start, bar = time.time(), tqdm(total=cfg.max_steps, initial=step, desc="train", dynamic_ncols=True)
    while step < cfg.max_steps:
        first = step < cfg.stage1_steps
        batch_size = cfg.stage1_batch_size if first else cfg.batch_size
        rng = random.Random(cfg.seed * 1000 + step)  # the batch depends on (seed, step) only: resumable
        batch_all = [train[i] for i in rng.sample(range(len(train)), batch_size)]
        if cfg.followup_every and step % cfg.followup_every == cfg.followup_every - 1:
            batch_all = [with_past_turn(e, by_image[e.image], rng) for e in batch_all]
        t0, total_loss = time.time(), 0.0
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg)
        micro = batch_size // cfg.grad_accum
        for k in range(cfg.grad_accum):
            batch = batch_all[k * micro : (k + 1) * micro]
            patches = features.get([e.image for e in batch]).to(device)
            prompts, targets = [e.prompt for e in batch], [e.target for e in batch]
            with torch.autocast(
                device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                if first:  # the classifier reads the image tokens; the LM is not run
                    image = model.image_tokens(patches, *tokenize(model.tokenizer, prompts, None, device))[0]
                    loss = head.loss(image, targets) / cfg.grad_accum
                else:
                    inputs = tokenize(model.tokenizer, prompts, targets, device)
                    loss, image = model(patches, *inputs, return_image=True)
                    if cfg.stage1_steps and cfg.stage1_weight:
                        loss = loss + cfg.stage1_weight * head.loss(image, targets)
                    loss = loss / cfg.grad_accum
            scaler.scale(loss).backward()
            total_loss += loss.item()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        dt = time.time() - t0
        history["loss"].append((step, total_loss))
        bar.update(1)
        bar.set_postfix(
            stage=1 if first else 2,
            loss=f"{total_loss:.4f}",
            lr=f"{lr_at(step, cfg):.1e}",
            s_step=f"{dt:.2f}",
            ex_s=f"{batch_size / dt:.1f}",
        )
        out_of_time = cfg.max_minutes > 0 and (time.time() - start) / 60 > cfg.max_minutes
        if step % cfg.eval_every == 0 or step in (cfg.stage1_steps, cfg.max_steps) or out_of_time:
            acc = evaluate(model, held_out, features, cfg.eval_limit, head if first else None)
            history["eval"].append((step, acc))
            kind = "classifier (stage 1)" if first else "answers"
            tqdm.write(f"step {step}: held-out accuracy of the {kind} {json.dumps(acc)}")
            plot_curves(history, os.path.join(cfg.out_dir, "curves.png"), cfg.stage1_steps)
        if step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time:
            save_checkpoint(model, head, optimizer, step, history, cfg)
        if out_of_time:
            tqdm.write(f"stopping after {cfg.max_minutes} minutes")
            break
    bar.close()
    export = cfg.export_dir or os.path.join(cfg.out_dir, "final")
    model.save_pretrained(export)
    with open(os.path.join(cfg.out_dir, "history.json"), "w") as f:
        json.dump(history, f)
    plot_curves(history, os.path.join(cfg.out_dir, "curves.png"), cfg.stage1_steps)
    print(f"saved {export}; curves in {os.path.join(cfg.out_dir, 'curves.png')}")


if __name__ == "__main__":
    main()
