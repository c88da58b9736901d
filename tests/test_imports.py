"""The import graph of ``distill`` / ``detectors`` / ``segmentors``, read with ``ast`` (module-level
and in-function imports alike, ``if TYPE_CHECKING:`` blocks skipped):

* no import cycle between modules;
* no in-function import of a sibling module outside :data:`LAZY_IMPORTS`, the deliberate lazy
  imports (open_clip / ``distill.teachers`` / ``distill.toy`` kept out of students, host frameworks
  kept out of ``distill``), each marked ``# lazy: <why>`` on its line or the line above;
* ``detectors``' layering, one way: config -> data / modeling -> teacher -> engine -> preparation
  -> applications (export, predictor, CLI); data and modeling do not import each other;
* private (``_``-prefixed) Detectron2 members are used only in ``detectors/host.py``.

What the imports do at run time is checked by ``tests/test_hosts.py`` (``distill`` imports no host
framework) and ``tests/test_vild_model.py`` (``import detectors`` imports no teacher).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("distill", "detectors", "segmentors")

_NO_OPEN_CLIP = "`import detectors` (students) imports the engine, which must not load open_clip"
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("detectors.data.toy", "distill.toy"): _NO_OPEN_CLIP,
    ("detectors.teacher", "distill.teachers"): _NO_OPEN_CLIP,
    ("detectors.teacher", "distill.toy"): _NO_OPEN_CLIP,
    (
        "detectors.modeling.baron_heads",
        "distill.teachers.handle",
    ): "a student module: distill.teachers imports open_clip",
}
"""``(module, imported module) -> why`` of every allowed in-function import of a sibling module."""

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("config", ("detectors.config", "detectors.host", "detectors.comm")),
    ("data / modeling", ("detectors.data", "detectors.modeling", "detectors.evaluation")),
    ("teacher", ("detectors.teacher",)),
    ("engine", ("detectors.engine",)),
    ("preparation", ("detectors.proposals", "detectors.prepare")),
    (
        "applications",
        (
            "detectors.export",
            "detectors.predictor",
            "detectors.cli",
            "detectors.testing",
            "detectors",
        ),
    ),
)
"""``detectors``' layers, lowest first (a module is in the layer of its longest listed prefix)."""


