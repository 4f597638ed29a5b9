"""The memory check before a model loads (backends/memory.py) and the registry's one-load-at-a-time lock."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import Blip2Config, Blip2ForConditionalGeneration

from vqa_chat import backends, settings
from vqa_chat.backends import blip2, memory
from vqa_chat.backends.base import ModelLoadError
from vqa_chat.backends.blip2 import Blip2Backend
from vqa_chat.chat.notes import ChatError
from vqa_chat.chat.session import ChatSession
from vqa_chat.engine.types import BackendOptions, GenerationSettings

KNOWN = blip2.KNOWN_CONFIGS[blip2.DEFAULT_MODEL]  # configs/blip2-opt-2.7b.json
REFUSED = r"BLIP-2 in float32 needs about 927\.\d GB of memory and \d+\.\d GB are free: use a GPU or"


def check(device: str, dtype: torch.dtype, quantize: str | None, source: str = str(KNOWN), known=None):
    memory.check_load("BLIP-2", Blip2ForConditionalGeneration, source, device, dtype, quantize, known)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.fixture
def huge_blip2_dir(tmp_path) -> Path:
    """A BLIP-2 folder with only a config.json, OPT widened: 211 B parameters (843 GB in fp32), no weights."""
    fields = {k: v for k, v in json.loads(KNOWN.read_text()).items() if not k.startswith("_")}
    fields["text_config"].update(hidden_size=65536, word_embed_proj_dim=65536, ffn_dim=262144,
                                 num_attention_heads=64, num_hidden_layers=4)  # fmt: skip
    Blip2Config(**fields).save_pretrained(tmp_path)
    return tmp_path


@pytest.fixture
def no_loads(monkeypatch):
    """Make every from_pretrained of the BLIP-2 backend fail the test if it is called."""
    calls = []

    def called(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the loader must not be called")

    monkeypatch.setattr(blip2.Blip2ForConditionalGeneration, "from_pretrained", called)
    monkeypatch.setattr(blip2.Blip2Processor, "from_pretrained", called)
    return calls


@pytest.fixture
def fresh_blip2(install):
    """The registry without a loaded BLIP-2; what the test configures or loads is forgotten after it."""
    install()
    assert not backends.is_loaded("blip2")


def test_a_model_far_bigger_than_the_machine_is_refused_before_anything_is_built(huge_blip2_dir, no_loads,
                                                                                 fresh_blip2):  # fmt: skip
    before = rss_mb()
    backends.configure("blip2", BackendOptions(model=str(huge_blip2_dir), device="cpu"))
    with pytest.raises(memory.NotEnoughMemory, match=REFUSED) as refused:
        backends.get_backend("blip2")
    assert no_loads == []  # neither the processor nor the model was loaded
    assert rss_mb() - before < 100  # the 824 GB model was only built on the meta device
    assert "\n" not in str(refused.value)
    assert not backends.is_loaded("blip2")  # not cached: a later try checks again


def test_the_chat_says_why_and_keeps_going(huge_blip2_dir, no_loads, fresh_blip2, fake, tmp_path):
    picture = tmp_path / "pic.png"
    Image.new("RGB", (64, 48), "red").save(picture)
    backends.configure("blip2", BackendOptions(model=str(huge_blip2_dir), device="cpu"))
    s = ChatSession()
    with pytest.raises(ChatError):
        list(s.ask(str(picture), "what is it?", "blip2", GenerationSettings(max_new_tokens=3)))
    said = "\n".join(line["text"] for line in s.transcript())
    assert "The BLIP-2 backend could not be loaded (BLIP-2 in float32 needs about" in said
    assert "use a GPU or a machine with more memory). Your chat is kept" in said
    assert list(s.ask(None, "and now?", "fake", GenerationSettings(max_new_tokens=3)))[-1] == "Done."


def test_a_tiny_model_that_fits_still_loads(tiny_blip2_dir, close_after, caplog):
    with caplog.at_level(logging.INFO, logger=memory.__name__):
        backend = close_after(Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir), device="cpu")))
    assert backend.encode_image(Image.new("RGB", (30, 30), "blue")).shape[0] == 1
    assert "BLIP-2 in float32 needs about 0.5 GB of memory" in caplog.text  # checked, and it fit


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_the_estimate_is_the_loaded_weights_to_the_byte(tiny_blip2_dir, dtype):
    """Counted from the config alone, equal to what from_pretrained really allocates (float16 keeps the
    Q-Former in fp32; the tied LM head is stored once)."""
    torch_dtype = getattr(torch, dtype)
    model = Blip2ForConditionalGeneration.from_pretrained(tiny_blip2_dir, dtype=torch_dtype)
    config = memory.read_config(str(tiny_blip2_dir))
    need = memory.estimate(Blip2ForConditionalGeneration, config, torch_dtype)
    assert need.weights == model.get_memory_footprint(return_buffers=False)
    assert need.parameters == sum(p.numel() for p in model.parameters())
    assert need.int8_copy == 0
    assert need.working == int(memory.WORKING_FIXED + memory.WORKING_SHARE * need.weights)


def test_blip2_opt_2_7b_estimates():
    """The published config (no weights): 3.745 B parameters in fp32, and int8's copy of OPT-2.7B."""
    config = memory.read_config(str(KNOWN))
    fp32, int8 = (memory.estimate(Blip2ForConditionalGeneration, config, torch.float32, q)
                  for q in (None, "int8"))  # fmt: skip
    assert fp32.parameters == 3_744_761_856 and fp32.weights == 4 * 3_744_761_856 == int8.weights
    with torch.device("meta"):
        opt = Blip2ForConditionalGeneration(config).language_model
    opt_linear = sum(m.weight.numel() for m in opt.modules() if type(m) is torch.nn.Linear)
    assert opt_linear <= int8.int8_copy < 1.02 * opt_linear  # ~1 byte a weight, plus the rest
    half, eight, four = (memory.estimate(Blip2ForConditionalGeneration, config, torch.float16, q)
                         for q in (None, "8bit", "4bit"))  # fmt: skip
    assert fp32.weights / 2 < half.weights < eight.weights * 2 < four.weights * 4


