"""vt-explain's captum-backed methods, and why vtcav keeps its own gradcam, gradient, gradxinput."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

captum_attr = pytest.importorskip("captum.attr", reason="captum is not installed")

from vtcav_common.core.errors import UsageError  # noqa: E402
from vtcav_common.models.base import InputSpec, LayerRecorder, LoadedModel, preprocess  # noqa: E402
from vtcav_common.explain import METHODS, Explainer, grad_cam  # noqa: E402
from vtcav_common.explain.methods import CAPTUM_METHODS  # noqa: E402
from vtcav_common.explain.selective import box_mask, read_moving_boxes, sample_with_motion  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSIFIER = REPO / "weights" / "classifier.pt"
FACTORY = "vtcav_common.models.tiny:motion_c3d"
SPEC = InputSpec(frames=8, size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)


class SmallC3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.BatchNorm3d(6), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv3d(6, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.pool(self.block2(self.block1(x))).flatten(1))


class TimeFirst(nn.Module):
    """The same network taking N x T x C x H x W clips."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.transpose(1, 2))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    module = SmallC3D().eval()
    module.block1[1].running_mean.uniform_(-0.2, 0.2)
    loaded = LoadedModel(module, SPEC, ["a", "b", "c"], {"arch": "small"})
    x = torch.randn(1, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    return loaded, x


def test_vtcav_gradient_and_gradxinput_equal_captums(small):
    loaded, x = small
    saliency = captum_attr.Saliency(loaded.module).attribute(x.clone(), target=1, abs=True)[0].sum(0)
    xgrad = captum_attr.InputXGradient(loaded.module).attribute(x.clone().requires_grad_(), target=1)[0].sum(0).abs()
    np.testing.assert_allclose(Explainer(loaded, "gradient")(x, 1).relevance, saliency.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(Explainer(loaded, "gradxinput")(x, 1).relevance, xgrad.detach().numpy(), rtol=1e-5,
                               atol=1e-8)


def test_vtcav_gradcam_equals_captums_where_captums_layout_holds(small):
    """captum's LayerGradCam takes axis 1 as channels: right for a Conv3d block, so both agree there
    (on a channels-last or token layer captum's would average over the wrong axis)."""
    loaded, x = small
    cam = captum_attr.LayerGradCam(loaded.module, loaded.module.block1)
    theirs = cam.attribute(x.clone(), target=2, relu_attributions=True)[0, 0]
    with LayerRecorder(loaded.module, ["block1"], keep_grad=True) as recorder:
        loaded.module(x)[0, 2].backward()
    ours = grad_cam(recorder.activations()["block1"][0], recorder.gradients()["block1"][0])
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", [m for m in CAPTUM_METHODS if m != "smoothgrad"])
def test_each_method_reads_the_colour_axis_of_either_layout(small, method):
    """N x C x T x H x W and N x T x C x H x W inputs to the same network give the same map,
    and an explainer gives the same map each time it is called."""
    loaded, x = small
    explainer = Explainer(loaded, method, "block1" if method == "guided_gradcam" else None)
    first = explainer(x, 0).relevance
    np.testing.assert_array_equal(explainer(x, 0).relevance, first)      # the second clip as the first
    time_first = LoadedModel(TimeFirst(loaded.module), InputSpec(**{**SPEC.to_dict(), "size": (16, 16),
                                                                   "layout": "NTCHW"}), loaded.class_names, {})
    layer = "inner.block1" if method == "guided_gradcam" else None
    second = Explainer(time_first, method, layer)(x.transpose(1, 2).contiguous(), 0).relevance
    assert first.shape == (8, 16, 16) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() > 0
    np.testing.assert_allclose(second, first, rtol=1e-4, atol=1e-6 * first.max())


def test_smoothgrad_is_seeded_and_not_the_plain_gradient(small):
    loaded, x = small
    explainer = Explainer(loaded, "smoothgrad")
    torch.manual_seed(5)
    a = explainer(x, 0).relevance
    torch.manual_seed(5)
    np.testing.assert_array_equal(explainer(x, 0).relevance, a)
    assert not np.allclose(a, Explainer(loaded, "gradient")(x, 0).relevance, rtol=0.05)


def test_integrated_gradients_add_up_to_the_logit_change(small):
    """Completeness, through the map: the signed colour sums add up to logit(x) - logit(0)."""
    loaded, x = small
    with torch.no_grad():
        change = float(loaded.module(x)[0, 1] - loaded.module(torch.zeros_like(x))[0, 1])
    ig = captum_attr.IntegratedGradients(loaded.module).attribute(x, baselines=torch.zeros_like(x), target=1,
                                                                   n_steps=16)
    assert float(ig.sum()) == pytest.approx(change, rel=0.02)
    relevance = Explainer(loaded, "integrated_gradients")(x, 1).relevance
    np.testing.assert_allclose(relevance, ig[0].sum(0).abs().detach().numpy(), rtol=1e-4, atol=1e-7)


def test_lrp_folds_batch_norms_without_changing_the_function(small):
    import copy

    from vtcav_common.explain.captum_methods import canonize_for_lrp

    loaded, x = small
    folded = copy.deepcopy(loaded.module)
    canonize_for_lrp(folded)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), loaded.module(x), rtol=1e-5, atol=1e-6)


