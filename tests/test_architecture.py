"""The import structure of ``src/tailkd``, read with ``ast`` (nothing is imported): no import cycle, the
layers import only downwards, and the modules meant to stay light do not load torch.

Every ``import tailkd...`` and ``from tailkd... import`` counts, at module level and inside functions
alike: an import moved into a function still ties the two modules together (it only runs later), so
hiding a cycle in a function does not remove it. Imports under ``if TYPE_CHECKING:`` never run and do
not count. ``from package import name`` is an import of ``package.name`` where that is a module, else of
the package's ``__init__``. Importing a module also runs its packages' ``__init__`` files; those
implicit imports are not edges (every module would otherwise be in a cycle with its own package).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# top to bottom; a module may import from its own package and from any layer below its own. Packages
# that share a layer (teachers, training) import neither each other. BASE: the small top-level modules
# every layer may use, which import only each other.
LAYERS = [("cli",), ("config",), ("methods",), ("signals",), ("teachers", "training"), ("tasks",), ("models",),
          ("report",)]
BASE = ("tailkd", "errors", "settings", "schema", "stats", "jsonl", "progress", "timing", "console", "provenance")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # a module of tailkd, or the top-level name of another distribution
    line: int
    at_import: bool  # runs when the source is imported (not inside a function)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "tailkd").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports_of(name: str) -> list[Import]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def module_of(dotted: str) -> str:
        while dotted not in MODULES:
            dotted = dotted.rpartition(".")[0]
        return dotted

    def add(dotted: str, line: int, at_import: bool) -> None:
        if dotted == "tailkd" or dotted.startswith("tailkd."):
            found.append(Import(name, module_of(dotted), line, at_import))
        else:
            found.append(Import(name, dotted.partition(".")[0], line, at_import))

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                for other in child.orelse:
                    visit(other, at_import)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno, at_import)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                for alias in child.names:
                    inner = f"{module}.{alias.name}"
                    add(inner if inner in MODULES else module, child.lineno, at_import)
            visit(child, at_import and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return list(dict.fromkeys(found))  # ``from x import a, b`` is one import of x


IMPORTS = {name: _imports_of(name) for name in MODULES}


def _internal(name: str) -> list[Import]:
    return [i for i in IMPORTS[name] if i.target in MODULES and i.target != name]


def _cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in {i.target for i in _internal(v)}:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in MODULES:
        if name not in index:
            connect(name)
    return found


def _group(name: str) -> str:
    """The top-level package of a module, or its own name for a top-level module."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "tailkd"


def _layer(name: str) -> int:
    group = _group(name)
    if group in BASE:
        return len(LAYERS)
    for depth, groups in enumerate(LAYERS):
        if group in groups:
            return depth
    raise AssertionError(f"{name}: place {group!r} in LAYERS or BASE of {__file__}")


def _loaded_at_import(name: str) -> set[str]:
    """Every distribution that importing ``name`` loads through tailkd's own module-level imports."""
    seen, todo, outside = {name}, [name], set()
    while todo:
        for i in IMPORTS[todo.pop()]:
            if not i.at_import:
                continue
            if i.target in MODULES:
                if i.target not in seen:
                    seen.add(i.target)
                    todo.append(i.target)
            else:
                outside.add(i.target)
    return outside


def test_the_import_graph_is_read():
    """The reading above finds what it should: a guard against a test that passes because it sees nothing."""
    assert len(MODULES) > 60 and "tailkd.signals.verifier" in MODULES
    assert any(i.target == "tailkd.signals.ta" and i.at_import for i in IMPORTS["tailkd.methods.tail"])
    assert any(i.target == "torch" and i.at_import for i in IMPORTS["tailkd.signals.ta"])
    assert any(not i.at_import for i in IMPORTS["tailkd.signals.ta"])  # build_ta's imports


def test_no_import_cycle():
    described = []
    for component in _cycles():
        members = set(component)
        ties = [f"    {i.source} -> {i.target} (line {i.line}{'' if i.at_import else ', in a function'})"
                for m in component for i in _internal(m) if i.target in members]
        described.append(" <-> ".join(component) + "\n" + "\n".join(ties))
    assert not described, "import cycles:\n" + "\n".join(described)


def test_layers_import_only_downwards():
    upward = [f"{i.source} -> {i.target} (line {i.line})" for name in MODULES for i in _internal(name)
              if _group(i.source) != _group(i.target) and not (
                  _layer(i.target) > _layer(i.source) or _layer(i.source) == _layer(i.target) == len(LAYERS))]
    assert not upward, "imports against the layers " + " > ".join("/".join(g) for g in LAYERS) + " > base:\n" + "\n".join(upward)


def test_the_verifier_and_the_report_load_no_torch():
    """The arithmetic verifier is pure Python, and the report reads JSON: neither imports torch, through
    any chain of tailkd's module-level imports (their packages' ``__init__`` files aside, see above)."""
    for name in ("tailkd.signals.verifier", "tailkd.report", "tailkd.report.write", "tailkd.stats", "tailkd.jsonl"):
        assert "torch" not in _loaded_at_import(name), name
