"""What a chat session does around an answer, beyond streaming it (kept out of session.py):

describe mode's text source, the honest-uncertainty check, opt-in logging and the "where the model
looked" heatmap. Every function takes the session's own objects; nothing here holds state.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from vqa_chat.chat import confidence, describe, heatmap, privacy

log = logging.getLogger(__name__)

HEATMAP_SIDE = 512  # the heatmap picture's longest side


def describe_question() -> str:
    return describe.describe_question()


def answer_stream(backend, embeds, prompt: str, settings, stop, state: dict, mode: str):
    """The answer's text pieces: a composed description (BLIP-2 describe mode) or the backend's stream."""
    if mode == "describe" and describe.composes(backend):
        return describe.blip2_description(backend, embeds, settings, stop)
    return backend.stream(embeds, prompt, settings, stop, **state)


def check_confidence(backend, embeds, turn, pieces) -> None:
    """Score the finished answer and mark it unsure when below the backend's calibrated threshold.

    A composed BLIP-2 description is judged by its caption (its first and main sentence)."""
    prompt, answer = turn.prompt, turn.answer
    if isinstance(pieces, describe.Blip2Description):
        prompt, answer = describe.blip2_templates()["caption"], pieces.caption
    try:
        turn.confidence = confidence.answer_confidence(backend, embeds, prompt, answer)
    except Exception:  # scoring is a bonus: never lose the answer over it
        log.exception("could not score the answer")
        return
    turn.unsure = confidence.is_unsure(backend.name, turn.confidence)


def log_turn(session, turn, mode: str) -> None:
    """Record the turn only when the app runs with --log-dir (privacy.py)."""
    if privacy.log_dir() is None:
        return
    if session.log_id is None:
        session.log_id = privacy.new_id()
    key = f"{turn.segment}-{id(session.image) & 0xFFFFFF:06x}"
    try:
        privacy.record(session.log_id, turn, session.image, key, mode)
    except OSError:
        log.exception("could not write the chat log")


def last_answered(session):
    """The newest finished turn about the current image, or None."""
    for turn in reversed(session.conversation.segment_turns()):
        if turn.answer.strip() and turn is not session.pending:
            return turn
    return None


def heatmap_for(session, backend) -> tuple[str, str]:
    """(file of the heatmap picture, its text alternative) for the session's last answer.

    Raises ValueError with a user-readable message when there is nothing to show."""
    if session.image is None:
        raise ValueError("Add an image and ask a question first; then I can show where the model looked.")
    turn = last_answered(session)
    prompt = turn.prompt if turn else describe.blip2_templates()["caption"]
    picture = session.image.copy()
    picture.thumbnail((HEATMAP_SIDE, HEATMAP_SIDE))
    image, alt = heatmap.heatmap_image(backend, picture, prompt, session.embeds.get(backend.name))
    if turn is not None:
        alt += f' It is for the answer to "{turn.question}".'
    path = Path(privacy_dir()) / f"heatmap-{uuid.uuid4().hex}.png"
    image.save(path)
    session.thumbnails.append(str(path))  # deleted with the session's other files
    return str(path), alt


def privacy_dir() -> Path:
    from vqa_chat.chat.session import THUMB_DIR

    THUMB_DIR.mkdir(parents=True, exist_ok=True)
    return THUMB_DIR
