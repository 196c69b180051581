"""The docstring examples of the library run as tests (captum-style runnable examples).

Every module of ``vtcav_common`` is imported and its doctests run, verbatim, in a folder of
their own (what they write stays there); a module that needs an optional package that is not
installed (mmaction2) is skipped with the reason. An example that says it runs ``(in a project
folder`` runs in a fresh copy of the examples' project (conftest's ``project``: a vt-synth
world and the pipeline's files), built only when such a module is tested.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import vtcav_common

MODULES = sorted(m.name for m in pkgutil.walk_packages(vtcav_common.__path__, "vtcav_common."))
# What an example that needs the project's files says before its first line.
IN_PROJECT = "(in a project folder"
# Modules whose examples are the methods' reference: each must keep at least one runnable example.
MUST_HAVE_EXAMPLES = ("vtcav_common.tcav.cav", "vtcav_common.tcav.derivatives", "vtcav_common.explain.selective")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("vtcav_common", "tools"):
            raise
        pytest.skip(f"{name} needs the optional package {err.name}")


def _doctests(name: str) -> list[doctest.DocTest]:
    return doctest.DocTestFinder(exclude_empty=True).find(_import(name), name)


@pytest.fixture
def example_folder(request, tmp_path, monkeypatch) -> None:
    """The working directory of a module's examples: an empty folder of the test's own, or a
    fresh copy of the project when an example needs its files (the project is built then, in
    this fixture's setup, so the time it takes is not counted against the first such module)."""
    if any(IN_PROJECT in (test.docstring or "") for test in _doctests(request.node.callspec.params["name"])):
        shutil.copytree(request.getfixturevalue("project"), tmp_path, symlinks=True, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, example_folder):
    tests = _doctests(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    # numpy's own print options, as a user's fresh interpreter has them (a library imported by an
    # earlier test, e.g. ultralytics, may have changed the process-wide ones)
    with np.printoptions(precision=8, threshold=1000, edgeitems=3, linewidth=75, suppress=False, nanstr="nan",
                         infstr="inf", sign="-", formatter=None, floatmode="maxprec", legacy=False):
        for test in tests:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_examples_are_doctests():
    """A literal ``Example::`` block is never run, so it can rot unseen (one called a function with
    arguments it no longer took): an example is a doctest, or a block tests/test_examples.py runs."""
    literal = [str(path) for path in Path(vtcav_common.__file__).parent.rglob("*.py")
               if re.search(r"^\s*Examples?::\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)]
    assert literal == [], f"examples that never run (write them as >>> doctests): {literal}"


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_reference_modules_keep_examples(name):
    tests = doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name))
    assert sum(len(t.examples) for t in tests) > 0


def test_stats_keeps_examples():
    stats_modules = [m for m in MODULES if m == "vtcav_common.stats" or m.startswith("vtcav_common.stats.")]
    found = sum(len(t.examples) for m in stats_modules
                for t in doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(m)))
    assert found > 0
