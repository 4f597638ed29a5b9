"""A backend that streams from a vLLM server's OpenAI-compatible API (e.g. `vllm serve` of a BLIP-2).

The app still keeps every conversation itself, per session: each turn sends one chat message holding the
image (a PNG data URL, encoded once per image) and the whole prompt `Question: q1 Answer: a1 Question: q2
Answer:`, and reads the answer back from the server-sent events of `POST /v1/chat/completions` with
`"stream": true`. Start vLLM with the template that passes that prompt through (prompts/):

    vllm serve Salesforce/blip2-opt-2.7b --chat-template prompts/vllm_blip2_template.jinja \\
        --enable-prefix-caching          # follow-up turns reuse the KV of the shared prefix, server-side
    VQA_CHAT_VLLM_URL=http://127.0.0.1:8000/v1 python app.py --backend vllm

Any number of app replicas can share one vLLM server (or a load balancer over several, or Ray Serve's
OpenAI-compatible app): the replicas hold only the sessions, the server batches all their requests.
Only the Python standard library is used (urllib); no API key is needed unless $VQA_CHAT_VLLM_API_KEY is set.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image

from vqa_chat import settings
from vqa_chat.backends.base import Backend, ModelLoadError
from vqa_chat.engine.types import BackendOptions, BusyError, GenerationSettings

DEFAULT_URL = "http://127.0.0.1:8000/v1"
TOKENIZE_IN_FLIGHT = 4  # /tokenize calls sent at once when counting several prompts (count_tokens_batch)
BLIP2_QUERY_TOKENS = 32  # the image's share of the context (BLIP-2's query tokens)


@dataclass(frozen=True)
class EncodedImage:
    """What `encode_image` returns here: the image as a data URL, sent with every turn."""

    url: str


class VLLMBackend(Backend[EncodedImage, None]):
    """No answer scoring, attention maps or composed descriptions: the server gives only the text. No state
    either: the server reuses a conversation's shared prefix itself (--enable-prefix-caching)."""

    name = "vllm"
    num_image_tokens = BLIP2_QUERY_TOKENS

    def __init__(self, base_url: str, model: str, context_length: int = 2048, timeout: float = 300.0):
        self.base_url, self.model_id = base_url.rstrip("/"), model
        self.root = self.base_url.removesuffix("/v1")  # vLLM's /tokenize is beside /v1, not under it
        self.context_length, self.timeout = context_length, timeout
        self._can_tokenize = True

    @classmethod
    def load(cls, options: BackendOptions) -> VLLMBackend:
        """Connect to the server at `options.model` (a URL), else $VQA_CHAT_VLLM_URL, else localhost:8000."""
        env = settings.read()
        url = (options.model or env.vllm_url or DEFAULT_URL).rstrip("/")
        backend = cls(url, env.vllm_model)
        try:
            models = backend._request("GET", backend.base_url + "/models", timeout=10)["data"]
        except Exception as e:
            message = f"Could not reach the vLLM server at {url} ({e}); is `vllm serve` running?"
            raise ModelLoadError(message) from e
        card = next((m for m in models if m["id"] == backend.model_id), models[0] if models else None)
        if card is None:
            raise ModelLoadError(f"The vLLM server at {url} serves no model.")
        backend.model_id = card["id"]
        backend.context_length = int(card.get("max_model_len") or backend.context_length)
        return backend

    # ---- HTTP -----------------------------------------------------------------------------------------

    def _open(self, method: str, url: str, body: dict | None = None, timeout: float | None = None):
        """An open HTTP response; server errors become readable exceptions (503/429: BusyError)."""
        headers = {"Content-Type": "application/json"}
        key = settings.read().vllm_api_key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data, headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            message = _error_message(e.read(), f"HTTP {e.code}")
            if e.code in (429, 503):
                raise BusyError(f"The vLLM server is busy ({message}). Please try again in a moment.") from e
            raise RuntimeError(f"The vLLM server refused the request: {message}") from e

    def _request(self, method: str, url: str, body: dict | None = None, timeout: float | None = None):
        with self._open(method, url, body, timeout) as response:
            return json.loads(response.read())

    # ---- the Backend interface -------------------------------------------------------------------------

    def encode_image(self, image: Image.Image) -> EncodedImage:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return EncodedImage("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_batch([text])[0]

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        """The server's counts (vLLM's /tokenize, BOS included), TOKENIZE_IN_FLIGHT calls at a time instead of
        one after another; a safe over-estimate of each if the server cannot tokenize."""
        if self._can_tokenize and texts:
            try:
                if len(texts) == 1:
                    return [self._tokenize(texts[0])]
                with ThreadPoolExecutor(min(TOKENIZE_IN_FLIGHT, len(texts)), "vllm-tokenize") as pool:
                    return list(pool.map(self._tokenize, texts))
            except Exception:
                self._can_tokenize = False
        return [len(text.encode()) // 2 + 1 for text in texts]

    def _tokenize(self, text: str) -> int:
        body = {"model": self.model_id, "prompt": text}
        return int(self._request("POST", self.root + "/tokenize", body, timeout=10)["count"])

    def request_body(self, image: EncodedImage, prompt: str, settings: GenerationSettings) -> dict:
        body = {
            "model": self.model_id,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image.url}},
                {"type": "text", "text": prompt},
            ]}],
            "stream": True,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature if settings.do_sample else 0.0,
        }  # fmt: skip
        if settings.do_sample:
            body["top_p"] = settings.top_p
        if not settings.plain:  # vLLM has no no-repeat-ngram rule; its repetition penalty is the same idea
            body["repetition_penalty"] = settings.repetition_penalty
        if settings.min_new_tokens:
            body["min_tokens"] = settings.min_new_tokens
        return body

    def stream(
        self,
        image_embeds: EncodedImage,
        prompt: str,
        settings: GenerationSettings,
        stop: threading.Event | None = None,
        state=None,
        log=None,
    ) -> Iterator[str]:
        """Yield the answer's text as the server streams it; closing the connection stops the server.
        No `state` here: the server reuses the shared prefix itself (--enable-prefix-caching). `log` stays
        empty (no token log-probs asked of the server: no confidence check)."""
        body = self.request_body(image_embeds, prompt, settings)
        with self._open("POST", self.base_url + "/chat/completions", body) as r:
            for raw in r:
                if stop is not None and stop.is_set():
                    return  # leaving the `with` closes the connection: vLLM aborts the request
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments, event names
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:
                    raise RuntimeError(f"The vLLM server failed: {_error_message(json.dumps(chunk), '')}")
                for choice in chunk.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece


def _error_message(body: bytes | str, default: str) -> str:
    """The `error.message` (OpenAI style) or `message` / `detail` of an error body, else the default."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return default
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or default)
    return str(error or default)