def test_refused_int8_names_what_would_fit(monkeypatch):
    """On a CPU, int8 needs MORE than fp32 (it keeps both): the advice is to leave it out when fp32 fits."""
    monkeypatch.setattr(memory, "free_bytes", lambda device: 18 * memory.GB)
    with pytest.raises(memory.NotEnoughMemory) as refused:
        check("cpu", torch.float32, "int8")
    assert str(refused.value) == (
        "BLIP-2 in float32 with an int8 decoder needs about 19.9 GB of memory and 18.0 GB are free: "
        "leave out the int8 decoder (about 17.0 GB), or use a GPU or a machine with more memory"
    )


def test_on_a_gpu_it_compares_with_the_gpus_free_memory(monkeypatch):
    free = {0: 3 * 10**9, 1: 3.5 * 10**9}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda gpu: (free[gpu], 8 * 10**9))
    assert memory.free_bytes("cuda") == 6.5 * 10**9  # device_map="auto" spreads over both
    assert memory.free_bytes("cuda:0") == 3 * 10**9
    with pytest.raises(memory.NotEnoughMemory) as refused:
        check("cuda", torch.float16, None)
    assert str(refused.value) == (
        "BLIP-2 in float16 needs about 9.0 GB of GPU memory and 6.5 GB are free: use 8-bit weights "
        "(about 5.1 GB), or use a GPU with more free memory"
    )


def test_the_check_can_be_skipped_or_given_a_margin(huge_blip2_dir, no_loads, fresh_blip2, monkeypatch):
    monkeypatch.setenv("VQA_CHAT_MEMORY_CHECK", "0")
    with pytest.raises(ModelLoadError, match="loader must not be called"):
        Blip2Backend.load(BackendOptions(model=str(huge_blip2_dir), device="cpu"))
    assert no_loads  # unchecked, it went on to load
    monkeypatch.setenv("VQA_CHAT_MEMORY_CHECK", "1")
    monkeypatch.setenv("VQA_CHAT_MEMORY_MARGIN_MB", "100000")  # 104.9 GB instead of the estimated 2.0
    assert settings.read().memory_margin_mb == 100000
    monkeypatch.setattr(memory, "free_bytes", lambda device: 64 * memory.GB)
    with pytest.raises(memory.NotEnoughMemory, match="needs about 119.8 GB"):
        check("cpu", torch.float32, None)


def test_without_a_config_the_load_is_not_blocked(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=memory.__name__):
        check("cpu", torch.float32, None, str(tmp_path))
    assert "memory need is unknown, loading unchecked" in caplog.text


