"""Import direction: kb <- data <- train <- pipeline <- eval <- serve <- cli, nothing reaching upward.

Every module under src/ktune is parsed with `ast` (never imported), and every `import` / `from ... import`
in it, at module level or inside a function, is resolved to a ktune module and placed in its layer. A module
may import from its own layer or any layer below it; an import from a higher layer is a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the layer of the longest prefix that names it ("ktune" itself only by
# exact name). The shared top-level modules sit at the bottom, except where what they import puts them higher:
# query_vocab reads data/answer_bank.json through ktune.data.answers.BANK_PATH, and decoding imports
# query_vocab, so both sit in the data layer (train, pipeline and eval import them; kb and data.* do not).
# serve sits above eval, as in the README's stage order: the H2 rating page serves eval's rubric and CSV.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shared", ("ktune", "ktune.errors", "ktune.paths", "ktune.jsonl", "ktune.threads", "ktune.prompt",
                "ktune.chat_api", "ktune.models", "ktune.config_file")),
    ("kb", ("ktune.kb",)),
    ("data", ("ktune.data", "ktune.query_vocab", "ktune.decoding")),
    ("train", ("ktune.train",)),
    ("pipeline", ("ktune.pipeline",)),
    ("eval", ("ktune.eval",)),
    ("serve", ("ktune.serve",)),
    ("cli", ("ktune.cli", "ktune.__main__")),
)

# Known upward imports, (importing module, imported module) with the reason each is tolerated. Empty today:
# every upward import found so far was fixed. An entry that no longer matches a real import fails the test.
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the ktune package under `root` (a src folder), by dotted name."""
    return {module_name(p, root): p for p in sorted((root / "ktune").rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, name: str, path: Path, known: dict[str, Path]) -> list[str]:
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # `from ktune import prompt` imports the module ktune.prompt; `from ktune import __version__` imports ktune.
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def imports(root: Path) -> dict[str, set[str]]:
    """module -> the ktune modules it imports anywhere in its body (functions included)."""
    known = modules(root)
    found: dict[str, set[str]] = {}
    for name, path in known.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve_from(node, name, path, known))
        found[name] = {t for t in targets if t == "ktune" or t.startswith("ktune.")}
    return found


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            fits = module == prefix or (prefix != "ktune" and module.startswith(prefix + "."))
            if fits and len(prefix) > best:
                best, rank = len(prefix), index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return rank


def upward_imports(root: Path) -> set[tuple[str, str]]:
    """(importer, imported) for every import from a higher layer."""
    return {(src, dst) for src, targets in imports(root).items() for dst in targets
            if layer_of(dst) > layer_of(src)}


def _describe(pair: tuple[str, str]) -> str:
    src, dst = pair
    return f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"


def test_every_module_has_a_layer():
    for name in modules(SRC):
        layer_of(name)


def problems(upward: set[tuple[str, str]], allowed: dict[tuple[str, str], str]) -> list[str]:
    """Upward imports not allowed, and allowed ones that no longer happen."""
    found = [f"upward: {_describe(p)}" for p in sorted(upward - allowed.keys())]
    return found + [f"ALLOWED entry no longer needed, remove it: {p}" for p in sorted(allowed.keys() - upward)]


def test_no_module_imports_from_a_higher_layer():
    found = problems(upward_imports(SRC), ALLOWED)
    assert not found, "\n".join(found)


def test_the_scan_sees_imports_it_must_judge():
    found = imports(SRC)
    assert "ktune.data.answers" in found["ktune.query_vocab"]  # inside a function
    assert "ktune.errors" in found["ktune.kb.readers"]  # module level, absolute
    assert "ktune" in found["ktune.train.run"]  # from ktune import __version__


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_synthetic_upward_import_is_caught(tmp_path):
    for package in ("ktune", "ktune/kb", "ktune/kb/deep", "ktune/data", "ktune/pipeline"):
        _write(tmp_path, f"{package}/__init__.py")
    _write(tmp_path, "ktune/errors.py")
    _write(tmp_path, "ktune/pipeline/qa.py", "from ktune.kb import deep\nfrom ktune import errors\n")
    _write(tmp_path, "ktune/kb/lazy.py", "def f():\n    from ktune.pipeline.qa import x\n    return x\n")
    _write(tmp_path, "ktune/kb/deep/rel.py", "from ...data import y\n")
    assert upward_imports(tmp_path) == {
        ("ktune.kb.lazy", "ktune.pipeline.qa"),
        ("ktune.kb.deep.rel", "ktune.data"),
    }
    assert _describe(("ktune.kb.lazy", "ktune.pipeline.qa")) == "ktune.kb.lazy (kb) imports ktune.pipeline.qa (pipeline)"


def test_an_allow_list_entry_is_honoured_and_a_stale_one_fails():
    upward = {("ktune.kb.lazy", "ktune.pipeline.qa")}
    assert problems(upward, {("ktune.kb.lazy", "ktune.pipeline.qa"): "reason"}) == []
    assert problems(set(), {("ktune.kb.lazy", "ktune.pipeline.qa"): "reason"}) == [
        "ALLOWED entry no longer needed, remove it: ('ktune.kb.lazy', 'ktune.pipeline.qa')"
    ]
    assert problems(upward, {}) == ["upward: ktune.kb.lazy (kb) imports ktune.pipeline.qa (pipeline)"]


def test_a_module_outside_every_layer_is_an_error():
    with pytest.raises(AssertionError, match="ktune.newstage is in no layer"):
        layer_of("ktune.newstage")
