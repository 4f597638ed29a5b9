"""Configuration in one place (vqa_chat/settings.py): every environment variable read there, `~` expanded in
user paths, one default backend for the app, the CLI and the scripts, and nothing created at import."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import app
from vqa_chat import cli, settings
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.chat import privacy
from vqa_chat.engine.types import BackendOptions
from vqa_chat.eval import evaluate
from vqa_chat.model.vision_language_model import VisionLanguageModel
from vqa_chat.ui.page import AppConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of the test's own, for `~`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def environment_reads(path: Path) -> list[int]:
    """Lines of `path` that touch os.environ or call os.getenv / os.putenv."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv")
            or isinstance(node, ast.ImportFrom) and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)]  # fmt: skip


def test_only_settings_reads_the_environment():
    files = [REPO / "app.py", *sorted((REPO / "vqa_chat").rglob("*.py"))]
    found = {f.relative_to(REPO).as_posix(): environment_reads(f) for f in files}
    outside = {f: lines for f, lines in found.items() if lines and f != "vqa_chat/settings.py"}
    assert not outside, f"environment variables are read in vqa_chat/settings.py only; move these: {outside}"


def test_defaults_and_variables(monkeypatch):
    for name in ("VQA_CHAT_BACKEND", "VQA_CHAT_CHROMIUM", "GRADIO_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    env = settings.read()
    assert env.backend == "custom" and env.chromium == "/usr/bin/chromium" and env.gradio_temp_dir == ""
    monkeypatch.setenv("VQA_CHAT_BACKEND", "blip2")
    monkeypatch.setenv("VQA_CHAT_CHROMIUM", "/opt/chromium")
    monkeypatch.setenv("GRADIO_TEMP_DIR", "/srv/uploads")
    env = settings.read()
    assert (env.backend, env.chromium, env.gradio_temp_dir) == ("blip2", "/opt/chromium", "/srv/uploads")
    monkeypatch.setenv("VQA_CHAT_BACKEND", "")  # empty: the default
    assert settings.read().backend == "custom"


def test_user_paths_in_the_environment_are_expanded(home, monkeypatch):
    for name in ("VQA_CHAT_CUSTOM_MODEL", "VQA_CHAT_BLIP2_MODEL", "VQA_CHAT_CACHE", "VQA_CHAT_CONFIDENCE",
                 "GRADIO_TEMP_DIR", "VQA_CHAT_CHROMIUM"):  # fmt: skip
        monkeypatch.setenv(name, "~/x")
    env = settings.read()
    paths = [env.custom_model, env.blip2_model, env.cache, env.confidence, env.gradio_temp_dir, env.chromium]
    assert paths == [str(home / "x")] * 6
    monkeypatch.setenv("VQA_CHAT_BLIP2_MODEL", "Salesforce/blip2-opt-2.7b")  # a hub id stays as it is
    assert settings.read().blip2_model == "Salesforce/blip2-opt-2.7b"
    assert settings.user_path("") == "" and settings.user_path("/a/~b") == "/a/~b"


def test_one_default_backend_everywhere(monkeypatch):
    monkeypatch.delenv("VQA_CHAT_BACKEND", raising=False)
    image = ["--image", "x.png", "--question", "q"]
    assert settings.Settings().backend == "custom"  # the one that works offline
    assert cli.build_parser().parse_args(image).backend == "custom"
    assert app.parse_args([]).backend == AppConfig().backend == "custom"
    monkeypatch.setenv("VQA_CHAT_BACKEND", "blip2")
    assert cli.build_parser().parse_args(image).backend == "blip2"
    assert app.parse_args([]).backend == AppConfig().backend == "blip2"
    source = (REPO / "scripts" / "screenshot.py").read_text()  # it starts a browser: read, not run
    assert 'p.add_argument("--backend", default=env.backend' in source and "env = settings.read()" in source


def test_command_line_paths_are_expanded(home):
    args = cli.build_parser().parse_args(["--image", "~/a.png", "--heatmap", "~/h.png", "--model", "~/m",
                                          "--question", "q"])  # fmt: skip
    assert [args.image, args.heatmap, args.model] == [str(home / name) for name in ("a.png", "h.png", "m")]
    args = app.parse_args(["--log-dir", "~/logs", "--custom-model", "~/model", "--blip2-model", "~/blip2"])
    assert (args.log_dir, args.custom_model, args.blip2_model) == (
        str(home / "logs"), str(home / "model"), str(home / "blip2"))  # fmt: skip


def test_log_dir_is_expanded(home):
    try:
        privacy.configure_log("~/chat-log")
        assert privacy.log_dir() == home / "chat-log" and (home / "chat-log" / "images").is_dir()
    finally:
        privacy.configure_log(None)


def test_custom_model_path_is_expanded(home, monkeypatch, tiny_vlm):
    """`~/model` (flag or $VQA_CHAT_CUSTOM_MODEL) loads the folder in the home folder, not a "~" folder."""
    (home / "model").mkdir()
    asked = []

    def from_pretrained(model_id, device, dtype, **kwargs):
        asked.append(model_id)
        return tiny_vlm()

    monkeypatch.setattr(VisionLanguageModel, "from_pretrained", from_pretrained)
    CustomBackend.load(BackendOptions(model="~/model", device="cpu", engine="generate"))
    monkeypatch.setenv("VQA_CHAT_CUSTOM_MODEL", "~/model")
    CustomBackend.load(BackendOptions(device="cpu", engine="generate"))
    assert asked == [str(home / "model")] * 2


def test_evaluate_paths_are_expanded(home, capsys):
    question = {"image_id": 1, "question": "Is it?", "question_id": 1}
    (home / "q.json").write_text(json.dumps({"questions": [question]}))
    answers = [{"answer": "yes", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]
    annotation = {"question_id": 1, "image_id": 1, "question_type": "is", "answer_type": "yes/no",
                  "answers": answers}  # fmt: skip
    (home / "a.json").write_text(json.dumps({"annotations": [annotation]}))
    (home / "r.json").write_text(json.dumps([{"question_id": 1, "answer": "yes"}]))
    evaluate.main(["score", "--questions", "~/q.json", "--annotations", "~/a.json", "--results", "~/r.json",
                   "--report", "~/out/report.json", "--failures", "~/out/failures.md"])  # fmt: skip
    assert json.loads((home / "out" / "report.json").read_text())["overall"] == 100.0
    assert (home / "out" / "failures.md").exists()


def test_importing_creates_nothing(tmp_path):
    """Importing every module of vqa_chat (and app.py) makes no folder or file: temp folders, caches and
    logs are made when first used."""
    tmp, home = tmp_path / "tmp", tmp_path / "home"
    tmp.mkdir(), home.mkdir()
    code = (
        "import importlib, os, pkgutil, sys, vqa_chat\n"
        "for m in pkgutil.walk_packages(vqa_chat.__path__, 'vqa_chat.'):\n"
        "    importlib.import_module(m.name)\n"
        "import app\n"
        "print(json.dumps(sorted(os.listdir(sys.argv[1])) + sorted(os.listdir(sys.argv[2]))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VQA_CHAT_", "GRADIO_"))}
    env.update(TMPDIR=str(tmp), HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", "import json\n" + code, str(tmp), str(home)], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    made = [name for name in json.loads(out.stdout.splitlines()[-1]) if not name.startswith("torchinductor_")]
    assert made == [], f"created at import: {made}"  # (torch's own compile cache folder is not ours)
