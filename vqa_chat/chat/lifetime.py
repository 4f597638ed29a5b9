"""How long a chat lives on the server, and what a user who comes back to an ended one is told.

Gradio keeps each session's `ChatSession` in a `gr.State`. The page gives that state a `time_to_live` of
$VQA_CHAT_IDLE_MINUTES (default 30) and hands the session back as an output of every event, so the clock
restarts with each use: Gradio's own expiry (checked every second, for browser tabs and API clients
alike) then ends a session after that long without use and calls `Lifetime.expire`, which frees all it
held (picture, features, facts, KV prefixes, files on disk). A closed browser tab is freed at once
(`Lifetime.closed`, from `demo.unload`). Past $VQA_CHAT_MAX_SESSIONS sessions Gradio drops the least
recently used one without a callback; the session's finaliser (session.py) frees its files then.

Why 30 minutes: long enough to read a long description with a screen reader, fetch the next thing to
photograph or answer the door and go on; short enough that an abandoned session's files and its few
kilobytes do not pile up. Memory does not depend on it: the caches have budgets of their own.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vqa_chat.chat.session import ChatSession

REMEMBER = 10_000  # ended sessions whose users still get the "ended" message (~100 bytes each)


def idle_text(seconds: float) -> str:
    """30 minutes, 1 minute, 5 seconds: how the idle limit is said."""
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{round(seconds)} second{'s' if round(seconds) != 1 else ''}"


class Lifetime:
    """Ends idle sessions (Gradio's `gr.State` expiry calls `expire`) and remembers which ones it ended."""

    def __init__(self, idle_seconds: float, remember: int = REMEMBER):
        self.idle_seconds = idle_seconds
        self.remember = remember
        self.ended: OrderedDict[str, float] = OrderedDict()  # session hash -> when it ended, oldest first
        self.live: weakref.WeakValueDictionary[str, ChatSession] = weakref.WeakValueDictionary()
        self.lock = threading.Lock()

    @property
    def message(self) -> str:
        idle = idle_text(self.idle_seconds)
        return f"This chat ended after {idle} without use; add the photo again to go on."

    def bind(self, session: ChatSession, session_hash: str | None) -> ChatSession:
        """Called by every event first: tie the session to its Gradio session hash. A new session under a
        hash that was ended is a user coming back: it will say so instead of "add an image first"."""
        if session.session_id is None and session_hash:
            session.session_id = session_hash
            with self.lock:
                self.live[session_hash] = session
                if self.ended.pop(session_hash, None) is not None:
                    session.ended_message = self.message
        return session

    def expire(self, session: ChatSession) -> None:
        """gr.State's delete_callback: the session was unused for the idle limit. A session answering
        right now is left alone (its next update stores it again, with a fresh clock)."""
        if session.busy:
            return
        if session.session_id is not None:
            with self.lock:
                self.ended[session.session_id] = time.time()
                while len(self.ended) > self.remember:
                    self.ended.popitem(last=False)
                self.live.pop(session.session_id, None)
        session.end()

    def closed(self, session_hash: str | None) -> None:
        """demo.unload: the browser tab is gone (a reload is a new session), so free its session now."""
        with self.lock:
            session = self.live.pop(session_hash, None) if session_hash else None
        if session is not None and not session.busy:
            session.end()
