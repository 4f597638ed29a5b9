"""Start the vqa-chat web app: `python app.py [--backend blip2|custom] [--port 7860] ...`.

The default backend starts loading in the background at once (the first visitor's question waits for it in
the chat, with a "Loading" notice); the others load on first use, once per process. Per-backend flags set
what each one loads.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from vqa_chat import settings
from vqa_chat.backends import REGISTRY, configure, get_backend
from vqa_chat.chat import privacy
from vqa_chat.engine.types import BackendOptions
from vqa_chat.settings import Settings
from vqa_chat.ui.page import AppConfig, build_app, launch_kwargs


def parse_args(argv=None) -> argparse.Namespace:
    env, app, opts = settings.read(), AppConfig(), BackendOptions()  # the defaults of every flag
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=env.host, help="default: $GRADIO_SERVER_NAME or loopback")
    p.add_argument("--port", type=int, default=env.port, help="default: $GRADIO_SERVER_PORT or 7860")
    p.add_argument(
        "--backend",
        choices=sorted(REGISTRY),
        default=app.backend,
        help=f"backend selected when a page opens (default: $VQA_CHAT_BACKEND or {Settings.backend})",
    )
    p.add_argument("--concurrency", type=int, default=app.concurrency, help="answers generated at once")
    p.add_argument("--max-queue", type=int, default=app.max_queue, help="requests allowed to wait")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: CUDA when present)")
    p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"])
    p.add_argument("--blip2-model", type=settings.user_path,
                   help="hub id or folder (default: $VQA_CHAT_BLIP2_MODEL or the 2.7b)")
    p.add_argument("--blip2-quantize", default=None, choices=["8bit", "4bit", "int8"],
                   help="8bit/4bit: bitsandbytes, GPU only; int8: dynamic quantization of the LM, CPU only")
    p.add_argument("--custom-model", default=None, type=settings.user_path,
                   help="custom model folder (default: $VQA_CHAT_CUSTOM_MODEL or the bundled one)")
    p.add_argument("--custom-quantize", default=None, choices=["int8"], help="int8 LM on the CPU")
    p.add_argument("--vllm-url", default=None, help="vLLM server (default: $VQA_CHAT_VLLM_URL or :8000/v1)")
    p.add_argument("--custom-image-tokens", default=opts.image_tokens, choices=["question", "first"],
                   help="question (default): new image tokens for every question, as the model was trained; "
                   "first: an image's first question sets the image tokens of its follow-ups")
    p.add_argument("--engine", default=opts.engine, choices=["batched", "generate"],
                   help="batched: continuous batching + prefix KV reuse; generate: HF generate per answer")
    p.add_argument("--max-batch", type=int, default=opts.max_batch, help="answers decoded at once")
    p.add_argument("--max-waiting", type=int, default=opts.max_waiting, help="answers waiting, then 'busy'")
    p.add_argument("--attn-implementation", default=None, choices=["sdpa", "eager", "flash_attention_2"])
    p.add_argument("--compile", action="store_true", help="GPU: static KV cache + torch.compile")
    p.add_argument("--no-decode-kernels", action="store_true",
                   help="CPU: decode with F.linear instead of the compiled matrix-vector kernels")
    p.add_argument("--engine-threads", type=int, default=opts.engine_threads,
                   help="CPU threads of the engine's prefill and decode (default 0: half the cores)")
    p.add_argument("--idle-minutes", type=float, default=app.idle_minutes,
                   help="end a session unused this long, freeing all it holds (default: "
                   "$VQA_CHAT_IDLE_MINUTES or 30; 0: never)")
    p.add_argument("--max-sessions", type=int, default=app.max_sessions,
                   help="sessions kept at once; past it the least recently used ends "
                   "(default: $VQA_CHAT_MAX_SESSIONS or 2000)")
    p.add_argument("--no-preload", action="store_true",
                   help="load the default backend on its first question instead of at start")
    p.add_argument("--log-dir", default=None, type=settings.user_path,
                   help="log questions, answers and metadata-free images here (JSONL); default: none")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common = dict(
        device=args.device, dtype=args.dtype, engine=args.engine, max_batch=args.max_batch,
        max_waiting=args.max_waiting, attn_implementation=args.attn_implementation, compile=args.compile,
        decode_kernels=not args.no_decode_kernels, engine_threads=args.engine_threads,
    )  # fmt: skip
    configure("blip2", BackendOptions(model=args.blip2_model, quantize=args.blip2_quantize, **common))
    custom = dict(quantize=args.custom_quantize, image_tokens=args.custom_image_tokens)
    configure("custom", BackendOptions(model=args.custom_model, **custom, **common))
    configure("vllm", BackendOptions(model=args.vllm_url))
    privacy.configure_log(args.log_dir)  # before the page is built: it says when logging is on
    privacy.keep_uploads_private()  # before the page is built, too: uploads go to a folder removed at exit
    privacy.exit_on_signals()  # SIGTERM exits like Ctrl-C, so that folder is removed then as well
    config = AppConfig(backend=args.backend, concurrency=args.concurrency, max_queue=args.max_queue,
                       idle_minutes=args.idle_minutes, max_sessions=args.max_sessions)  # fmt: skip
    if not args.no_preload:
        threading.Thread(target=preload, args=(args.backend,), name="preload", daemon=True).start()
    demo = build_app(config)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(config))


def preload(name: str) -> None:
    """Load backend `name` now, so the first visitor does not wait for it; say when it is ready."""
    start = time.monotonic()
    try:
        get_backend(name)
    except Exception as e:  # the chat says so when someone asks; the app keeps serving
        print(f"vqa-chat: the {name} backend could not be loaded: {e}", flush=True)
        return
    print(f"vqa-chat: ready, the {name} backend loaded in {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
