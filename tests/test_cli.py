"""`python -m vqa_chat.cli` on a tiny random BLIP-2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from vqa_chat import cli
from vqa_chat.prompts import load_prompt

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def image_path(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (30, 160, 60)).save(path)
    return path


@pytest.fixture(autouse=True)
def fresh_registry(install):
    """The CLI loads and configures through the process-wide registry: what a test loads goes with it."""
    install()


def test_question_template():
    assert load_prompt("question") == "Question: {question} Answer:"


def test_plain_cli_answer_equals_transformers(tiny_blip2_dir, image_path, capsys):
    question = "what is in the picture?"
    processor = Blip2Processor.from_pretrained(tiny_blip2_dir)
    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir).eval()
    prompt = f"Question: {question} Answer:"
    inputs = processor(images=Image.open(image_path), text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8)  # greedy
    new = out[0, inputs["input_ids"].shape[1] :]
    expected = processor.tokenizer.decode(new, skip_special_tokens=True).strip()
    assert len(new) == 8 and expected

    argv = ["--backend", "blip2", "--model", str(tiny_blip2_dir), "--image", str(image_path)]
    code = cli.main([*argv, "--question", question, "--max-new-tokens", "8", "--plain"])
    assert code == 0
    assert capsys.readouterr().out == expected + "\n"


def test_default_cli_answer_is_deterministic(tiny_blip2_dir, image_path, capsys):
    argv = ["--backend", "blip2", "--model", str(tiny_blip2_dir), "--image", str(image_path)]
    argv += ["--question", "how many dogs?"]
    answers = []
    for _ in range(2):
        assert cli.main([*argv, "--max-new-tokens", "8"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0].strip() and answers[0] == answers[1]


def test_unreadable_image_is_reported(tiny_blip2_dir, tmp_path, capsys):
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    code = cli.main(["--model", str(tiny_blip2_dir), "--image", str(bad), "--question", "what?"])
    err = capsys.readouterr().err
    assert code == 1 and "error:" in err and "Traceback" not in err


@pytest.mark.slow  # a new Python process importing torch and transformers
def test_missing_model_is_reported_without_traceback(tmp_path, image_path):
    """End to end through `python -m`, offline: a clear message and exit code 1."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    missing = str(tmp_path / "no-such-model")
    cmd = [sys.executable, "-m", "vqa_chat.cli", "--model", missing, "--image", str(image_path)]
    cmd += ["--question", "hi"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
