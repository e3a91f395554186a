"""The dependency rule: cores know no transport, not even transitively, and arrows go one way.

Each core is imported in a fresh interpreter, so what it loads is what it needs by
itself, whatever the rest of the test run imported before.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ARCHITECT = Path(__file__).resolve().parent.parent / "architect"

# Modules that carry bytes to or from the outside world, and the global reactor.
TRANSPORTS = ("autobahn", "klein", "treq", "twisted.web", "twisted.internet.reactor")

# core -> the packages of the other side, which it must not load either
CORES = {
    "architect.router.hub": ("architect.backend", "architect.tasks", "architect.storage"),
    "architect.router.state": ("architect.backend", "architect.tasks", "architect.storage"),
    "architect.backend.client_io": ("architect.router",),
    "architect.backend.workers": ("architect.router",),
    "architect.tasks": ("architect.router", "architect.backend", "architect.storage"),
    "architect.tasks.runner": ("architect.router", "architect.backend", "architect.storage"),
    "architect.lifecycle": ("architect.router", "architect.backend", "architect.tasks"),
}


def loaded_by(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("core", sorted(CORES))
def test_a_core_loads_no_transport_and_not_the_other_side(core: str) -> None:
    loaded = loaded_by(core)
    assert [name for name in loaded if _under(name, TRANSPORTS)] == []
    assert [name for name in loaded if _under(name, CORES[core])] == []


def test_the_check_sees_a_transport_when_one_is_loaded() -> None:
    # The edge does load them: the test above would notice a core that did.
    loaded = loaded_by("architect.router.web")
    assert any(_under(name, ("klein",)) for name in loaded)
    assert any(_under(name, ("twisted.web",)) for name in loaded)


def _unit_of(module: str) -> str:
    """The node of the package graph a module belongs to: its subpackage, or itself."""
    parts = module.split(".")
    if len(parts) >= 2 and (ARCHITECT / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _imports_of(path: Path) -> set[str]:
    module = ".".join(path.relative_to(ARCHITECT.parent).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                base = module.split(".")[: -node.level or None]
                found.add(".".join([*base, node.module]))
            else:
                found.add(node.module)
    return {name for name in found if name.startswith("architect.")}


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    # A test module (the demo's test_demo.py) is imported by no one: not part of the graph.
    for path in (p for p in ARCHITECT.rglob("*.py") if not p.name.startswith("test_")):
        module = ".".join(path.relative_to(ARCHITECT.parent).with_suffix("").parts)
        source = _unit_of(module.removesuffix(".__init__"))
        targets = {_unit_of(name) for name in _imports_of(path)} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert "architect.backend" in graph and "architect.tasks" in graph["architect.backend"]
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def _architect_imports_in(text: str) -> set[str]:
    found = set()
    for line in text.splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[0] in ("from", "import") and words[1].startswith("architect"):
            found.add(words[1])
    return found


def test_task_code_imports_only_the_public_module() -> None:
    root = ARCHITECT.parent
    demo = [p for p in (ARCHITECT / "demo").glob("*.py") if not p.name.startswith("test_")]
    sources = [*root.glob("examples/*/task.py"), *demo]
    sources.append(root / "docs" / "tasks.md")
    seen = {
        str(path.relative_to(root)): _architect_imports_in(path.read_text(encoding="utf-8"))
        for path in sources
    }
    assert len(seen) >= 5  # three examples, the demo, the guide
    assert {path: names - {"architect.tasks"} for path, names in seen.items()} == {
        path: set() for path in seen
    }
    assert "architect.tasks" in seen["docs/tasks.md"]


def test_status_rules_live_in_the_lifecycle_module_only() -> None:
    # The words (statuses) are the protocol's; which are active, final or counted is
    # decided in architect/lifecycle.py alone.
    from architect import lifecycle, protocol

    assert not hasattr(protocol.Status, "ACTIVE")
    assert lifecycle.ACTIVE | lifecycle.FINAL == protocol.Status.ALL
    assert not lifecycle.ACTIVE & lifecycle.FINAL
    assert (
        lifecycle.DONE <= lifecycle.FINAL and lifecycle.COUNTED == lifecycle.ACTIVE | lifecycle.DONE
    )
