"""One Registry type behind every extension point; a lab's package extends vtcav through entry
points (issue 23). The plugin here is a real installed distribution as importlib.metadata sees
one (a .dist-info folder on sys.path), not a mock of the lookup."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pytest

from conftest import WEIGHTS, h5_arrays, run_cli, run_cmd
from vtcav_common.core.errors import UsageError, VtcavError
from vtcav_common.core.registry import Registry, UnknownName
from vtcav_common.detect import imports as detection_imports
from vtcav_common.explain import methods as relevance_methods
from vtcav_common.models import registry as model_registry
from vtcav_common.stats import corrections, methods
from vtcav_common.tcav import classifiers
from tools import vt_detect, vt_explain  # noqa: F401  (their --help is built before any test installs a plugin)

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
    for registry in (classifiers.CLASSIFIERS, methods.REGISTRY, corrections.REGISTRY, relevance_methods.METHODS,
                     detection_imports.DETECTION_FORMATS):
        assert isinstance(registry, Registry)
    for ask in (lambda: classifiers.check_classifier("x"), lambda: methods.resolve("x"),
                lambda: corrections.resolve("x"), lambda: relevance_methods.check_method("x"),
                lambda: detection_imports.DETECTION_FORMATS["x"]):
        with pytest.raises(UnknownName):
            ask()
    assert methods.resolve("mwu") == "mannwhitney" and corrections.resolve("fdr") == "bh"


# --------------------------------------------------------------------------- a lab's own, end to end
@pytest.fixture
def lab_package(tmp_path, monkeypatch):
    """``lab_package(name, source, entry_points)``: an installed distribution ``name`` (the module
    ``name``.py and its entry points), importable here and in the processes the test starts."""
    made = []

    def install(name: str, source: str, entry_points: str) -> None:
        (tmp_path / f"{name}.py").write_text(source)
        info = tmp_path / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(entry_points)
        made.append(name)

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    yield install
    for name in made:
        sys.modules.pop(name, None)


def _unloaded(registry, monkeypatch) -> None:
    """The registry as a fresh process has it: built-ins only, plugins not yet looked up."""
    monkeypatch.setattr(registry, "_items", dict(registry._items))
    monkeypatch.setattr(registry, "_plugins_loaded", False)


RELEVANCE_PLUGIN = '''
import torch
from vtcav_common.explain.methods import RelevanceMethod


def _build(loaded, name):
    colour = 0 if loaded.input_spec.layout == "NCTHW" else 1      # of one clip, without its batch axis

    def attribute(x, target):                                     # the largest |gradient| over colour
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            output = loaded.module(x)
            logits = output[0] if isinstance(output, (tuple, list)) else output
            (gradient,) = torch.autograd.grad(logits[0, target], x)
        return gradient[0].abs().amax(dim=colour)
    return attribute


maxgrad = RelevanceMethod("maxgrad", _build)
'''


@pytest.mark.skipif(not (WEIGHTS / "classifier.pt").exists(), reason="weights/classifier.pt not trained yet")
def test_an_installed_package_adds_a_relevance_method_to_vt_explain(tiny_world, tmp_path, monkeypatch,
                                                                    lab_package):
    lab_package("labrelevance", RELEVANCE_PLUGIN, "[vtcav.relevance_methods]\nmaxgrad = labrelevance:maxgrad\n")
    _unloaded(relevance_methods.METHODS, monkeypatch)
    video = tiny_world / "videos" / "test_up_10000.mp4"
    common = ["--model", "vtcav_common.models.tiny:motion_c3d", "--weights", WEIGHTS / "classifier.pt", "-q"]
    result = run_cmd("vt-explain", video, *common, "--method", "maxgrad", "-o", tmp_path / "max.h5", check=True)
    assert json.loads(result.stdout)["method"] == "maxgrad"
    run_cmd("vt-explain", video, *common, "--method", "gradient", "-o", tmp_path / "sum.h5", check=True)
    (largest, provenance), (summed, _) = h5_arrays(tmp_path / "max.h5"), h5_arrays(tmp_path / "sum.h5")
    assert provenance["method"] == "maxgrad"
    # the plugin's map, not vtcav's: the largest of the three colours' |gradient| lies between
    # a third of their sum (vtcav's gradient map) and the sum, and is not the sum
    some = summed["plain"] > 0
    assert some.mean() > 0.5 and not largest["plain"][~some].any()
    ratio = largest["plain"][some] / summed["plain"][some]
    assert ratio.min() >= 1 / 3 - 1e-4 and ratio.max() <= 1 + 1e-4 and ratio.mean() < 0.9
    assert "maxgrad" in run_cli("vt-explain", "--help", check=True).stdout     # help from the registry
    refused = run_cmd("vt-explain", video, *common, "--method", "maxgrads")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("smoothgrad, lrp, maxgrad")


DETECTION_PLUGIN = '''
import csv
from vtcav_common.detect.imports import DetectionFormat
from vtcav_common.formats.records import Detection


def _read(path, finder, settings):
    """A lab's tracker output: CSV rows video,frame,track,class,x1,y1,x2,y2 (0-based frames, pixels)."""
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            video, info = finder.find(row["video"], str(path), near=path.parent)
            frame = int(row["frame"])
            yield Detection(video_id=row["video"], video=video, frame=frame, time=frame / info.fps,
                            track_id=int(row["track"]), class_id=0, class_name=row["class"], conf=1.0,
                            box=tuple(float(row[key]) for key in ("x1", "y1", "x2", "y2")))


tracks = DetectionFormat("labcsv", _read)
'''


def test_an_installed_package_adds_a_detection_format_to_vt_detect_import(tiny_world, tmp_path, monkeypatch,
                                                                          lab_package):
    lab_package("labtracks", DETECTION_PLUGIN, "[vtcav.detection_formats]\nlabcsv = labtracks:tracks\n")
    _unloaded(detection_imports.DETECTION_FORMATS, monkeypatch)
    truth = [json.loads(line) for line in (tiny_world / "gt.jsonl").read_text().splitlines()]
    truth = [r for r in truth if r["video_id"] in ("test_up_10000", "test_left_10000")]
    rows = ["video,frame,track,class,x1,y1,x2,y2"] + [
        ",".join(map(str, [r["video_id"], r["frame"], r["track_id"], r["class_name"], *r["box"]])) for r in truth]
    (tmp_path / "tracks.csv").write_text("\n".join(rows) + "\n")
    for named in (["labcsv"], ["--format", "labcsv"]):
        result = run_cmd("vt-detect", "import", *named, tmp_path / "tracks.csv",
                         "--videos", tiny_world / "labels.jsonl", check=True)
        got = [json.loads(line) for line in result.stdout.splitlines()]
        expected = [{**{k: v for k, v in r.items() if k != "moving"},
                     "video": str((tiny_world / r["video"]).resolve()), "class_id": 0} for r in truth]
        assert got == expected      # the world's true tracks, read by the lab's reader, with vtcav's video paths
    assert "labcsv" in run_cli("vt-detect", "import", "--help", check=True).stdout
    refused = run_cmd("vt-detect", "import", "--format", "labcvs", tmp_path / "tracks.csv")
    assert refused.returncode == 2
    assert refused.stderr == ("vt-detect import: error: unknown format 'labcvs'; choose from auto, mot, coco, yolo, "
                              "labcsv, mmaction\n")
