"""A backend as the chat waits for it: the shared instance from the registry, loaded on first use.

While it loads (its first use, or the app's own load at start), the question is in the chat at once, with a
notice and a "Loading" status, so that Enter is never followed by silence; a slow load leaves a note of how
long it took. A load that fails takes its placeholders back and says which other backends there are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

from vqa_chat import backends
from vqa_chat.backends.base import Backend
from vqa_chat.chat.conversation import Turn
from vqa_chat.chat.notes import Note, short

log = logging.getLogger(__name__)


class LoadFailed(Exception):
    """The backend could not be loaded; str(error) is the chat's message."""


def load_backend(name: str, question: str, chat: list[Turn | Note]) -> Generator[str, None, Backend]:
    """Backend `name` (a generator returning it), with the wait shown in `chat`, the session's visible chat,
    changed in place. Raises LoadFailed (its placeholders gone from the chat) when it cannot be loaded."""
    label = backends.label(name)
    placeholders: list[Note] = []
    if not backends.is_loaded(name):
        placeholders = [  # the question is shown now; the turn takes its place once loaded
            Note(question, role="user"),
            Note(f"Loading the {label} backend; I'll answer as soon as it is ready…"),
        ]
        chat += placeholders
        yield f"Loading the {label} backend. Your question will be answered when it is ready."
    start = time.monotonic()
    try:
        backend = backends.get_backend(name)
    except Exception as e:
        log.exception("backend %s failed to load", name)
        chat[:] = [item for item in chat if item not in placeholders]
        other = " or ".join(backends.others(name))
        raise LoadFailed(
            f"The {label} backend could not be loaded ({short(e)}). "
            f"Your chat is kept: choose another Backend ({other}) and ask again."
        ) from e
    if placeholders:  # the turn shows the question from now on; a slow load keeps a notice of it
        seconds = time.monotonic() - start
        asked, loading = placeholders
        chat[:] = [item for item in chat if item is not asked and (seconds >= 1 or item is not loading)]
        loading.text = f"{label} backend ready after {seconds:.0f} s."
    return backend
