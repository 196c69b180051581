"""The library's layout rule (issue 23), checked on the source itself, every import counted
(module level, inside functions, and under ``if TYPE_CHECKING``):

- a stage imports only the shared layers (``core``, ``formats``, ``models``) and itself;
  a stage built from other stages (``ace``, ``report``) may import any stage;
- the shared layers stay below the stages: ``core`` imports only ``core``, ``formats`` only
  ``core``; ``models`` only ``core`` and ``formats``;
- nothing in the library imports ``tools`` or the command frame ``cli``;
- no import cycle between modules.

A new stage is one folder under vtcav_common/ and one line in STAGES (and in the package's
``__init__`` stage map, which this test also checks)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import vtcav_common

ROOT = Path(vtcav_common.__file__).parent

# in pipeline order
STAGES = ("core", "formats", "models", "synth", "detect", "concepts", "embed", "tcav", "stats", "explain",
          "ace", "scale", "report", "cli")
SHARED = {"core": {"core"}, "formats": {"core", "formats"}, "models": {"core", "formats", "models"}}
BUILT_FROM_STAGES = {"ace", "report"}          # may import any stage (never cli)
ALLOWED = {
    # the tiny model is the synthetic world's classifier: its classes are the world's
    ("vtcav_common.models.tiny", "vtcav_common.synth"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every vtcav_common module (or tools) that module ``name`` imports, anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:   # ``from pkg import module`` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m.split(".")[0] in ("vtcav_common", "tools")}


GRAPH = {name: imports(name) for name in MODULES}


def stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "vtcav_common" and len(parts) > 1 else None


def test_every_folder_is_a_stage():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(STAGES)
    top_level = {p.name for p in ROOT.glob("*.py")}
    assert top_level == {"__init__.py"}, "library code lives in a stage folder"


def test_stage_map_lists_the_stages_in_pipeline_order():
    doc = vtcav_common.__doc__
    positions = [doc.find(f"``{s}/``") for s in STAGES]
    assert -1 not in positions, [s for s, p in zip(STAGES, positions) if p == -1]
    assert positions == sorted(positions)


def violations() -> list[str]:
    bad = []
    for name, targets in GRAPH.items():
        mine = stage(name)
        for target in sorted(targets):
            theirs = stage(target)
            if target.split(".")[0] == "tools" or (theirs == "cli" and mine != "cli"):
                bad.append(f"{name} imports {target} (only front ends may)")
            elif (name, target) in ALLOWED or (name, ".".join(target.split(".")[:2])) in ALLOWED:
                continue
            elif theirs is None or theirs == mine or mine in ("cli", None):
                continue
            elif mine in SHARED:
                if theirs not in SHARED[mine]:
                    bad.append(f"{name} imports {target} ({mine} is under every stage)")
            elif mine in BUILT_FROM_STAGES:
                continue
            elif theirs not in SHARED:
                bad.append(f"{name} imports {target} (a stage imports only core, formats, models)")
    return bad


def test_stages_import_only_the_shared_layers():
    assert violations() == []


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles() == []


def test_the_rule_catches_a_stage_importing_another(monkeypatch):
    # the check itself must be able to fail: embed importing tcav is a violation
    monkeypatch.setitem(GRAPH, "vtcav_common.embed", GRAPH["vtcav_common.embed"] | {"vtcav_common.tcav.cav"})
    monkeypatch.setitem(GRAPH, "vtcav_common.tcav.cav", GRAPH["vtcav_common.tcav.cav"] | {"vtcav_common.embed"})
    assert any("vtcav_common.embed imports vtcav_common.tcav.cav" in v for v in violations())
    assert ["vtcav_common.embed", "vtcav_common.tcav.cav"] in cycles()


@pytest.mark.parametrize("path", ["vtcav_common.models.tiny:motion_c3d"])
def test_the_model_path_users_type_still_works(path):
    module, factory = path.split(":")
    assert callable(getattr(importlib.import_module(module), factory))
