"""`python -m vqa_chat.bench --quick` end to end on a tiny random custom model (a smoke test: the
figures of a tiny model mean nothing; the README's come from the bundled model)."""

from __future__ import annotations

import json

import pytest
import torch

from vqa_chat.bench import measure
from vqa_chat.bench.__main__ import main, parse_args


@pytest.mark.slow  # every section of the bench, the app in a child process too
def test_bench_quick_run_writes_the_table(tiny_vlm, tmp_path, capsys):
    tiny_vlm().save_pretrained(str(tmp_path / "model"))
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    threads = torch.get_num_threads()
    try:
        code = main(["--model", str(tmp_path / "model"), "--quick", "--threads", "1", "--accuracy", "1",
                     "--json", str(out_json), "--markdown", str(out_md)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    table = capsys.readouterr().out
    expected = ("TTFT turn 3, pinned", "plain generate", "aggregate tokens/s, 2 sessions", "bound",
                "2 sessions at once, through the app", "direct backend.stream")  # fmt: skip
    for words in expected:
        assert words in table
    data = json.loads(out_json.read_text())
    sections = {row["section"] for row in data["rows"]}
    assert sections == {"follow-ups", "streaming", "sessions", "int8", "app"}  # app: app.py in a child
    assert all(row["value"] >= 0 for row in data["rows"])  # accuracy of a random model may be 0
    assert data["meta"]["machine"]["cores"] and "int8_same_answers" in data["meta"]
    assert out_md.read_text().startswith("Machine: ") and "| ours |" in out_md.read_text()


def test_quick_flag_shrinks_everything():
    cfg = parse_args(["--quick"])
    assert cfg.tokens <= 8 and cfg.sessions == 2 and cfg.repeats == 1


def test_percentile_and_bandwidth():
    assert measure.percentile([1, 2, 3, 4, 5], 50) == 3
    assert measure.percentile([0, 10], 95) == 9.5
    assert measure.read_bandwidth(megabytes=8, repeats=2) > 1e8  # > 0.1 GB/s on anything


def test_blip2_cpu_bench_builds_the_published_architecture():
    """The BLIP-2 CPU bench's configuration is blip2-opt-2.7b's (built here without weights: 15.5 GB)."""
    from transformers import Blip2Config

    from vqa_chat.bench.blip2_cpu import CONFIG

    fields = {k: v for k, v in json.loads(CONFIG.read_text()).items() if not k.startswith("_")}
    c = Blip2Config(**fields)
    v, q, t = c.vision_config, c.qformer_config, c.text_config
    assert (v.num_hidden_layers, v.hidden_size, v.intermediate_size, v.patch_size, v.image_size) == (
        39, 1408, 6144, 14, 224)  # fmt: skip
    assert (q.num_hidden_layers, q.hidden_size, q.cross_attention_frequency, c.num_query_tokens) == (
        12, 768, 2, 32)  # fmt: skip
    assert (t.num_hidden_layers, t.hidden_size, t.ffn_dim, t.vocab_size, t.model_type) == (
        32, 2560, 10240, 50304, "opt")  # fmt: skip


def test_blip2_cpu_bench_measures_a_backend(tiny_blip2_dir, close_after):
    """Its measuring part, on the tiny BLIP-2: every row, TTFTs and a decode rate below the bound."""
    from PIL import Image

    from vqa_chat.backends.blip2 import Blip2Backend
    from vqa_chat.bench.blip2_cpu import measure as measure_blip2
    from vqa_chat.engine.types import BackendOptions

    backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir))))
    image = Image.new("RGB", (40, 40), "olive")
    rows = measure_blip2(backend, "fp32", image, tokens=4, repeats=1, bandwidth=1e10)
    assert [r.metric for r in rows] == [
        "image encoding (vision + Q-Former)", "TTFT first question, image encoded",
        "TTFT follow-up (prefix reused)", "decode tokens/s (batch 1)",
    ]  # fmt: skip
    assert all(r.value > 0 for r in rows) and rows[-1].baseline > 0
