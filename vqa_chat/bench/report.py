"""The benchmark's table: every figure beside its baseline, the ratio and the goal; text, Markdown, JSON."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass

import torch


@dataclass
class Row:
    section: str
    metric: str
    value: float
    unit: str  # "ms", "tok/s", "%", "GB/s"
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""  # e.g. "<= 0.5x", ">= 3x", "<= turn 1"
    ok: bool | None = None  # goal met (None: no goal)

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or math.isnan(self.baseline) or math.isnan(self.value):
            return None
        return self.value / self.baseline


def _num(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    digits = 1 if abs(x) >= 10 else 2
    return f"{x:.{digits}f}{(' ' + unit) if unit else ''}"


def _cells(r: Row) -> list[str]:
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
    ok = {True: "yes", False: "NO", None: ""}[r.ok]
    base = f"{_num(r.baseline, r.unit)} ({r.baseline_name})" if r.baseline is not None else "-"
    return [r.section, r.metric, _num(r.value, r.unit), base, ratio, r.goal, ok]


HEADER = ["", "measure", "ours", "baseline", "ratio", "goal", "met"]


def text_table(rows: list[Row]) -> str:
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as f:
            memory = round(int(f.readline().split()[1]) / 2**20, 1)  # GiB
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "memory_gib": memory,
        "torch": torch.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }  # fmt: skip


def write(rows: list[Row], meta: dict, json_path: str | None, markdown_path: str | None) -> None:
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "rows": [asdict(r) | {"ratio": r.ratio} for r in rows]}, f, indent=2)
    if markdown_path:
        m = meta["machine"]
        head = (
            f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
            f"{m['memory_gib']} GiB, torch {m['torch']}{', GPU ' + m['gpu'] if m['gpu'] else ', no GPU'}.  \n"
            f"Model: {meta['model']} ({meta['device']}, {meta['dtype']}).  \n"
            f"Command: `{meta['command']}`\n\n"
        )
        with open(markdown_path, "w") as f:
            f.write(head + markdown_table(rows) + "\n")
