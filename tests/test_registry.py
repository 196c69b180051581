"""One Registry type behind every extension point; a lab's package extends vtcav through entry
points (issue 23). The plugin here is a real installed distribution as importlib.metadata sees
one (a .dist-info folder on sys.path), not a mock of the lookup."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from vtcav_common.core.errors import UsageError, VtcavError
from vtcav_common.core.registry import Registry, UnknownName
from vtcav_common.models import registry as model_registry
from vtcav_common.stats import corrections, methods
from vtcav_common.tcav import classifiers

PLUGIN = '''
import numpy as np
from vtcav_common.models.registry import ModelSource
from vtcav_common.stats.corrections import Correction
from vtcav_common.tcav.classifiers import Classifier


def _median(x, label, seed):
    direction = np.median(x[label == 1], 0) - np.median(x[label == 0], 0)
    return direction, lambda rows: (rows @ direction > 0).astype(int)


median = Classifier("median", "median difference (a lab's own)", _median)
sidak = Correction("sidak", lambda p: 1 - (1 - p) ** len(p), lambda p, m: 1 - (1 - p) ** m, "Sidak")
labnet = ModelSource("labnet", "labnet:NAME (a lab's models)", lambda model: model.startswith("labnet:"),
                     lambda request: None, order=5)
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A distribution 'labplugin' with entry points in three vtcav groups, importable."""
    (tmp_path / "labplugin.py").write_text(PLUGIN)
    info = tmp_path / "labplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [vtcav.classifiers]
        median = labplugin:median

        [vtcav.corrections]
        sidak = labplugin:sidak

        [vtcav.models]
        labnet = labplugin:labnet
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for registry in (classifiers.CLASSIFIERS, corrections.REGISTRY):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
    model_registry.sources.cache_clear()
    yield
    model_registry.sources.cache_clear()
    sys.modules.pop("labplugin", None)


def test_an_installed_package_adds_a_classifier_a_correction_and_a_model_source(installed_plugin):
    fit = classifiers.check_classifier("median").fit
    x = np.array([[2.0, 0.0], [3.0, 0.0], [-2.0, 0.0], [-3.0, 0.0]])
    direction, predict = fit(x, np.array([1, 1, 0, 0]), 0)
    assert direction[0] > 0 and predict(x).tolist() == [1, 1, 0, 0]
    assert "median" in classifiers.classifier_help()
    assert corrections.correct([0.01, 0.5], "sidak").round(4).tolist() == [0.0199, 0.75]
    assert model_registry.source_for("labnet:tiny").name == "labnet"
    assert [s.name for s in model_registry.sources()][0] == "labnet"   # order 5 asks first


def test_without_the_plugin_the_names_are_unknown():
    with pytest.raises(UsageError, match="unknown classifier 'median'; choose from sgd, logistic, mean"):
        classifiers.check_classifier("median")
    with pytest.raises(ValueError, match="choose from bonferroni, holm, bh, none, fdr"):
        corrections.resolve("sidak")


def test_a_broken_plugin_is_an_error_naming_it(tmp_path, monkeypatch):
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vtcav.tests]\nodd = no_such_module:odd\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("test", group="vtcav.tests", kind=methods.Test)
    with pytest.raises(VtcavError, match=r"vtcav.tests plugin 'odd' \(no_such_module:odd\): cannot load it"):
        registry.resolve("odd")


def test_one_registry_type_and_one_error_everywhere():
    for registry in (classifiers.CLASSIFIERS, methods.REGISTRY, corrections.REGISTRY):
        assert isinstance(registry, Registry)
    for ask in (lambda: classifiers.check_classifier("x"), lambda: methods.resolve("x"),
                lambda: corrections.resolve("x")):
        with pytest.raises(UnknownName):
            ask()
    assert methods.resolve("mwu") == "mannwhitney" and corrections.resolve("fdr") == "bh"