@dataclass(frozen=True)
class Import:
    module: str
    imported: str
    line: int
    in_function: bool
    comment: str


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _targets(
    module: str, node: ast.Import | ast.ImportFrom, is_package: bool, known: dict
) -> list[str]:
    """The known modules an import statement loads (``from pkg import mod`` -> ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [
            f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names
        ]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.append(name)
    return out


def _visit(
    node: ast.AST,
    *,
    module: str,
    path: Path,
    lines: list[str],
    known: dict,
    in_function: bool,
    found: list[Import],
) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            comment = " ".join(lines[child.lineno - 2 : child.end_lineno])
            for target in _targets(module, child, path.name == "__init__.py", known):
                found.append(Import(module, target, child.lineno, in_function, comment))
        functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        _visit(
            child,
            module=module,
            path=path,
            lines=lines,
            known=known,
            in_function=in_function or isinstance(child, functions),
            found=found,
        )


def _imports() -> list[Import]:
    known = _modules()
    found: list[Import] = []
    for module, path in known.items():
        source = path.read_text(encoding="utf-8")
        _visit(
            ast.parse(source),
            module=module,
            path=path,
            lines=source.splitlines(),
            known=known,
            in_function=False,
            found=found,
        )
    return found


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _layer(module: str) -> int:
    best, rank = -1, -1
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), position
    return rank


def test_no_import_cycles():
    cycles = _cycles({(i.module, i.imported) for i in _imports()})
    assert not cycles, f"modules importing each other (directly or through others): {cycles}"


def test_in_function_sibling_imports_are_the_allowed_lazy_ones():
    lazy = [i for i in _imports() if i.in_function]
    unexpected = [
        f"{i.module}:{i.line} -> {i.imported}"
        for i in lazy
        if (i.module, i.imported) not in LAZY_IMPORTS
    ]
    assert not unexpected, (
        "in-function imports of sibling modules (import them at module level, "
        f"or add a deliberate lazy import to LAZY_IMPORTS): {unexpected}"
    )
    unmarked = [f"{i.module}:{i.line}" for i in lazy if "# lazy:" not in i.comment]
    assert not unmarked, f"lazy imports without a '# lazy: <why>' comment: {unmarked}"
    stale = sorted(set(LAZY_IMPORTS) - {(i.module, i.imported) for i in lazy})
    assert not stale, f"LAZY_IMPORTS entries without such an import (remove them): {stale}"


def test_detectors_layers_are_one_way():
    imports = [
        i
        for i in _imports()
        if i.module.startswith("detectors") and i.imported.startswith("detectors")
    ]
    unlisted = sorted({m for i in imports for m in (i.module, i.imported) if _layer(m) < 0})
    assert not unlisted, f"detectors modules missing from LAYERS: {unlisted}"
    upward = [
        f"{i.module}:{i.line} ({LAYERS[_layer(i.module)][0]}) -> {i.imported} "
        f"({LAYERS[_layer(i.imported)][0]})"
        for i in imports
        if _layer(i.imported) > _layer(i.module)
    ]
    assert not upward, f"imports against the layering {[name for name, _ in LAYERS]}: {upward}"
    modeling, data = ("detectors.modeling",), ("detectors.data", "detectors.evaluation")
    sideways = [
        f"{i.module}:{i.line} -> {i.imported}"
        for i in imports
        if (i.module.startswith(modeling) and i.imported.startswith(data))
        or (i.module.startswith(data) and i.imported.startswith(modeling))
    ]
    assert not sideways, f"data and modeling import each other: {sideways}"


def _self_assigned(tree: ast.AST) -> dict[str, set[str]]:
    """Per class name, the attributes its methods assign on ``self``."""
    out: dict[str, set[str]] = {}
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        names = out.setdefault(cls.name, set())
        for node in ast.walk(cls):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
                    names.add(target.attr)
    return out


def _private(attr: ast.Attribute) -> bool:
    return attr.attr.startswith("_") and not attr.attr.startswith("__")


def _on_self(attr: ast.Attribute) -> bool:
    """``self._x``, ``cls._x`` or ``super()._x``."""
    value = attr.value
    if isinstance(value, ast.Call):
        return ast.unparse(value.func) == "super"
    return isinstance(value, ast.Name) and value.id in ("self", "cls")


def test_private_detectron2_members_are_used_only_in_host():
    """Outside ``detectors/host.py``, a private member may only be one that ``detectors`` itself
    defines or assigns (on ``self`` / ``cls`` / ``super()``, in a class of the same hierarchy)."""
    pytest.importorskip("detectron2")
    modules = {
        m: p for m, p in _modules().items() if m.startswith("detectors") and m != "detectors.host"
    }
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in modules.items()}
    assigned = {
        (m, c): names for m, tree in trees.items() for c, names in _self_assigned(tree).items()
    }
    violations = set()
    for module, tree in trees.items():
        loaded = importlib.import_module(module)
        in_classes: set[ast.AST] = set()
        for cls_node in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
            cls = getattr(loaded, cls_node.name, None)
            own: set[str] = set()
            for base in inspect.getmro(cls) if inspect.isclass(cls) else ():
                if base.__module__.startswith("detectors"):
                    own |= set(vars(base)) | assigned.get((base.__module__, base.__name__), set())
            for attr in [n for n in ast.walk(cls_node) if isinstance(n, ast.Attribute)]:
                in_classes.add(attr)
                if _private(attr) and not (_on_self(attr) and attr.attr in own):
                    violations.add(f"{module}:{attr.lineno} {ast.unparse(attr)}")
        for attr in [n for n in ast.walk(tree) if isinstance(n, ast.Attribute)]:
            if attr not in in_classes and _private(attr):
                violations.add(f"{module}:{attr.lineno} {ast.unparse(attr)}")
    assert not violations, (
        "private Detectron2 members outside detectors/host.py (add an "
        f"accessor there): {sorted(violations)}"
    )