def test_lrp_refuses_a_model_it_has_no_rules_for_and_layer_only_for_layer_methods(small):
    loaded, _ = small
    odd = LoadedModel(nn.Sequential(nn.Conv3d(3, 4, 3), nn.GELU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                    nn.Linear(4, 2)), SPEC, ["a", "b"], {})
    with pytest.raises(UsageError, match=r"lrp: layer 1 \(GELU\) has no LRP rule"):
        Explainer(odd, "lrp")
    with pytest.raises(UsageError, match="--layer is for --method gradcam and guided_gradcam"):
        Explainer(loaded, "occlusion", "block1")
    assert set(CAPTUM_METHODS) < set(METHODS)


def test_the_command_takes_every_method_name():
    import typer.main

    from tools import vt_explain

    option = next(p for p in typer.main.get_command(vt_explain.app).params if p.name == "method")
    assert option.help == f"Relevance method: {', '.join(METHODS)}."
    assert list(METHODS)[:3] == ["gradcam", "gradient", "gradxinput"] and set(CAPTUM_METHODS) < set(METHODS)


@pytest.mark.slow
@pytest.mark.skipif(not CLASSIFIER.exists(), reason="weights/classifier.pt not trained yet")
def test_every_method_puts_relevance_on_the_moving_ball(tiny_world, monkeypatch, capsys):
    """Known answer: on held-out motion-world videos, each method's map (target: the true
    class) puts several times the ball's share of the frame on the ball."""
    from vtcav_common.models import load_model
    from vtcav_common.formats.records import read_manifest

    loaded = load_model(FACTORY, str(CLASSIFIER))
    videos = [v for v in read_manifest(str(tiny_world / "labels.jsonl")) if v.split == "test"][::2]
    boxes = read_moving_boxes(str(tiny_world / "gt.jsonl"), {v.video_id for v in videos})
    for method in CAPTUM_METHODS:
        explainer = Explainer(loaded, method, "block1" if method == "guided_gradcam" else None)
        shares, areas = [], []
        for video in videos:
            sampled = sample_with_motion(video.path, 16, 25.0)
            relevance = explainer(preprocess(sampled.frames[None], loaded.input_spec),
                                  loaded.class_index(video.label)).relevance
            ball = np.stack([box_mask(boxes[video.video_id].get(int(i), []), 64, 64) for i in sampled.indices])
            shares.append(float((relevance * ball).sum() / relevance.sum()))
            areas.append(float(ball.mean()))
        assert np.mean(shares) > 3 * np.mean(areas), (method, shares, areas)
    # and through the command, with the selective map and a record per video
    from tools import vt_explain

    monkeypatch.setattr(sys, "argv", ["vt-explain", str(videos[0].path), "--model", FACTORY, "--weights",
                                      str(CLASSIFIER), "--method", "lrp", "--selective", "1", "-q"])
    with pytest.raises(SystemExit) as exited:
        vt_explain.main()
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    record = json.loads(out)
    assert record["method"] == "lrp" and record["motion_share"]["selective"] is not None
