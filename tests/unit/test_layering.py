"""The code's one-way flow, enforced: topology -> network -> controller -> measurements ->
report -> command line. No module imports from a later stage (lazy imports inside functions
count too), and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("topologies", "lab", "controllers", "measurements", "dashboard", "benchmarks")
# Most specific prefix wins. benchmarks are developer tools over the whole product.
STAGES = {
    "topologies": 0,
    "lab": 1,  # the network: bring-up, links, emulation, calibration
    "controllers": 2,
    "measurements": 3,
    "measurements.report": 4,
    "lab.cli": 5,
    "dashboard": 5,  # what `lab up --dashboard` serves: the command line's, on a page
    "benchmarks": 6,
}
NAMES = {0: "topology", 1: "network", 2: "controller", 3: "measurements", 4: "report",
         5: "command line", 6: "benchmarks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> int:
    best = max((p for p in STAGES if module == p or module.startswith(p + ".")), key=len)
    return STAGES[best]


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project's modules that `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> nx.DiGraph:
    modules = project_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in imports(path, set(modules)):
            # A package's __init__ is not an import of its contents.
            if target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    return graph


def test_every_module_belongs_to_a_stage():
    assert all(stage(m) in NAMES for m in project_modules())


def test_no_module_imports_from_a_later_stage():
    against = [f"{a} ({NAMES[stage(a)]}) imports {b} ({NAMES[stage(b)]})"
               for a, b in import_graph().edges if stage(b) > stage(a)]
    assert against == []


def test_no_modules_import_each_other():
    circles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert circles == []


def test_the_check_sees_an_import_against_the_flow(tmp_path):
    # The check itself can fail: a network module importing the controller is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from controllers.planner import static_flows\n")
    assert imports(bad, set(project_modules())) == {"controllers.planner"}
    assert stage("controllers.planner") > stage("lab.bad")
