"""The house rules, checked: imports run one way, no module cycles, a wheel carries its data.

Every import statement counts, lazy ones inside functions included, since a
lazy import is still a dependency. The layers, top to bottom:

    kubeflow -> pipeline.cli -> pipeline.inspect -> pipeline -> pipeline.plumbing
             -> components -> trainer_module -> schema

A module may import its own layer and the layers below it, never one above.
`components` may use `trainer_module`'s feature and signature names (the
model's contract), but `trainer_module` knows nothing of the components.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import zipfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("kubeflow", "pipeline", "components", "trainer_module", "schema")
# Longest prefix wins; a higher number is a higher layer.
LAYERS = {
    "kubeflow": 7,
    "pipeline.cli": 6,
    "pipeline.inspect": 5,
    "pipeline": 4,
    "pipeline.plumbing": 3,
    "components": 2,
    "trainer_module": 1,
    "schema": 0,
}


def module_files() -> dict[str, str]:
    """Dotted module name -> file, for every module of the product packages."""
    modules = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO_ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, REPO_ROOT)[: -len(".py")].replace(os.sep, ".")
                    modules[dotted.removesuffix(".__init__")] = path
    return modules


def imported_modules(module: str, path: str, known: set[str]) -> set[str]:
    """The product modules `module` imports (relative imports resolved, names mapped to their module)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        while name and name not in known:  # `from pipeline import configs` names a module; `import x.y.z` its parents
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def layer_of(module: str) -> tuple[str, int]:
    owner = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return owner, LAYERS[owner]


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    known = set(modules)
    return {module: imported_modules(module, path, known) for module, path in modules.items()}


def test_imports_never_run_up_a_layer():
    upward = []
    for module, imports in sorted(import_graph().items()):
        owner, level = layer_of(module)
        for target in sorted(imports):
            target_owner, target_level = layer_of(target)
            # A package's __init__ may not pull its own subpackages' layers up either.
            if target_level > level:
                upward.append(f"{module} ({owner}) imports {target} ({target_owner})")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the module groups that import each other in a circle."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
            if lowlink[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_module_import_cycles():
    assert strongly_connected_components(import_graph()) == []


def test_the_checks_catch_what_they_are_for():
    """The walker sees lazy and relative imports; a cycle and an upward import are found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected_components(graph) == [["a", "b", "c"]]
    assert layer_of("pipeline.cli.main") == ("pipeline.cli", 6)
    assert layer_of("pipeline.configs") == ("pipeline", 4)
    modules = module_files()
    assert "pipeline.cli.main" in modules and "trainer_module" in modules and "schema" in modules
    lazy = imported_modules("pipeline.cli.main", modules["pipeline.cli.main"], set(modules))
    assert "pipeline.cli.run_command" in lazy  # imported inside the command's handler


@pytest.mark.skipif(shutil.which("uv") is None, reason="needs uv (the README's set-up installs it)")
def test_a_built_wheel_carries_the_schemas_sample_data_and_entry_points(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(
        REPO_ROOT, source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "work", "visionpipe_output"),
    )
    subprocess.run(
        ["uv", "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    [wheel] = [name for name in os.listdir(tmp_path / "dist") if name.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / "dist" / wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        assert f"schema/{dataset}/schema.pbtxt" in names
    assert any(name.startswith("pipeline/sample_data/fashion_mnist/") and name.endswith(".gz") for name in names)
    assert "components/beam_worker_site/sitecustomize.py" in names  # Beam workers' shim start-up
    assert "visionpipe = pipeline.cli.main:main" in entry_points
    assert not any(name.startswith("tests/") for name in names)  # test fixtures stay out of the product
