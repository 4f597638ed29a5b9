"""The app under test, started the one way every module that needs it does (conftest.py's `app` fixture).

A module says how its app runs by overriding the module-scoped `app_setup` fixture with an `AppSetup`; the
`app` fixture starts it once per module (once per parameter of a parametrised `app_setup`) and gives a
`RunningApp`. In this process by default (Gradio on a free loopback port), or `python app.py` in a child
process (`process=[its arguments]`). Whatever it changed (environment, registry) is undone when it stops.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vqa_chat import backends
from vqa_chat.backends import Entry
from vqa_chat.backends.base import Backend
from vqa_chat.bench.through_app import start_app
from vqa_chat.ports import free_port
from vqa_chat.ui.page import AppConfig, build_app, launch_kwargs


@dataclass
class AppSetup:
    """How a test module's app runs."""

    config: AppConfig = field(default_factory=AppConfig)  # in this process: the app's configuration
    backends: dict[str, Backend] = field(default_factory=dict)  # built backends it serves (builder closes)
    entries: dict[str, Entry] = field(default_factory=dict)  # registry entries added while it runs
    env: dict[str, str | None] = field(default_factory=dict)  # environment while it runs (None: unset)
    process: list[str] | None = None  # `python app.py` with these arguments in a child process instead


@dataclass
class RunningApp:
    url: str  # http://127.0.0.1:PORT/
    demo: object | None = None  # the Gradio Blocks, when the app runs in this process
    process: subprocess.Popen | None = None  # the child process, when it runs in one
    log: Path | None = None  # the child's output


@contextmanager
def running(setup: AppSetup, log: Path) -> Iterator[RunningApp]:
    """The app of `setup`, stopped afterwards (a child process is killed if the test did not stop it);
    `log` takes a child's output."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in setup.env.items():
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        for name, entry in setup.entries.items():
            mp.setitem(backends.REGISTRY, name, entry)
        if setup.process is not None:
            with child(setup.process, log) as app:
                yield app
            return
        with backends.installed(**setup.backends):  # what the app loads is closed after it stops
            demo = build_app(setup.config)
            where = dict(server_name="127.0.0.1", server_port=free_port())
            demo.launch(**where, prevent_thread_lock=True, **launch_kwargs(setup.config))
            try:
                yield RunningApp(demo.local_url, demo=demo)
            finally:
                demo.close()


@contextmanager
def child(args: list[str], log: Path) -> Iterator[RunningApp]:
    """`python app.py ARGS` on a free loopback port with this process's environment, once it listens."""
    try:
        process, url = start_app(args, log, env=dict(os.environ), timeout=120)
    except RuntimeError as e:
        pytest.fail(f"{e}\n{log.read_text()}")
    try:
        yield RunningApp(url, process=process, log=log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
