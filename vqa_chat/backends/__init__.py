"""The explicit backend registry: name -> how to load it, the name people read, and whether it answers about
any photo. Backends load lazily, once per process. Display names and "which backend can answer this
instead" come from here, nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from vqa_chat.backends.base import Backend
from vqa_chat.engine.types import BackendOptions


def _load_blip2(options: BackendOptions) -> Backend:
    from vqa_chat.backends.blip2 import Blip2Backend

    return Blip2Backend.load(options)


def _load_custom(options: BackendOptions) -> Backend:
    from vqa_chat.backends.custom import CustomBackend

    return CustomBackend.load(options)


def _load_vllm(options: BackendOptions) -> Backend:
    from vqa_chat.backends.vllm import VLLMBackend

    return VLLMBackend.load(options)


@dataclass(frozen=True)
class Entry:
    """One backend of the registry."""

    load: Callable[[BackendOptions], Backend]
    label: str = ""  # the name people read, e.g. "BLIP-2" ("": the registry name)
    any_photo: bool = False  # a general model: it answers about any photo, not only its training kind


# In the order the chat offers them; the first that answers about any photo is the one suggested when
# another backend can't answer.
REGISTRY: dict[str, Entry] = {
    "blip2": Entry(_load_blip2, "BLIP-2", any_photo=True),
    "custom": Entry(_load_custom, "Custom"),  # the bundled model: easy-VQA's drawings (model/domain.py)
    "vllm": Entry(_load_vllm, "vLLM", any_photo=True),  # a vLLM server's OpenAI-compatible API (vllm.py)
}

_loaded: dict[str, Backend] = {}
_options: dict[str, BackendOptions] = {}
# One load at a time in the process: each load's memory check (backends/memory.py) then sees what the loads
# before it took, and two models never allocate at once. A loaded backend is served without this lock.
_load_lock = threading.Lock()


def configure(name: str, options: BackendOptions) -> None:
    """Set the options `get_backend(name)` loads with (CLI flags, app flags, environment)."""
    _options[name] = options


def get_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """The process-wide instance of backend `name`, loading it on first use (thread-safe).

    A loaded backend is returned at once, even while another loads; a load waits for any load before it.
    A failed load raises and is not cached, so a later call can try again.
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r}; choose one of {sorted(REGISTRY)}")
    backend = _loaded.get(name)  # a dict read is atomic: no lock for users of a loaded backend
    if backend is not None:
        return backend
    with _load_lock:
        if name not in _loaded:  # another thread may have loaded it while this one waited
            _loaded[name] = REGISTRY[name].load(options or _options.get(name) or BackendOptions())
        return _loaded[name]


def label(name: str) -> str:
    """The backend's name as people read it ("BLIP-2"); a name the registry does not know, as it is."""
    entry = REGISTRY.get(name)
    return entry.label or name if entry is not None else name


def others(name: str) -> list[str]:
    """The labels of every other backend, in the registry's order."""
    return [label(other) for other in REGISTRY if other != name]


def any_photo_instead(name: str) -> str | None:
    """The label of the first backend other than `name` that answers about any photo, or None."""
    return next((label(n) for n, entry in REGISTRY.items() if entry.any_photo and n != name), None)


def is_loaded(name: str) -> bool:
    """True once backend `name` is loaded in this process (asking it costs no wait)."""
    return name in _loaded


def imagenet_features(encodings: dict) -> torch.Tensor | None:
    """The ImageNet head's features (Backend.imagenet_features) from the first loaded backend whose cached
    encoding of a picture (backend name -> encode_image output) holds them; None when none does."""
    found = (_loaded[name].imagenet_features(embeds) for name, embeds in encodings.items() if name in _loaded)
    return next((head for head in found if head is not None), None)


def set_backend(name: str, backend: Backend) -> None:
    """Install an already-built backend for the rest of the process (an app that loaded it eagerly); for a
    block only (tests), `installed`."""
    _loaded[name] = backend


def _serving(backend: Backend) -> Callable[[BackendOptions], Backend]:
    return lambda options: backend


@contextmanager
def installed(**ready: Backend) -> Iterator[dict[str, Backend]]:
    """Serve already-built backends by name for the block: `with installed(custom=backend): ...` (tests, or
    a script that built its own). Inside, `get_backend(name)` gives `ready[name]` (a name the registry
    lacks is added to it); any other name loads as usual. Afterwards the registry is as it was before: its
    loaders of those names, its loaded backends, its configured options. It closes only what the block
    loaded through it (nobody else holds those); the `ready` backends stay their builder's to close, and
    what was loaded before the block stays loaded."""
    with _load_lock:
        replaced = {name: REGISTRY.get(name) for name in ready}
        loaded, options = dict(_loaded), dict(_options)
        for name, backend in ready.items():  # a registered name keeps its label: only its loader changes
            load = _serving(backend)
            REGISTRY[name] = Entry(load) if replaced[name] is None else replace(replaced[name], load=load)
            _loaded[name] = backend
    try:
        yield ready
    finally:
        with _load_lock:
            given = [*loaded.values(), *ready.values()]
            made = [b for b in _loaded.values() if not any(b is g for g in given)]
            for name, entry in replaced.items():
                if entry is None:
                    REGISTRY.pop(name, None)
                else:
                    REGISTRY[name] = entry
            _loaded.clear()
            _loaded.update(loaded)
            _options.clear()
            _options.update(options)
        for backend in made:
            backend.close()


__all__ = [
    "REGISTRY", "Backend", "Entry", "any_photo_instead", "configure", "get_backend", "imagenet_features",
    "installed", "is_loaded", "label", "others", "set_backend",
]  # fmt: skip
