"""A small HTTP server that speaks the part of vLLM's OpenAI-compatible API the vllm backend uses.

Real sockets on 127.0.0.1, real HTTP, real server-sent events: `GET /v1/models`, `POST /tokenize` (each
prompt recorded, how many were answered at once too), and
`POST /v1/chat/completions` with `"stream": true`. Its "model" answers `<color of the image> <number of
questions in the prompt>` word by word, so a test can tell which image and which conversation an answer
came from. A last question containing "busy" gets a 503, "crash" an error event after two words, "long"
300 words.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

COLORS = {(220, 40, 40): "red", (40, 40, 220): "blue", (40, 200, 40): "green", (240, 240, 240): "white"}


def color_name(data_url: str) -> str:
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")
    pixel = image.getpixel((0, 0))
    nearest = min(COLORS, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel)))
    return COLORS[nearest]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeVLLM

    def log_message(self, *args):  # quiet
        pass

    def _json(self, code: int, data: dict) -> None:
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": "Salesforce/blip2-opt-2.7b", "object": "model", "max_model_len": 2048}
            ]})  # fmt: skip
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            with self.server.lock:
                self.server.tokenized.append(body["prompt"])
                self.server.tokenizing += 1
                self.server.most_tokenizing = max(self.server.most_tokenizing, self.server.tokenizing)
            time.sleep(self.server.tokenize_delay)
            with self.server.lock:
                self.server.tokenizing -= 1
            self._json(200, {"count": len(body["prompt"].split()) + 1, "max_model_len": 2048, "tokens": []})
        elif self.path == "/v1/chat/completions":
            self.server.requests.append(body)
            self._stream(body)
        else:
            self._json(404, {"detail": "Not Found"})

    def _stream(self, body: dict) -> None:
        content = body["messages"][-1]["content"]
        url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        prompt = next(p["text"] for p in content if p["type"] == "text")
        question = prompt.rsplit("Question:", 1)[-1]  # the triggers below look at the last question only
        if "busy" in question:
            return self._json(503, {"error": {"message": "server overloaded", "type": "ServiceUnavailable"}})
        words = [color_name(url), str(prompt.count("Question:"))]
        if "long" in question:
            words = [f"w{i}" for i in range(300)]
        if "crash" in question:
            words += ["never", "sent"]
        words = words[: body["max_tokens"]]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self._event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            for i, word in enumerate(words):
                if "crash" in question and i == 2:
                    self._event({"error": {"message": "CUDA out of memory", "type": "InternalServerError"}})
                    return
                self._event({"choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}}]})
                time.sleep(self.server.delay)
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects += 1  # the client went away: a real server aborts the request here

    def _event(self, chunk: dict) -> None:
        data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "blip2", **chunk}
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


class FakeVLLM(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.disconnects = 0
        self.delay = delay
        self.tokenized: list[str] = []  # every /tokenize prompt, in arrival order
        self.tokenize_delay = 0.0  # seconds each /tokenize takes
        self.tokenizing = self.most_tokenizing = 0  # /tokenize calls being answered now, and the most at once
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
