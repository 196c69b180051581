"""Hugging Face transformers video classifiers (VideoMAE, TimeSformer, ViViT) as vtcav models.

Every model is built here from a small config with random weights (nothing is downloaded)
and saved with ``save_pretrained``, as a user's fine-tuned model would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import run_cli

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from vtcav_common.formats import clips as clipsets  # noqa: E402
from vtcav_common.core.errors import UsageError, VtcavError  # noqa: E402
from vtcav_common.models import load_model  # noqa: E402
from vtcav_common.models.base import LayerRecorder, preprocess  # noqa: E402
from vtcav_common.models.layers import describe_layers  # noqa: E402
from vtcav_common.explain import METHODS, Explainer  # noqa: E402
from vtcav_common.synth import CLASSES  # noqa: E402

SMALL = dict(image_size=32, num_frames=4, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
             intermediate_size=64, id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)})
CONFIGS = {
    "videomae": lambda: transformers.VideoMAEConfig(patch_size=16, tubelet_size=2, **SMALL),
    "timesformer": lambda: transformers.TimesformerConfig(patch_size=16, **SMALL),
    "vivit": lambda: transformers.VivitConfig(tubelet_size=[2, 16, 16], **SMALL),
}
# Tokens per axis (T', H', W') and the order of the model's own patch tokens.
GRIDS = {"videomae": ((2, 2, 2), "THW"), "timesformer": ((4, 2, 2), "HWT"), "vivit": ((2, 2, 2), "THW")}
LAYERS = {"videomae": "encoder.layer", "timesformer": "encoder.layer", "vivit": "layers"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hf")
    for i, (family, config) in enumerate(CONFIGS.items()):
        torch.manual_seed(10 + i)
        model = transformers.AutoModelForVideoClassification.from_config(config()).eval()
        model.save_pretrained(out / family)
    return {family: out / family for family in CONFIGS}


def _hf_model(folder: Path):
    return transformers.AutoModelForVideoClassification.from_pretrained(folder, local_files_only=True).eval()


def _own_tokens(family: str, hf, x: torch.Tensor, layer: int):
    """The HF model's logits, and its layer's tokens put on the T' x H' x W' grid by hand."""
    blocks = hf.vivit.layers if family == "vivit" else getattr(hf, family).encoder.layer
    kept = {}

    def keep(_module, _inputs, output) -> None:
        kept["t"] = output[0] if isinstance(output, tuple) else output

    handle = blocks[layer].register_forward_hook(keep)
    try:
        logits = hf(pixel_values=x).logits
    finally:
        handle.remove()
    tokens = kept["t"]
    return logits, tokens, _as_grid(family, tokens)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_logits_grids_and_gradients_are_the_hf_models_own(folders, family):
    loaded = load_model(f"hf:{folders[family]}", None)
    hf = _hf_model(folders[family])
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layer = f"{LAYERS[family]}.1"
    with LayerRecorder(loaded.module, [layer], keep_grad=True) as recorder:
        logits = loaded.module(x)
        logits[:, 2].sum().backward()
    reference_logits, tokens, grid = _own_tokens(family, hf, x, 1)
    (reference_grad,) = torch.autograd.grad(reference_logits[:, 2].sum(), tokens)
    grad_grid = _as_grid(family, reference_grad)
    torch.testing.assert_close(logits, reference_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(recorder.activations()[layer], grid.detach(), rtol=0, atol=0)
    torch.testing.assert_close(recorder.gradients()[layer], grad_grid, rtol=1e-5, atol=1e-7)
    assert loaded.input_spec.layout == "NTCHW" and loaded.input_spec.frames == 4
    assert loaded.class_names == list(CLASSES)
    assert loaded.provenance["source"] == "transformers" and loaded.provenance["token_grid"] == list(GRIDS[family][0])


def _as_grid(family: str, tokens: torch.Tensor) -> torch.Tensor:
    (t, h, w), order = GRIDS[family]
    body = tokens[:, 1:] if family != "videomae" else tokens
    if order == "HWT":
        return body.reshape(len(tokens), h, w, t, -1).permute(0, 3, 1, 2, 4)
    return body.reshape(len(tokens), t, h, w, -1)


@pytest.mark.parametrize("family", list(CONFIGS))
def test_a_change_in_one_patch_of_one_frame_moves_only_its_grid_cell(folders, family):
    """The grid's axes are time, rows, columns: a perturbation of frame 2's top-right patch
    changes the embeddings at that (T', H', W') cell only."""
    loaded = load_model(f"hf:{folders[family]}", None)
    x = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[0, 2, :, :16, 16:] += 1.0                       # frame 2, rows 0..15, columns 16..31
    with LayerRecorder(loaded.module, ["embeddings"]) as recorder, torch.no_grad():
        loaded.module(x)
        a = recorder.activations()["embeddings"]
        loaded.module(y)
        b = recorder.activations()["embeddings"]
    changed = (a - b).abs().amax(dim=-1)[0] > 1e-6    # T' x H' x W'
    cell = torch.zeros_like(changed)
    frames_per_token = 4 // GRIDS[family][0][0]
    cell[2 // frames_per_token, 0, 1] = True
    assert torch.equal(changed, cell)


def test_list_layers_from_the_command(folders):
    result = run_cli("vt-embed", "--model", f"hf:{folders['videomae']}", "--list-layers", check=True)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if not line.startswith("#")}
    assert rows["encoder.layer.0"][1:4] == ["VideoMAELayer", "2x2x2x32", "3"]
    assert rows["embeddings"][2:4] == ["2x2x2x32", "3"]
    result = run_cli("vt-embed", "--model", str(folders["vivit"]), "--list-layers", check=True)
    assert "layers.1" in result.stdout and "2x2x2x32" in result.stdout


def test_usual_and_gradcam_layers_skip_a_class_token_models_last_layer(folders):
    vivit = load_model(f"hf:{folders['vivit']}", None)
    videomae = load_model(f"hf:{folders['videomae']}", None)
    assert vivit.cam_layer == "layers.1" and videomae.cam_layer == "encoder.layer.2"
    x = torch.randn(1, 4, 3, 32, 32)
    with pytest.raises(VtcavError, match="no gradient"):
        Explainer(vivit, "gradcam", "layers.2")(x)      # the head reads only the class token
    result = Explainer(vivit, "gradcam")(x)
    assert result.relevance.shape == (4, 32, 32) and result.relevance.max() > 0


def test_config_plus_state_dict_and_refusals(folders, tmp_path):
    folder = folders["timesformer"]
    hf = _hf_model(folder)
    torch.save(hf.state_dict(), tmp_path / "state.pt")
    loaded = load_model(f"hf:{folder / 'config.json'}", str(tmp_path / "state.pt"))
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), hf(pixel_values=x).logits)
    state = hf.state_dict()
    state.pop("classifier.weight")
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(VtcavError, match="partial.pt: checkpoint does not fit.*missing keys classifier.weight"):
        load_model(f"hf:{folder / 'config.json'}", str(tmp_path / "partial.pt"))
    other = json.loads((folder / "config.json").read_text())
    other["model_type"] = "bert"
    (tmp_path / "bert.json").write_text(json.dumps(other))
    with pytest.raises(UsageError, match="bert.json: model_type 'bert' is not a supported video classifier"):
        load_model(f"hf:{tmp_path / 'bert.json'}", None)
    with pytest.raises(UsageError, match="position embeddings fix its input at 4 frames"):
        load_model(f"hf:{folder}", None, frames=8)
    result = run_cli("vt-embed", "--model", f"hf:{tmp_path / 'nothing'}", "--list-layers")
    assert result.returncode != 0 and result.stderr.startswith("vt-embed: error:") and "nothing" in result.stderr
    assert "Traceback" not in result.stderr


