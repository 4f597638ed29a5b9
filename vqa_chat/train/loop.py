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
from vqa_chat.train.curves import plot_curves
from vqa_chat.train.data import FeatureCache, build_examples, load_split, with_past_turn
from vqa_chat.train.fit_domain import domain_from


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
    export_dir: str = ""  # final model (config, weights, domain, answer head); "" = out_dir/final
    stage1_steps: int = 0  # first stage: steps training the Q-Former with an answer classifier, no LM
    stage1_batch_size: int = 256  # examples per first-stage step (they cost no LM pass)
    stage1_answers: int = 1000  # classes of the first stage's classifier: the most frequent targets
    stage1_weight: float = 1.0  # weight of the classifier's loss in the second stage (keeps its skill)
    batch_size: int = 32  # examples per optimizer step (before accumulation)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to lr * lr_floor (in each stage)
    lr_floor: float = 0.05  # the cosine decay ends at this fraction of the peak lr
    grad_clip: float = 1.0  # gradients are clipped to this total norm before each step
    max_steps: int = 3000  # optimizer steps, both stages together
    max_minutes: float = 0.0  # >0: stop (and save) after this much training time
    eval_every: int = 250  # steps between evaluations
    eval_limit: int = 500  # held-out questions per periodic evaluation
    eval_max_new_tokens: int = 8  # answer length cap (tokens) when evaluating; answers are a few words
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
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))  # 1 -> 0
    return cfg.lr * (cfg.lr_floor + (1 - cfg.lr_floor) * cosine)


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
def evaluate(model: VisionLanguageModel, examples, features, cfg: TrainConfig, head=None, batch=64) -> dict:
    """Exact-match accuracy (= official VQA accuracy when the ten annotators agree) per answer type:
    of the generated answers, or of the first stage's classifier `head` if given."""
    model.eval()
    examples = examples[: cfg.eval_limit]
    right, total = {}, {}
    for i in range(0, len(examples), batch):
        part = examples[i : i + batch]
        patches, prompts = features.get([e.image for e in part]).to(model.device), [e.prompt for e in part]
        if head is None:
            answers = model.generate(patches, prompts, max_new_tokens=cfg.eval_max_new_tokens)
        else:
            ids, mask = tokenize(model.tokenizer, prompts, None, model.device)
            answers = head.predict(model.image_tokens(patches, ids, mask)[0])
        for e, a in zip(part, answers):
            for key in ("all", e.answer_type):
                total[key] = total.get(key, 0) + 1
                right[key] = right.get(key, 0) + (a.strip().lower() == e.target.lower())
    model.connector.train()
    return {k: round(100 * right[k] / total[k], 2) for k in total}


def save_checkpoint(model, head, optimizer, scaler, step, history, cfg: TrainConfig) -> None:
    """model + everything a resumed run needs to continue exactly as if it had never stopped."""
    folder = os.path.join(cfg.out_dir, "checkpoint")
    tmp = folder + ".tmp"
    model.save_pretrained(tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "history": history,
        "head": head.state_dict(),
        "scaler": scaler.state_dict(),  # fp16's loss scale
        "rng": torch.get_rng_state(),  # dropout's random numbers (CPU; the GPU's below)
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(state, os.path.join(tmp, "trainer_state.pt"))
    if os.path.exists(folder):
        os.replace(folder, folder + ".old")
    os.replace(tmp, folder)
    if os.path.exists(folder + ".old"):
        import shutil

        shutil.rmtree(folder + ".old")


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
    params += list(head.parameters())  # trained in the first stage (and kept in the second), then exported

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, history = 0, {"loss": [], "eval": []}
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16")
    if state:
        optimizer.load_state_dict(state["optimizer"])
        head.load_state_dict(state["head"])
        scaler.load_state_dict(state["scaler"])
        step, history = state["step"], state["history"]
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
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
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
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
            acc = evaluate(model, held_out, features, cfg, head if first else None)
            history["eval"].append((step, acc))
            kind = "classifier (stage 1)" if first else "answers"
            tqdm.write(f"step {step}: held-out accuracy of the {kind} {json.dumps(acc)}")
            plot_curves(history, os.path.join(cfg.out_dir, "curves.png"), cfg.stage1_steps)
        if step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time:
            save_checkpoint(model, head, optimizer, scaler, step, history, cfg)
        if out_of_time:
            tqdm.write(f"stopping after {cfg.max_minutes} minutes")
            break
    bar.close()
    if cfg.stage1_steps:  # the answer head was trained with the connector: exported for the top-k answers
        model.answer_head = head.eval()
    images = sorted(by_image)  # the training pictures and questions define what the model knows
    pooled = torch.cat([features.get(images[i : i + 256]).mean(1) for i in range(0, len(images), 256)])
    model.domain = domain_from(pooled, images, [e.question for e in train])
    export = cfg.export_dir or os.path.join(cfg.out_dir, "final")
    model.save_pretrained(export)
    with open(os.path.join(cfg.out_dir, "history.json"), "w") as f:
        json.dump(history, f)
    plot_curves(history, os.path.join(cfg.out_dir, "curves.png"), cfg.stage1_steps)
    print(f"saved {export}; curves in {os.path.join(cfg.out_dir, 'curves.png')}")


if __name__ == "__main__":
    main()
