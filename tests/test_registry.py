"""The backend registry's `installed` block and `Backend.close`: what tests (and scripts) rely on to leave
no backend loaded and no engine thread running behind them."""

from __future__ import annotations

import pytest
from fakes import FakeBackend
from PIL import Image

from vqa_chat import backends
from vqa_chat.backends.custom import CustomBackend
from vqa_chat.engine import threads
from vqa_chat.engine.types import BackendOptions, GenerationSettings


class Closing(FakeBackend):
    def __init__(self, name):
        super().__init__(name)
        self.closed = 0

    def close(self):
        self.closed += 1


def test_installed_serves_built_backends_and_restores_the_registry(monkeypatch):
    mine, made = Closing("mine"), Closing("made")
    monkeypatch.setitem(backends.REGISTRY, "loads", backends.Entry(lambda options: made))
    blip2_loader = backends.REGISTRY["blip2"]
    with backends.installed(mine=mine, blip2=mine):
        assert backends.get_backend("mine") is mine and backends.get_backend("blip2") is mine
        assert backends.REGISTRY["blip2"].load(BackendOptions()) is mine  # the loader serves it too
        assert backends.label("blip2") == "BLIP-2" and backends.label("mine") == "mine"  # labels kept
        backends.configure("loads", BackendOptions(model="x"))
        assert backends.get_backend("loads") is made and backends.is_loaded("loads")
    assert "mine" not in backends.REGISTRY and backends.REGISTRY["blip2"] is blip2_loader
    assert not any(backends.is_loaded(name) for name in ("mine", "blip2", "loads"))
    assert made.closed == 1 and mine.closed == 0  # what the block loaded is closed; the built one is not
    outer = Closing("outer")
    with backends.installed(outer=outer):
        with backends.installed():
            assert backends.get_backend("outer") is outer
        assert backends.get_backend("outer") is outer and outer.closed == 0  # loaded before the inner block


def test_installed_restores_the_options(install, monkeypatch):
    loaded_with = []

    def probe(options):
        loaded_with.append(options.model)
        return Closing("probe")

    monkeypatch.setitem(backends.REGISTRY, "probe", backends.Entry(probe))
    install()
    backends.configure("probe", BackendOptions(model="outer"))
    with backends.installed():
        backends.configure("probe", BackendOptions(model="inner"))
        backends.get_backend("probe")
    backends.get_backend("probe")  # the block's load is forgotten: loaded again, with the options before it
    assert loaded_with == ["inner", "outer"]


def test_closing_a_backend_ends_its_engine_thread(tiny_vlm):
    backend = CustomBackend(tiny_vlm())
    patches = backend.encode_image(Image.new("RGB", (30, 30), "red"))
    assert "".join(backend.stream(patches, "Question: what? Answer:", GenerationSettings(2)))
    thread = backend.scheduler.thread
    assert thread.name == threads.SCHEDULER_THREAD and thread in threads.running()
    backend.close()
    assert not thread.is_alive() and thread not in threads.running()
    with pytest.raises(RuntimeError, match="shutting down"):
        list(backend.stream(patches, "Question: what? Answer:", GenerationSettings(2)))
