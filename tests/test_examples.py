"""The ``Example (run by tests/test_examples.py ...)::`` blocks of the library's docstrings run,
in order, in one small vt-synth world: the examples a newcomer copies are code that works."""

from __future__ import annotations

import importlib
import re
import shutil
import textwrap

import h5py
import pytest

from conftest import REPO

# in the order the pipeline runs them: later examples read what earlier ones wrote
RUNNABLE = ("vtcav_common.concepts", "vtcav_common.embed", "vtcav_common.explain", "vtcav_common.ace.supervoxels")
BLOCK = re.compile(r"Example \(run by tests/test_examples\.py[^)]*\)::\n\n((?:(?: {4}.*)?\n)+)")


def example(module: str) -> str:
    found = BLOCK.findall(importlib.import_module(module).__doc__)
    assert len(found) == 1, f"{module}: one runnable example expected"
    return textwrap.dedent(found[0])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vtcav_common.synth import generate_world

    where = tmp_path_factory.mktemp("examples")
    generate_world(where / "world", seed=0, train_per_class=1, test_per_class=0)
    (where / "weights").mkdir()
    for name in ("classifier.pt", "classifier.json"):
        shutil.copy(REPO / "weights" / name, where / "weights" / name)
    return where


def test_every_example_marked_runnable_is_listed():
    marked = [path for path in (REPO / "vtcav_common").rglob("*.py") if "Example (run by tests/test_examples" in
              path.read_text()]
    names = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in marked}
    assert names == set(RUNNABLE)


def test_the_examples_run_in_pipeline_order(world, monkeypatch):
    monkeypatch.chdir(world)
    for module in RUNNABLE:
        exec(compile(example(module), f"<example of {module}>", "exec"), {})
    with h5py.File(world / "concepts.h5") as concepts:
        assert concepts["concepts/ball/clips"].shape[1:] == (16, 64, 64, 3)
        assert concepts["concepts/ball/clips"].shape[0] >= 4        # one per video of the world
    with h5py.File(world / "acts.h5") as acts:
        assert set(acts["sets/ball/acts"]) == {"block2", "block3"} and "grads" in acts["sets/ball"]
