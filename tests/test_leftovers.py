"""What the code says of itself stays true (read from the source): the files its docstrings and comments
name exist, every module-level constant is used somewhere, ui/page.py names the API endpoints it serves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vqa_chat"
EXTERNAL = {"vqaEval.py"}  # the official VQA evaluation script, which vqa_metric.py follows


def sources() -> dict[Path, str]:
    files = [*PACKAGE.rglob("*.py"), ROOT / "app.py", *ROOT.glob("scripts/*.py"), *ROOT.glob("tests/*.py")]
    return {path: path.read_text() for path in sorted(files)}


def test_named_files_exist():
    ours = {path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*.py") if ".venv" not in path.parts}
    missing = []
    for path, text in sources().items():
        for number, line in enumerate(text.splitlines(), 1):
            for name in re.findall(r"[\w./]*\w+\.py\b", line):
                if name not in EXTERNAL and not any(f == name or f.endswith("/" + name) for f in ours):
                    missing.append(f"{path.relative_to(ROOT)}:{number} names {name}")
    assert not missing, "files named that do not exist (renamed or gone?): " + "; ".join(missing)


def test_module_constants_are_used():
    """A module-level UPPER_CASE name that nothing reads is a leftover: used means named again in its own
    module, or in a file that also names the module (`from ...custom import NAME`, `custom.NAME`)."""
    texts = sources()
    unused = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.parent.name if path.stem == "__init__" else path.stem
        for node in ast.parse(texts[path]).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            for name in (n.id for n in names if isinstance(n, ast.Name)):
                if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                    continue
                at_home = len(re.findall(rf"\b{name}\b", texts[path])) > 1  # besides the assignment
                elsewhere = any(re.search(rf"\b{name}\b", text) and re.search(rf"\b{module}\b", text)
                                for other, text in texts.items() if other != path)  # fmt: skip
                if not (at_home or elsewhere):
                    unused.append(f"{path.relative_to(ROOT)}: {name}")
    assert not unused, f"constants nothing uses: {unused}"


def test_page_docstring_names_its_api():
    tree = ast.parse((PACKAGE / "ui" / "api.py").read_text())
    served = {kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
              for kw in node.keywords if kw.arg == "api_name"}  # fmt: skip
    assert served >= {"ask", "describe", "facts", "history", "chat", "reset", "stop"}
    doc = ast.get_docstring(ast.parse((PACKAGE / "ui" / "page.py").read_text()))
    assert all(f"/{name}" in doc for name in served), f"ui/page.py's docstring should name {sorted(served)}"
