"""The bounded load script end to end: `scripts/load_test.py --tiny` starts the real app (a tiny random
BLIP-2) on loopback and drives 16 gradio_client sessions x 5 turns, eight rounds (memory judged by its trend
over rounds 2-8), then a burst that fills the waiting line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # starts the app: minutes


def test_sixteen_sessions_five_turns_no_errors_no_leaks_busy_when_full(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/load_test.py"), "--tiny", "--sessions", "16", "--turns", "5"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["errors"] == [] and summary["leaks"] == []
    assert summary["asks"] >= 16 * 5 * 8  # eight rounds of every session's five turns
    assert summary["mismatches_alone"] == 0  # answers under load == the same conversation alone
    assert summary["rss_slope_mb"] is not None  # enough rounds to judge the trend
    assert summary["memory_stable"] is True, summary["rss_mb"]
    assert summary["burst"]["busy"] > 0 and summary["burst"]["other_errors"] == 0
    assert summary["burst"]["answered"] > 0
    assert out.returncode == 0 and summary["ok"]
