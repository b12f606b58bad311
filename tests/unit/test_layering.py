"""The import layering of ember's folders, read from the source with `ast` (nothing imported).

This module is the one place the allowed arrows are written down (the README's Layout section
points here). Every `import` counts, at module level or inside a function, except those under
`if TYPE_CHECKING:`:

    tools    -> compiler, targets, passes, runtime, root
    compiler -> targets, passes, runtime, root
    targets  -> runtime, root; and of passes only the lowered modules, whose forward is the
                semantics a target reproduces (LOWERED_MODULES)
    passes   -> runtime, root
    runtime  -> root
    root     -> root   (errors, progress, cache, the numerics of lowered ops)

and no two modules may import each other, directly or through others (no cycles). The
package's two doors are the exception (ENTRY_POINTS): `ember.compile` calls the compiler and
`python -m ember` runs the CLI, each imported inside the function that uses it.

An arrow is an import a module writes. Importing a submodule also runs its parents'
`__init__`, which is not counted as an arrow of the importer: each `__init__` is checked as a
module of its own. Engines are imported by name from the runtime's ENGINES table, so that
table is checked too: each entry must name a runtime module that defines the class.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("compiler", "passes", "targets", "runtime", "tools")
ALLOWED = {
    "tools": {"tools", "compiler", "targets", "passes", "runtime", "root"},
    "compiler": {"compiler", "targets", "passes", "runtime", "root"},
    "targets": {"targets", "runtime", "root"},
    "passes": {"passes", "runtime", "root"},
    "runtime": {"runtime", "root"},
    "root": {"root"},
}
LOWERED_MODULES = {  # what targets may read of passes
    "ember.passes.sfc.conv",  # SFCConv2d
    "ember.passes.sfc.quant",  # QuantizedSFCConv2d
    "ember.passes.spike.linear",  # SpikeLinear
    "ember.passes.spike.onnx_lowering",  # the ONNX form of SpikeLinear (tvm unpacks it)
    "ember.passes.fold_bn",  # BatchNorm folded into its conv: the module reader's first step
    "ember.passes.contract",  # the context fold_bn is called with
}
ENTRY_POINTS = {"ember": {"ember.compiler.api"}, "ember.__main__": {"ember.tools.cli.main"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["ember", *parts])


def _modules() -> dict[str, Path]:
    """The package's modules: the root's and every module in the five folders."""
    paths = [*ROOT.glob("*.py"), *(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))]
    return {_module_name(p): p for p in paths}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(nodes: list[ast.AST]):
    """Import statements among `nodes` and everything below them; only the else branch of an
    `if TYPE_CHECKING:` runs."""
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _import_nodes(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(list(ast.iter_child_nodes(node)))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ember modules `name` imports: `from pkg import sub` counts as pkg.sub when sub is a
    module, as pkg otherwise."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_nodes([ast.parse(path.read_text(), str(path))]):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ember"}
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        if base.split(".")[0] != "ember":
            continue
        found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                  for a in node.names}
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "root"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target in ENTRY_POINTS.get(module, ()):
                continue
            source_layer, target_layer = _layer(module), _layer(target)
            if target_layer not in ALLOWED[source_layer] and not (
                    source_layer == "targets" and target in LOWERED_MODULES):
                bad.append(f"{module} -> {target} ({source_layer} may not import "
                           f"{target_layer})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_follows_the_allowed_arrows(graph: dict[str, set[str]]) -> None:
    assert violations(graph) == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    inside = {module: targets - ENTRY_POINTS.get(module, set())
              for module, targets in graph.items()}
    assert cycles(inside) == []


def test_the_engine_table_names_runtime_classes() -> None:
    from ember.runtime.engines import ENGINES

    modules = _modules()
    for fmt, (module, name) in ENGINES.items():
        assert _layer(module) == "runtime" and module in modules, (fmt, module)
        tree = ast.parse(modules[module].read_text())
        assert name in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}, (fmt, name)


def test_the_checks_catch_what_they_forbid() -> None:
    """The rules on a made-up graph: a runtime -> passes arrow, a tools import from the
    compiler, a target reading a pass's internals, and a two-module cycle are all caught."""
    made_up = {
        "ember.runtime.session": {"ember.passes.sfc.lower", "ember.errors"},
        "ember.compiler.api": {"ember.tools.table"},
        "ember.targets.fpga.build": {"ember.passes.spike.linear", "ember.passes.spike.llm"},
        "ember.targets.fpga.target": {"ember.targets.fpga.build"},
        "ember.passes.sfc.lower": {"ember.passes.sfc.conv"},
        "ember.passes.sfc.conv": {"ember.passes.sfc.lower"},
        "ember.__main__": {"ember.tools.cli.main"},
    }
    assert violations(made_up) == [
        "ember.compiler.api -> ember.tools.table (compiler may not import tools)",
        "ember.runtime.session -> ember.passes.sfc.lower (runtime may not import passes)",
        "ember.targets.fpga.build -> ember.passes.spike.llm (targets may not import passes)",
    ]
    assert cycles(made_up) == [["ember.passes.sfc.conv", "ember.passes.sfc.lower"]]


def test_the_reader_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from ember.tools import table\n"
                      "def f():\n    from ember.compiler import api\n    import ember.errors\n")
    found = _imports("ember.passes.probe", source, {"ember.tools.table": source})
    assert found == {"ember.compiler", "ember.errors"}
