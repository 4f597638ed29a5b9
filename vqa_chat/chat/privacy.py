"""Privacy by default: uploads lose their metadata first, and nothing is logged unless asked for.

- `images.load_image` copies only the pixels (EXIF orientation applied first), so no EXIF, GPS, ICC or
  comment data reaches the models, the chat's thumbnails or any log. `scrub_upload` also rewrites the
  upload that Gradio saved in its cache with those clean pixels, so the original file with its GPS position
  does not stay on the server's disk.
- No images or questions are logged unless the app runs with `--log-dir DIR` (`configure_log`): then every
  answered turn is one JSON line in DIR/chat.jsonl and each image is saved once (already cleaned) in
  DIR/images/.
- "Delete my session" (`ChatSession.delete`) drops the session's images, cached features and history; its
  upload goes once no other session holds the same photo (`hold_upload`, `release_upload`).
- Nothing stays on disk: the chat's thumbnails and heatmaps, and Gradio's uploads (`keep_uploads_private`),
  live in one private folder per process (`temp_dir`, mode 0700), removed when the process exits, also on
  Ctrl-C and SIGTERM (`exit_on_signals`). Thumbnails inside Gradio's own folder are served as they are, so
  Gradio keeps no copy of them that would outlive the session's `close`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

from PIL import Image

from vqa_chat import settings

log = logging.getLogger(__name__)

_log_dir: Path | None = None
_lock = threading.Lock()
_temp_dir: Path | None = None
_temp_lock = threading.Lock()


def temp_dir() -> Path:
    """This process's private folder (mode 0700) for every copy of a user's image: made on first use under
    the system's temp folder ($TMPDIR), removed with all it holds when the process exits."""
    global _temp_dir
    with _temp_lock:
        if _temp_dir is None:
            _temp_dir = Path(tempfile.mkdtemp(prefix="vqa-chat-")).resolve()
            atexit.register(shutil.rmtree, _temp_dir, ignore_errors=True)
    return _temp_dir


def keep_uploads_private() -> Path:
    """Make Gradio save uploads in `temp_dir()`. Call it before the page is built: Gradio reads
    $GRADIO_TEMP_DIR when it creates the components and when it launches."""
    settings.use_gradio_temp_dir(temp_dir())
    return temp_dir()


def exit_on_signals() -> None:
    """SIGTERM ends the app like Ctrl-C: a KeyboardInterrupt, so Gradio closes its server and Python exits
    normally, running the atexit clean-up (the default SIGTERM action kills the process on the spot)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if a parent ignored it


def gradio_cache_dir() -> Path:
    """Where Gradio saves uploads ($GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return Path(settings.read().gradio_temp_dir or Path(tempfile.gettempdir()) / "gradio").resolve()


def is_gradio_upload(path: str | os.PathLike) -> bool:
    try:
        return Path(path).resolve().is_relative_to(gradio_cache_dir())
    except (OSError, ValueError):
        return False


def scrub_upload(path: str | os.PathLike, clean: Image.Image) -> bool:
    """Overwrite an upload in Gradio's cache with the clean (metadata-free) pixels. Files elsewhere (a CLI
    argument, a script's own file) are never touched. The new file is written aside and renamed into place,
    so a session reading the same upload at that moment sees the old file or the new one, never half of one.
    True if the file was rewritten."""
    if not is_gradio_upload(path):
        return False
    path = Path(path)
    staging = path.with_name(f".{uuid.uuid4().hex}{path.suffix}")
    try:
        clean.save(staging, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        os.replace(staging, path)
        return True
    except Exception as e:  # an odd format PIL cannot write: remove the original rather than keep it
        log.info("could not rewrite an upload (%s); removing it", type(e).__name__)
        for leftover in (staging, path):
            with contextlib.suppress(OSError):
                os.remove(leftover)
        return False


# Gradio names an upload by its content's hash: two visitors who send the same photo (or click the same
# example) share one file. So a session does not delete an upload when it ends; it lets go of it, and the
# file goes when the last session holding it lets go, unless the photo was uploaded anew since (its ctime
# changed: a session still queued will read it) or Gradio keeps it (examples, default values).
_held: dict[str, list[int]] = {}  # upload path -> [sessions holding it, its ctime after our rewrite]
_kept: set[str] = set()  # files Gradio keeps in its cache for every visitor (keep_files)
_held_lock = threading.Lock()


def keep_files(paths) -> None:
    """Files Gradio serves to every visitor (the examples): never rewritten or deleted by a session."""
    _kept.update(str(Path(p).resolve()) for p in paths)


def _ctime(path: str) -> int | None:
    try:
        return os.stat(path).st_ctime_ns
    except OSError:
        return None


def hold_upload(path: str | os.PathLike, clean: Image.Image) -> str | None:
    """A session starts using an upload: rewrite it without metadata (`scrub_upload`) and count the
    session as one of its holders. Returns the path to hand to `release_upload` later, or None for files
    that are not a user's upload (files outside Gradio's cache, examples)."""
    key = str(Path(path).resolve())
    if key in _kept or not is_gradio_upload(key):
        return None
    if not scrub_upload(key, clean):
        return None
    with _held_lock:
        holders = _held.setdefault(key, [0, 0])
        holders[0] += 1
        holders[1] = _ctime(key)
    return key


def release_upload(path: str) -> None:
    """A session is done with an upload (from `hold_upload`): the last holder deletes it."""
    with _held_lock:
        holders = _held.get(path)
        if holders is None:
            return
        holders[0] -= 1
        if holders[0] > 0:
            return
        del _held[path]
        if _ctime(path) == holders[1]:  # not uploaded again since: nobody else is about to read it
            with contextlib.suppress(OSError):
                os.remove(path)


def configure_log(log_dir: str | os.PathLike | None) -> None:
    """Turn logging of questions, answers and images on (a folder; `~` is expanded) or off (None, the
    default)."""
    global _log_dir
    _log_dir = Path(log_dir).expanduser() if log_dir else None
    if _log_dir is not None:
        (_log_dir / "images").mkdir(parents=True, exist_ok=True)


def log_dir() -> Path | None:
    return _log_dir


def new_id() -> str:
    return uuid.uuid4().hex


def record(session_id: str, turn, image: Image.Image | None, image_key: str, mode: str = "ask") -> None:
    """Log one answered turn when --log-dir is set (otherwise do nothing at all)."""
    if _log_dir is None:
        return
    image_file = None
    if image is not None:
        image_file = _log_dir / "images" / f"{session_id}-{image_key}.png"
        if not image_file.exists():
            image.save(image_file)  # already metadata-free (images.load_image)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "session": session_id,
        "mode": mode,
        "backend": turn.backend,
        "question": turn.question,
        "answer": turn.answer,
        "stopped": turn.stopped,
        "confidence": turn.confidence,
        "unsure": turn.unsure,
        "image": image_file.relative_to(_log_dir).as_posix() if image_file else None,
    }
    with _lock, open(_log_dir / "chat.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def save_thumbnail(image: Image.Image, folder: Path, side: int) -> str:
    """A small JPEG copy of a user's (already scrubbed) picture for the chat, in this process's private
    folder (deleted with the session, and at exit)."""
    folder.mkdir(parents=True, exist_ok=True)
    thumb = image.copy()
    thumb.thumbnail((side, side))
    path = folder / f"{uuid.uuid4().hex}.jpg"
    thumb.save(path, quality=85)
    return str(path)
