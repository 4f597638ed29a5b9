"""Prompt templates live as text files in prompts/ at the top of the repository."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@cache
def load_prompt(name: str) -> str:
    """The template prompts/NAME.txt, e.g. load_prompt("question") == "Question: {question} Answer:"."""
    return (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8").strip()
