"""Shared pytest fixtures (keep this file to fixtures only).

The builders behind them live in tests/tiny_models.py, tests/fakes.py and tests/apps.py (tests/ is on
sys.path: pytest's default "prepend" import mode). Test files never import one another.

No test leaves global state behind: a backend a test installs or loads through the registry goes with the
test (`install`), what it builds is closed (`close_after`, or `contextlib.closing` in a wider fixture), and
a test module that leaves an engine thread running or a backend loaded fails (`leaves_nothing_behind`).
"""

from __future__ import annotations

import functools
import gc
import time
from contextlib import ExitStack
from pathlib import Path

import apps
import pytest
import torch
from fakes import FakeBackend
from tiny_models import make_tiny_blip2, make_tiny_gguf, make_tiny_vlm, make_tiny_vlm_parts

from vqa_chat import backends
from vqa_chat.chat import session, session_files
from vqa_chat.engine import threads as engine_threads
from vqa_chat.ui.page import AppConfig

# Tiny models gain nothing from threads, and spinning threads starve a training run or the app under test.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory) -> Path:
    """A tiny random BLIP-2 checkpoint (model + processor) saved in a folder, built once per test session.

    Load it like a hub model, e.g. `Blip2Backend.load(BackendOptions(model=str(tiny_blip2_dir)))`
    or with the environment variable `VQA_CHAT_BLIP2_MODEL=<folder>`.
    """
    return make_tiny_blip2(tmp_path_factory.mktemp("tiny_blip2"))


@pytest.fixture(scope="session")
def tiny_vlm_parts(tmp_path_factory) -> dict[str, str]:
    """A tiny random ViT and Llama LM in folders: VLMConfig fields {"vit_source", "lm_source"}."""
    return make_tiny_vlm_parts(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="session")
def tiny_vlm(tiny_vlm_parts):
    """Builds a tiny random custom model on those parts, the same weights every call:
    `tiny_vlm()`, `tiny_vlm(mp_type="mlp", vit_grid=3)` (VLMConfig fields)."""
    return functools.partial(make_tiny_vlm, tiny_vlm_parts)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny random Llama GGUF file laid out like the bundled SmolLM2 one (tests/tiny_models.py)."""
    return make_tiny_gguf(tmp_path_factory.mktemp("tiny_gguf"))


@pytest.fixture
def install():
    """`install(name=backend, ...)` serves built backends by name for this test (`backends.installed`);
    `install()` alone makes the test's own loads go with it. After the test the registry is as before, and
    what the test loaded through it is closed (what the test built is `close_after`'s)."""
    with ExitStack() as stack:
        yield lambda **ready: stack.enter_context(backends.installed(**ready))


@pytest.fixture
def close_after():
    """`close_after(thing)` returns `thing` (a backend, a scheduler) and closes it when the test ends."""
    with ExitStack() as stack:

        def close_after(thing):
            stack.callback(thing.close)
            return thing

        yield close_after


@pytest.fixture
def fake(install, monkeypatch):
    """Install fake backends "fake" and "fake2" (tests/fakes.py) and a "broken" one that cannot load."""
    made = {"fake": FakeBackend("fake"), "fake2": FakeBackend("fake2")}

    def broken(options):
        raise OSError("weights not reachable offline")

    install(**made)
    monkeypatch.setitem(backends.REGISTRY, "broken", backends.Entry(broken))
    monkeypatch.setattr(session, "UPDATE_INTERVAL", 0.0)  # every piece is an update: deterministic steps
    return made


@pytest.fixture(scope="session", autouse=True)
def app_temp_dir(tmp_path_factory) -> Path:
    """Where the apps under test keep users' pictures: inside pytest's own temp folder, never the system's.
    Thumbnails, heatmaps and Gradio's uploads of apps built in this process go here, and the `app.py`
    processes that tests start make their private folder in it ($TMPDIR)."""
    folder = tmp_path_factory.mktemp("app_temp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(session_files, "THUMB_DIR", folder)
        mp.setenv("GRADIO_TEMP_DIR", str(folder))
        mp.setenv("TMPDIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def app_setup(tiny_blip2_dir) -> apps.AppSetup:
    """How this module's `app` runs: the app in this process on the tiny random BLIP-2 (through
    $VQA_CHAT_BLIP2_MODEL). A module overrides this fixture (module scope, parametrised if it likes) with
    its own `apps.AppSetup`."""
    return apps.AppSetup(AppConfig(backend="blip2"), env={"VQA_CHAT_BLIP2_MODEL": str(tiny_blip2_dir)})


@pytest.fixture(scope="module")
def app(app_setup, tmp_path_factory):
    """The real app as `app_setup` says, on a free loopback port, for the whole module: an
    `apps.RunningApp` (`.url`; `.demo` in this process, or `.process` and `.log` for a child process)."""
    with apps.running(app_setup, tmp_path_factory.mktemp("app") / "app.log") as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def leaves_nothing_behind(request):
    """Fails a test module that leaves one of the engine's threads running (a scheduler nobody closed, a
    generation nobody finished) or a backend loaded in the registry."""
    threads_before = set(engine_threads.running())
    loaded_before = {name for name in backends.REGISTRY if backends.is_loaded(name)}
    yield
    deadline = time.monotonic() + 5  # a closed scheduler's thread ends after its current step
    while (left := [t for t in engine_threads.running() if t not in threads_before]) and \
            time.monotonic() < deadline:  # fmt: skip
        gc.collect()  # an abandoned stream's generator ends its generate thread when collected
        time.sleep(0.05)
    loaded = {name for name in backends.REGISTRY if backends.is_loaded(name)} - loaded_before
    problems = []
    if left:
        problems.append(
            f"{len(left)} engine thread(s) still running ({', '.join(sorted(t.name for t in left))}): close "
            "every backend or scheduler the module builds (`close_after`, `contextlib.closing`)"
        )
    if loaded:
        problems.append(
            f"backends left loaded in the registry: {sorted(loaded)}: load them inside `install` or "
            "`backends.installed()`, which forget and close them afterwards"
        )
    if problems:
        pytest.fail(f"{request.module.__name__}: " + "; ".join(problems), pytrace=False)
