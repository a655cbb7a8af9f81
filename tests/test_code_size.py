"""Size limits for the source: no module under src/ktune over 400 lines, no function over 60 lines.

Files are read and parsed with `ast` (never imported). A file counts its lines as `wc -l` does; a function (or
method, nested ones included, async ones too) counts from its `def` line to its last line, decorators not
included. Split a module that grows past the limit by responsibility, and a function by extracting a
well-named helper.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function in `tree`, classes and enclosing functions in the name."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, name + ".")
        else:
            yield from _functions(node, prefix)


def oversized(root: Path) -> list[str]:
    """Every file and function under `root` (a src folder) over its limit, as `path: what`."""
    found = []
    for path in sorted((root / "ktune").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root)
        lines = text.count("\n")
        if lines > MAX_FILE_LINES:
            found.append(f"{where}: {lines} lines, over {MAX_FILE_LINES}")
        for name, node in _functions(ast.parse(text, filename=str(path))):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{where}:{node.lineno}: {name} is {length} lines, over {MAX_FUNCTION_LINES}")
    return found


def test_no_module_or_function_is_over_its_size_limit():
    found = oversized(SRC)
    assert not found, "split these by responsibility:\n" + "\n".join(found)


def _assignments(n: int) -> str:
    return "".join(f"    x{i} = {i}\n" for i in range(n))


def test_a_synthetic_long_file_and_long_function_are_named(tmp_path):
    package = tmp_path / "ktune"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # a method of def line + 60 body lines: 61 lines; a function of def line + 59: exactly at the limit
    (package / "long_def.py").write_text("class A:\n    def fine(self):\n        pass\n\n    async def long(self):\n"
                                         + _assignments(MAX_FUNCTION_LINES).replace("    ", "        "))
    (package / "just_fits.py").write_text("@staticmethod\ndef f():\n" + _assignments(MAX_FUNCTION_LINES - 1))
    (package / "many_lines.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    (package / "at_the_limit.py").write_text("x = 1\n" * MAX_FILE_LINES)
    assert oversized(tmp_path) == [
        f"ktune/long_def.py:5: A.long is {MAX_FUNCTION_LINES + 1} lines, over {MAX_FUNCTION_LINES}",
        f"ktune/many_lines.py: {MAX_FILE_LINES + 1} lines, over {MAX_FILE_LINES}",
    ]