def test_the_hub_default_uses_the_known_config(monkeypatch):
    """Offline, the default id's config comes from configs/ (the hub's cache is empty here)."""
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1 * memory.GB)
    with pytest.raises(memory.NotEnoughMemory, match="needs about 17.0 GB"):
        check("cpu", torch.float32, None, blip2.DEFAULT_MODEL, blip2.KNOWN_CONFIGS)


# ---- what this process may still use -------------------------------------------------------------------


def test_cgroup_v2(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "self_cgroup"
    (root / "app" / "web").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")  # the unified hierarchy (v2) is mounted here
    proc.write_text("0::/app/web\n")
    (root / "app" / "web" / "memory.max").write_text("16000000000\n")
    (root / "app" / "web" / "memory.current").write_text("11000000000\n")
    (root / "app" / "web" / "memory.stat").write_text("anon 9000000000\ninactive_file 1000000000\n")
    assert memory.cgroup_free(root, proc) == 6_000_000_000  # 16 - (11 - 1 reclaimable)
    (root / "app" / "memory.max").write_text("12000000000\n")  # a parent with less room wins
    (root / "app" / "memory.current").write_text("11000000000\n")
    assert memory.cgroup_free(root, proc) == 1_000_000_000
    for name in ("app/memory.max", "app/web/memory.max"):
        (root / name).write_text("max\n")
    assert memory.cgroup_free(root, proc) is None  # no limit anywhere


def test_cgroup_v1(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "self_cgroup"
    (root / "memory").mkdir(parents=True)
    proc.write_text("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")  # not visible inside: root's
    (root / "memory" / "memory.limit_in_bytes").write_text("16000000000\n")
    (root / "memory" / "memory.usage_in_bytes").write_text("15000000000\n")
    (root / "memory" / "memory.stat").write_text("cache 3000000000\ntotal_inactive_file 2000000000\n")
    assert memory.cgroup_free(root, proc) == 3_000_000_000
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory.cgroup_free(root, proc) is None


def test_free_is_the_smaller_of_meminfo_and_the_cgroup(monkeypatch):
    available = memory._read(Path("/proc/meminfo"), "MemAvailable:") * 1024
    monkeypatch.setattr(memory, "cgroup_free", lambda: None)
    assert abs(memory.free_bytes("cpu") - available) < 2 * memory.GB
    monkeypatch.setattr(memory, "cgroup_free", lambda: 123)
    assert memory.free_bytes("cpu") == 123


# ---- one load at a time ----------------------------------------------------------------------------------


def test_a_second_load_waits_for_the_first_while_loaded_backends_answer_at_once(fake, monkeypatch):
    first_started, release, order = threading.Event(), threading.Event(), []

    def slow(options):
        first_started.set()
        release.wait(10)
        order.append("slow")
        return fake["fake"]

    def second(options):
        order.append(f"second, after the first: {release.is_set()}")
        return fake["fake2"]

    monkeypatch.setitem(backends.REGISTRY, "slow", backends.Entry(slow))
    monkeypatch.setitem(backends.REGISTRY, "second", backends.Entry(second))
    loads = [threading.Thread(target=backends.get_backend, args=(name,)) for name in ("slow", "second")]
    loads[0].start()
    assert first_started.wait(10)
    loads[1].start()
    served = []  # loaded: served while "slow" holds the load lock (no timing: it would never return)
    reader = threading.Thread(target=lambda: served.append(backends.get_backend("fake")))
    reader.start()
    reader.join(10)
    assert served == [fake["fake"]] and not release.is_set()
    time.sleep(0.2)
    assert order == []  # the second load has not begun
    release.set()
    for t in loads:
        t.join(10)
    assert order == ["slow", "second, after the first: True"]
    assert backends.get_backend("second") is fake["fake2"]


def test_a_config_the_model_cannot_be_built_from_does_not_block(tmp_path, caplog):
    """Not a BLIP-2 config: the check steps aside and from_pretrained gives its own error."""
    from transformers import OPTConfig

    OPTConfig(hidden_size=8, num_attention_heads=2, ffn_dim=16, num_hidden_layers=1).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger=memory.__name__):
        check("cpu", torch.float32, None, str(tmp_path))
    assert "no memory estimate" in caplog.text
