"""The package's shape: layers that import only downward, no import cycle, every module in a layer."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dnnls_tf"
# Lower layers never import higher ones (README, "Architecture").
LAYERS = {"base": 0, "core": 1, "study": 2, "present": 3, "experiments": 4, "publish": 5, "tools": 6, "entry": 7}
BASE = {"dnnls_tf", "dnnls_tf.errors", "dnnls_tf.atomic", "dnnls_tf.paths"}
ENTRY = {"dnnls_tf.cli", "dnnls_tf.notebook", "dnnls_tf.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module in ENTRY:
        return "entry"
    folder = module.split(".")[1]
    if folder not in LAYERS:
        raise AssertionError(f"{module} is in no layer: put it in a layer folder or declare it here")
    return folder


def imports_of(path: Path, name: str) -> set[str]:
    """Every dnnls_tf module `path` imports, at any depth of its code (functions included)."""
    tree = ast.parse(path.read_text())
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dnnls_tf")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("dnnls_tf"):
                continue
            for alias in node.names:  # `from dnnls_tf.study import config` imports a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {module for module in found if module != name}


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_every_module_sits_in_a_layer():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_go_down(name):
    rank = LAYERS[layer_of(name)]
    upward = sorted(other for other in GRAPH[name] if other in MODULES and LAYERS[layer_of(other)] > rank)
    assert not upward, f"{name} ({layer_of(name)}) imports from higher layers: {upward}"


def test_no_import_cycle():
    """Depth-first search over the import graph (function-level imports count too)."""
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for other in sorted(GRAPH.get(node, ())):
            if other not in MODULES or other == "dnnls_tf":
                continue
            if state.get(other) == 1:
                cycle = path[path.index(other):] + [other]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, path + [other])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])
