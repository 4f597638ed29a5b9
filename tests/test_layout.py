"""The house's layout, checked from the source alone (ast, no imports run): every module of vqa_chat/

1. takes part in no import cycle;
2. imports only from its own stage or lower ones, the stages being, lowest first,
   base (settings.py, budget.py, files.py, prompts.py, ports.py) -> data -> model -> engine -> backends
   -> photo -> chat -> ui -> cli -> train -> eval -> bench
   (`STAGES` below; the README's "Project layout" states the same order and a test keeps them equal);
3. has at most 300 lines;
4. is named in the README's "Project layout" tree (empty package markers excepted).

Which imports count: every `import` / `from ... import` of a vqa_chat module anywhere in the file, at the
top, inside functions and under `if TYPE_CHECKING:` alike. An import inside a function still makes the
module depend on the other one when it runs (a lazy import is how the engine's cycles hid), and a
type-only import still means one module cannot be read without the other. `from package import name`
counts as importing the module `package.name` when there is one, else the package's `__init__.py`; the
parent packages' `__init__.py` that Python runs on the way are not counted (a package's `__init__.py`
gathering its own modules is not a cycle). Each check is its own test, and each failure says what to fix.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vqa_chat"
README = ROOT / "README.md"
MAX_LINES = 300

# Lowest first. A module imports from its own stage or a lower one only.
STAGES = [
    "base", "data", "model", "engine", "backends", "photo", "chat", "ui", "cli", "train", "eval", "bench",
]  # fmt: skip
# The stage of each module directly in vqa_chat/ (a folder's modules are in the stage named like the folder).
TOP_LEVEL = {
    "__init__": "base",  # vqa_chat/__init__.py
    "settings": "base",  # every environment variable, read by any stage
    "budget": "base",  # the memory budget shared by the engine's caches and the chat's images
    "files": "base",  # checksums and the cache folder
    "prompts": "base",  # prompt templates
    "ports": "base",  # a free loopback port (tests, the bench, scripts)
    "cli": "cli",  # the command line: a front end beside the web page
}


@functools.cache
def modules() -> dict[str, Path]:
    """Dotted name -> file, for every .py under vqa_chat/ (a package is named by its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def show(name: str) -> str:
    return modules()[name].relative_to(ROOT).as_posix()


@functools.cache
def imports() -> dict[str, list[tuple[str, int]]]:
    """Module -> [(vqa_chat module it imports, line), ...], every import statement of the file."""
    mods = modules()
    found = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append((sub if sub in mods else base, node.lineno))
        kept = {(target, line) for target, line in targets if target in mods and target != name}
        found[name] = sorted(kept, key=lambda x: x[1])
    return found


def stage(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1:
        return TOP_LEVEL["__init__"]
    if (PACKAGE / parts[1]).is_dir():
        return parts[1] if parts[1] in STAGES else None
    return TOP_LEVEL.get(parts[1])


def test_every_module_has_a_stage():
    missing = [show(name) for name in modules() if stage(name) is None]
    if missing:
        pytest.fail(
            f"modules without a stage: {missing}. Add a top-level module to TOP_LEVEL, or a new folder to "
            "STAGES, in tests/test_layout.py, and the same order to the README's 'Project layout'.",
            pytrace=False,
        )


def test_no_import_cycles():
    """Each back edge of a depth-first search over the imports closes one cycle; none left = no cycles."""
    graph = {name: [t for t, _ in targets] for name, targets in imports().items()}
    line = {(name, t): n for name, targets in imports().items() for t, n in targets}
    cycles, state, path = [], {}, []  # state: 1 = on the current path, 2 = done

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in graph[name]:
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    described = [
        "; ".join(f"{show(a)}:{line[a, b]} imports {show(b)}" for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles
    ]
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s):\n  " + "\n  ".join(described) + "\nBreak each one: move what "
            "the lower module takes from the higher one into a module both can import (or the lower one).",
            pytrace=False,
        )


def test_no_imports_up_the_stages():
    wrong = []
    for name, targets in imports().items():
        here = stage(name)
        for target, line in targets:
            there = stage(target)
            if here and there and STAGES.index(there) > STAGES.index(here):
                wrong.append(
                    f"{show(name)}:{line} (stage {here}) imports {show(target)} (stage {there}): move what "
                    f"it takes into the {here} stage or lower, or the importing code up to {there} or higher"
                )
    if wrong:
        stages = " -> ".join(STAGES)
        pytest.fail(f"{len(wrong)} import(s) up the stages {stages}:\n  " + "\n  ".join(wrong), pytrace=False)


# Over the limit when the check was written, waiting for their split (issue 21, item 3): none may grow, and
# each leaves this list when it is split. The list must end empty.
NOT_YET_SPLIT: dict[str, int] = {}  # photo/answers.py left it when it was split (issue 20)


def test_modules_at_most_300_lines():
    sizes = {show(name): len(path.read_text().splitlines()) for name, path in modules().items()}
    grew = [f"{p} ({sizes[p]} > {n})" for p, n in NOT_YET_SPLIT.items() if sizes.get(p, 0) > n]
    assert not grew, f"modules waiting for their split grew: {', '.join(grew)}; split them instead"
    long = sorted(
        ((n, path) for path, n in sizes.items() if n > MAX_LINES and path not in NOT_YET_SPLIT), reverse=True
    )
    if long:
        pytest.fail(
            f"{len(long)} module(s) over {MAX_LINES} lines: "
            + ", ".join(f"{path} ({n})" for n, path in long)
            + ". Split each into modules with one job each (and name the new ones in the README's layout).",
            pytrace=False,
        )


def readme_layout() -> str:
    """The README's "## Project layout" section, up to the next heading."""
    text = README.read_text()
    assert "\n## Project layout\n" in text, "README.md has no '## Project layout' section"
    section = text.split("\n## Project layout\n", 1)[1]
    return re.split(r"\n#{1,2} ", section, maxsplit=1)[0]


def readme_named() -> set[str]:
    """Paths the layout tree names: each entry joined to the folders above it (by indentation), and .py
    files written on a folder's own line (`bench/  python -m vqa_chat.bench (__init__.py, __main__.py)`)."""
    tree = readme_layout().split("```")[1]
    named, folders = set(), []  # folders: [(indent, path), ...] enclosing the current line
    for text in tree.splitlines():
        words = text.split()
        if not words:
            continue
        indent = len(text) - len(text.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = (folders[-1][1] if folders else "") + words[0].rstrip(",")
        if path.endswith("/"):
            folders.append((indent, path))
            named.update(path + f for f in re.findall(r"\b\w+\.py\b", " ".join(words[1:])))
        elif path.endswith(".py"):
            named.add(path)
    return named


def test_every_module_named_in_readme_layout():
    named = readme_named()
    missing = [show(n) for n, path in modules().items() if path.read_text().strip() and show(n) not in named]
    if missing:
        pytest.fail(
            f"modules not named in the README's 'Project layout' tree: {missing}. Add a line for each under "
            "its folder, in the folder's order of reading: the file name, then what it does in a few words.",
            pytrace=False,
        )


def test_readme_states_the_stage_order():
    order = " -> ".join(STAGES)
    if order not in " ".join(readme_layout().split()):
        pytest.fail(
            f"the README's 'Project layout' should state the stages as in tests/test_layout.py: '{order}'",
            pytrace=False,
        )
