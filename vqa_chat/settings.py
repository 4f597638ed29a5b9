"""Every environment variable the project reads (VQA_CHAT_*, Gradio's host, port and upload folder), read in
one place when `read()` is called, never at import. Command-line flags win over these; these win over the
defaults below. Paths may start with `~` (`user_path`). The two variables the app sets for libraries it
uses are set here too: Gradio's upload folder (`use_gradio_temp_dir`) and onnxruntime's telemetry switch
(`keep_onnxruntime_offline`).

The other configuration dataclasses each configure their own stage (a stage may not import from a later
one, tests/test_layout.py): the model's architecture (model/config.py VLMConfig), what a backend loads and
how it generates (engine/types.py BackendOptions, GenerationSettings), the page (ui/page.py AppConfig),
training (train/loop.py TrainConfig) and the speed table (bench/__main__.py BenchConfig).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _home_cache() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "vqa-chat")


@dataclass
class Settings:
    host: str = "127.0.0.1"  # GRADIO_SERVER_NAME: the app's listen address (Hugging Face Spaces sets 0.0.0.0)
    port: int = 7860  # GRADIO_SERVER_PORT: the app's port
    backend: str = "custom"  # VQA_CHAT_BACKEND: the app's, CLI's and scripts' backend (custom works offline)
    blip2_model: str = ""  # VQA_CHAT_BLIP2_MODEL: BLIP-2 hub id or folder ("" = the backend's default)
    custom_model: str = ""  # VQA_CHAT_CUSTOM_MODEL: custom model folder ("" = the bundled model)
    vllm_url: str = ""  # VQA_CHAT_VLLM_URL: OpenAI-compatible vLLM server ("" = 127.0.0.1:8000/v1)
    vllm_model: str = ""  # VQA_CHAT_VLLM_MODEL: model name sent to vLLM ("" = the server's first model)
    vllm_api_key: str = ""  # VQA_CHAT_VLLM_API_KEY: bearer token for the vLLM server ("" = none)
    confidence: str = ""  # VQA_CHAT_CONFIDENCE: another calibration file ("" = the one in configs/)
    cache: str = field(default_factory=_home_cache)  # VQA_CHAT_CACHE: converted LM, image features
    kv_budget_mb: int = 2048  # VQA_CHAT_KV_BUDGET_MB: all sessions' prefix KV caches together, in MB
    malloc_trim: bool = True  # VQA_CHAT_MALLOC_TRIM: 0 = never hand freed memory back to the OS when idle
    idle_minutes: float = 30  # VQA_CHAT_IDLE_MINUTES: a session unused this long is ended and freed
    image_cache_mb: int = 512  # VQA_CHAT_IMAGE_CACHE_MB: all sessions' pictures, image features and facts
    max_sessions: int = 2000  # VQA_CHAT_MAX_SESSIONS: sessions kept at once; past it the least recent ends
    memory_check: bool = True  # VQA_CHAT_MEMORY_CHECK: 0 = load a model without checking it fits first
    memory_margin_mb: int = 0  # VQA_CHAT_MEMORY_MARGIN_MB: working memory beyond the weights (0 = estimated)
    gradio_temp_dir: str = ""  # GRADIO_TEMP_DIR: where Gradio saves uploads ("" = <system temp>/gradio)
    chromium: str = "/usr/bin/chromium"  # VQA_CHAT_CHROMIUM: the browser of the browser tests and screenshots


def user_path(path: str) -> str:
    """A path as a user typed it, with a leading `~` (or `~user`) expanded ("" stays "")."""
    return os.path.expanduser(path) if path else path


def read() -> Settings:
    """The settings from the environment now (unset or empty variables keep the defaults)."""
    env, default = {k: v for k, v in os.environ.items() if v}, Settings()
    return Settings(
        host=env.get("GRADIO_SERVER_NAME", default.host),
        port=int(env.get("GRADIO_SERVER_PORT", default.port)),
        backend=env.get("VQA_CHAT_BACKEND", default.backend),
        blip2_model=user_path(env.get("VQA_CHAT_BLIP2_MODEL", default.blip2_model)),
        custom_model=user_path(env.get("VQA_CHAT_CUSTOM_MODEL", default.custom_model)),
        vllm_url=env.get("VQA_CHAT_VLLM_URL", default.vllm_url),
        vllm_model=env.get("VQA_CHAT_VLLM_MODEL", default.vllm_model),
        vllm_api_key=env.get("VQA_CHAT_VLLM_API_KEY", default.vllm_api_key),
        confidence=user_path(env.get("VQA_CHAT_CONFIDENCE", default.confidence)),
        cache=user_path(env.get("VQA_CHAT_CACHE", default.cache)),
        kv_budget_mb=int(env.get("VQA_CHAT_KV_BUDGET_MB", default.kv_budget_mb)),
        malloc_trim=env.get("VQA_CHAT_MALLOC_TRIM", "1") != "0",
        idle_minutes=float(env.get("VQA_CHAT_IDLE_MINUTES", default.idle_minutes)),
        image_cache_mb=int(env.get("VQA_CHAT_IMAGE_CACHE_MB", default.image_cache_mb)),
        max_sessions=int(env.get("VQA_CHAT_MAX_SESSIONS", default.max_sessions)),
        memory_check=env.get("VQA_CHAT_MEMORY_CHECK", "1") != "0",
        memory_margin_mb=int(env.get("VQA_CHAT_MEMORY_MARGIN_MB", default.memory_margin_mb)),
        gradio_temp_dir=user_path(env.get("GRADIO_TEMP_DIR", default.gradio_temp_dir)),
        chromium=user_path(env.get("VQA_CHAT_CHROMIUM", default.chromium)),
    )


def use_gradio_temp_dir(path: str | os.PathLike) -> None:
    """Make Gradio save uploads in `path` ($GRADIO_TEMP_DIR, read when it builds components and launches)."""
    os.environ["GRADIO_TEMP_DIR"] = str(path)


def keep_onnxruntime_offline() -> None:
    """onnxruntime's telemetry off ($ORT_DISABLE_TELEMETRY=1 unless set otherwise), before it is first
    imported: it would write a session file into the temp folder and a device id into ~/.cache."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