def test_preprocessor_config_sets_mean_and_std(folders, tmp_path):
    """ViViT's processor rescales to [-1, 1] and then normalises with 0.5: (x - 0.75) / 0.25."""
    import shutil

    folder = tmp_path / "vivit"
    shutil.copytree(folders["vivit"], folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_rescale": True, "rescale_factor": 1 / 127.5, "offset": True, "do_normalize": True,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    spec = load_model(f"hf:{folder}", None).input_spec
    np.testing.assert_allclose(spec.mean, [0.75] * 3) and np.testing.assert_allclose(spec.std, [0.25] * 3)
    clip = np.full((1, 4, 32, 32, 3), 255, np.uint8)
    np.testing.assert_allclose(preprocess(clip, spec).numpy(), 1.0, atol=1e-5)   # 255/127.5 - 1 = 1, (1-.5)/.5


@pytest.fixture(scope="module")
def concept_clips(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clips.h5"
    rng = np.random.default_rng(2)
    with clipsets.ClipSetWriter(path, clipsets.Sampling(frames=8, size=(48, 48)), "test", {"seed": 2}) as writer:
        for name, role, n in (("ball_right", "concept", 6), ("random_0", "random", 6), ("random_1", "random", 6)):
            appender = writer.add_set(name, kind="spatiotemporal" if role == "concept" else "random", role=role)
            appender.append(rng.integers(0, 256, (n, 8, 48, 48, 3), dtype=np.uint8), [f"v{i}" for i in range(n)],
                            np.tile(np.arange(8), (n, 1)), [1] * n, np.zeros((n, 8, 4)))
    return path


@pytest.mark.slow
def test_embed_pool_cav_score_and_explain_run_unchanged(folders, concept_clips, tiny_world, tmp_path):
    model = ["--model", f"hf:{folders['timesformer']}", "--layers", "encoder.layer.0,encoder.layer.1", "-q"]
    run_cli("vt-embed", concept_clips, *model, "--pool", "2x1x1", "-o", tmp_path / "acts.h5", check=True)
    run_cli("vt-embed", tiny_world / "labels.jsonl", "--label", "right", "--split", "test", *model, "--pool",
            "2x1x1", "--target", "right", "-o", tmp_path / "grads.h5", check=True)
    with h5py.File(tmp_path / "grads.h5") as handle:
        assert handle["sets/inputs/grads/encoder.layer.1"].shape == (2, 2, 1, 1, 32)    # T' 4 -> 2, H' W' 2 -> 1
        assert handle["layers/encoder.layer.1"].attrs["channel_axis"] == 3
    run_cli("vt-cav", tmp_path / "acts.h5", "-o", tmp_path / "cavs.h5", "-q", check=True)
    scores = run_cli("vt-score", tmp_path / "cavs.h5", tmp_path / "grads.h5", check=True).stdout.splitlines()
    assert {json.loads(line)["layer"] for line in scores} == {"encoder.layer.0", "encoder.layer.1"}
    result = run_cli("vt-explain", tiny_world / "videos" / "test_up_10000.mp4", "--model",
                     f"hf:{folders['videomae']}", "--selective", "1", "-o", tmp_path / "maps.h5", check=True)
    record = json.loads(result.stdout)
    assert record["layer"] == "encoder.layer.2" and record["motion_share"]["plain"] is not None


@pytest.mark.parametrize("family", list(CONFIGS))
def test_every_method_explains_a_transformer_but_lrp(folders, family):
    loaded = load_model(f"hf:{folders[family]}", None)
    x = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for method in METHODS:
        if method == "lrp":
            with pytest.raises(UsageError, match="has no LRP rule"):
                Explainer(loaded, method)
            continue
        relevance = Explainer(loaded, method)(x, 1).relevance
        assert relevance.shape == (4, 32, 32) and np.isfinite(relevance).all() and relevance.max() > 0, method


def test_describe_layers_gives_the_grid_for_each_token_layer(folders):
    infos = describe_layers(load_model(f"hf:{folders['timesformer']}", None))
    for name in ("embeddings", "encoder.layer.0", "encoder.layer.2"):
        assert infos[name].shape == (4, 2, 2, 32) and infos[name].channels_last
