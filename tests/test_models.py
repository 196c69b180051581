"""Model sources: torchvision's zoo, factories, TorchScript, torch.export; checkpoints; layers;
and the project's tiny classifier (its committed weights must classify a fresh world)."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from conftest import WEIGHTS, run_cmd
from vtcav_common.models import load_model
from vtcav_common.models.base import LayerRecorder, preprocess
from vtcav_common.models.layers import default_layers, describe_layers
from vtcav_common.models.tiny import motion_c3d
from vtcav_common.models.torchvision_source import _mvit_sized

TINY = "vtcav_common.models.tiny:motion_c3d"

# Architecture -> (frames, size, two layers, expected channel axis of the deeper layer).
ZOO = {
    "r3d_18": (4, 32, "layer2,layer4", 0),
    "mc3_18": (4, 32, "stem,layer3", 0),
    "r2plus1d_18": (4, 32, "layer1.0,layer4", 0),
    "swin3d_t": (4, 32, "features.2,features.6", 3),
    "swin3d_s": (4, 32, "patch_embed,features.4.3", 3),
    "swin3d_b": (4, 32, "features.0,norm", 3),
    "s3d": (14, 224, "features.6,features.15", 0),
    "mvit_v1_b": (4, 32, "blocks.1,blocks.15", 1),
    "mvit_v2_s": (4, 32, "conv_proj,blocks.14", 1),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _random_zoo_model(arch: str, frames: int, size: int, num_classes: int = 5) -> nn.Module:
    from torchvision.models import video

    torch.manual_seed(0)
    if arch.startswith("mvit"):
        with _mvit_sized(frames, size):
            return getattr(video, arch)(num_classes=num_classes)
    return getattr(video, arch)(num_classes=num_classes)


@pytest.mark.parametrize("arch", list(ZOO))
def test_torchvision_architecture_through_the_cli(arch, small_clips_file, tmp_path):
    frames, size, layers, deep_axis = ZOO[arch]
    weights = tmp_path / f"{arch}.pth"
    torch.save(_random_zoo_model(arch, frames, size).state_dict(), weights)
    size_args = [] if arch.startswith("mvit") else ["--frames", frames, "--size", size]  # MViT: from the checkpoint
    out = tmp_path / "acts.h5"
    run_cmd("vt-embed", small_clips_file, "--set", "ball", "--model", arch, "--weights", weights, *size_args,
            "--layers", layers, "--target", "class_1", "--batch-size", "3", "-o", out, "-q", check=True)
    with h5py.File(out) as handle:
        provenance = json.loads(handle.attrs["provenance"])
        assert provenance["model"]["arch"] == arch and provenance["model"]["num_classes"] == 5
        assert provenance["input"]["frames"] == frames and provenance["input"]["size"] == [size, size]
        assert list(handle["sets"]) == ["ball"]
        group = handle["sets"]["ball"]
        names = layers.split(",")
        for name in names:
            shape = tuple(handle["layers"][name].attrs["shape"])
            assert group["acts"][name].shape == (3, *shape)
            assert group["grads"][name].shape == (3, *shape)
            assert np.abs(group["grads"][name][()]).sum() > 0
        assert handle["layers"][names[1]].attrs["channel_axis"] == deep_axis
        assert group["ids"][()].tolist() == [b"v0#0", b"v1#1", b"v2#2"]


def test_kinetics_names_for_400_class_heads(tmp_path):
    weights = tmp_path / "r3d.pth"
    torch.save(_random_zoo_model("r3d_18", 4, 32, num_classes=400).state_dict(), weights)
    loaded = load_model("r3d_18", str(weights), frames=4, size=32)
    assert len(loaded.class_names) == 400 and "playing tennis" in loaded.class_names
    assert loaded.class_index("playing tennis") == loaded.class_names.index("playing tennis")
    assert loaded.input_spec.mean == pytest.approx((0.43216, 0.394666, 0.37645))
    assert loaded.provenance["weights"] == "r3d.pth" and len(loaded.provenance["weights_sha256"]) == 64


def test_default_input_specs_come_from_torchvision_metadata(tmp_path):
    weights = tmp_path / "swin.pth"
    torch.save(_random_zoo_model("swin3d_t", 4, 32).state_dict(), weights)
    spec = load_model("swin3d_t", str(weights)).input_spec
    assert (spec.frames, spec.size) == (32, (224, 224))
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))


def test_wrong_architecture_is_refused_naming_the_keys(tmp_path):
    weights = tmp_path / "r3d.pth"
    torch.save(_random_zoo_model("r3d_18", 4, 32).state_dict(), weights)
    result = run_cmd("vt-embed", "--model", "mc3_18", "--weights", weights, "--list-layers")
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "does not fit mc3_18" in message and "shape mismatch at layer" in message and str(weights) in message


def test_wrong_number_of_classes_is_refused(tmp_path):
    weights = tmp_path / "five.pt"
    torch.save(motion_c3d(num_classes=5).state_dict(), weights)
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--list-layers")
    assert r.returncode == 1 and "head.weight (5, 64) vs (4, 64) expected" in r.stderr
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    torch.save(motion_c3d().state_dict(), weights)
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--class-names", names, "--list-layers")
    assert r.returncode == 1 and "3 class names, but the model" in r.stderr


def test_pickled_checkpoint_needs_trust(tmp_path):
    weights = tmp_path / "pickled.pt"
    torch.save(motion_c3d(), weights)  # a whole pickled module: arbitrary code on load
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--list-layers")
    assert (r.returncode == 1 and "arbitrary pickle" in r.stderr and "MotionC3D" in r.stderr
            and "--trust-checkpoint" in r.stderr)
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--trust-checkpoint", "--list-layers")
    assert r.returncode == 0, r.stderr
    assert "block3" in r.stdout


def test_checkpoint_wrappers_and_prefixes(tmp_path):
    model = motion_c3d()
    weights = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, weights)
    loaded = load_model(TINY, str(weights))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)


def test_not_a_checkpoint(tmp_path):
    weights = tmp_path / "junk.pth"
    weights.write_bytes(b"not a checkpoint")
    r = run_cmd("vt-embed", "--model", "r3d_18", "--weights", weights, "--list-layers")
    assert r.returncode == 1 and "not a readable PyTorch checkpoint" in r.stderr


def test_unknown_model_and_missing_weights(tmp_path, small_clips_file):
    r = run_cmd("vt-embed", "--model", "resnet9000", "--list-layers")
    assert r.returncode == 2 and "unknown model 'resnet9000'" in r.stderr
    r = run_cmd("vt-embed", small_clips_file, "--model", "swin3d_t", "--layers", "features.0", "-o",
                tmp_path / "out.h5")
    assert r.returncode == 2 and "never downloads" in r.stderr
    r = run_cmd("vt-embed", "--model", "nosuchpackage.mod:factory", "--list-layers")
    assert r.returncode == 2 and "cannot import nosuchpackage.mod" in r.stderr
    state = tmp_path / "state.pt"
    torch.save(motion_c3d().state_dict(), state)
    r = run_cmd("vt-embed", "--weights", state, "--list-layers")
    assert r.returncode == 2 and "a state dict needs --model" in r.stderr


def test_mmaction_route_without_mmaction(tmp_path, monkeypatch):
    """`mmaction:CONFIG` goes to the mmaction source; without the extra, one clear line."""
    import builtins

    real_import = builtins.__import__

    def no_mmaction(name, *args, **kwargs):
        if name.startswith("mmaction") or name.startswith("mmengine"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mmaction)
    from vtcav_common.core.errors import VtcavError
    from vtcav_common.models.mmaction_config import import_mmaction

    import_mmaction.cache_clear()   # an earlier test in the session may have imported mmaction2 already

    with pytest.raises(VtcavError, match=r"vtcav\[mmaction\]"):
        load_model("mmaction:recognition/swin/some-config.py", None)


def _tiny_with_weights(make_tiny_weights):
    """The tiny model with random weights and non-trivial BatchNorm statistics (eval mode matters)."""
    weights = make_tiny_weights(1)
    model = motion_c3d().eval()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model, weights


def _eager_block3(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with LayerRecorder(model, ["block3"]) as recorder, torch.no_grad():
        logits = model(x)
    return recorder.activations()["block3"], logits


def test_factory_torchscript_and_export_sources_agree(tmp_path, make_tiny_weights):
    model, weights = _tiny_with_weights(make_tiny_weights)
    x = preprocess(np.random.default_rng(0).integers(0, 256, (2, 20, 64, 64, 3), dtype=np.uint8),
                   motion_c3d().vtcav_input_spec)
    expected_acts, expected_logits = _eager_block3(model, x)
    sidecar = {"input": {"frames": 16, "size": [64, 64], "mean": [0.45] * 3, "std": [0.25] * 3},
               "class_names": ["left", "right", "up", "down"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted, traced = tmp_path / "tiny_script.ts", tmp_path / "tiny_trace.pt"
        torch.jit.save(torch.jit.script(model), str(scripted))
        torch.jit.save(torch.jit.trace(model, x), str(traced))
        exported = tmp_path / "tiny.pt2"
        batch = torch.export.Dim("batch", min=1, max=64)
        torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), str(exported))
    for path in (scripted, traced, exported):
        path.with_suffix(".json").write_text(json.dumps(sidecar))
    sources = {"factory": load_model(TINY, str(weights)), "script": load_model(None, str(scripted)),
               "trace": load_model(None, str(traced)), "export": load_model(str(exported), None)}
    for name, loaded in sources.items():
        assert loaded.class_names == ["left", "right", "up", "down"], name
        assert loaded.input_spec.size == (64, 64) and loaded.input_spec.frames == 16, name
        acts, logits = _eager_block3(loaded.module, x)
        torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(acts, expected_acts, rtol=1e-4, atol=1e-5, msg=name)
        assert "block3" in default_layers(loaded.module), name
    assert sources["export"].provenance["source"] == "export"
    assert sources["script"].provenance["source"] == "torchscript"


def test_static_batch_export_is_padded(tmp_path, small_clips_file, make_tiny_weights):
    """A program exported with a fixed batch of 4 still embeds sets of 3 and 2 clips."""
    model, _ = _tiny_with_weights(make_tiny_weights)
    x = torch.zeros(4, 3, 16, 64, 64)
    path = tmp_path / "static.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (x,)), str(path))
    loaded = load_model(str(path), None)
    assert loaded.fixed_batch == 4 and loaded.input_spec.frames == 16
    out = tmp_path / "acts.h5"
    r = run_cmd("vt-embed", small_clips_file, "--model", path, "--layers", "block3", "--target", "1", "-o", out, "-q",
                "--batch-size", "3")
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as handle:
        assert handle["sets/ball/acts/block3"].shape == (3, 48, 8, 16, 16)


def test_list_layers(make_tiny_weights):
    _, weights = _tiny_with_weights(make_tiny_weights)
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--list-layers")
    assert r.returncode == 0
    usual = r.stdout
    lines = usual.strip().splitlines()
    assert lines[0].startswith("# name")
    assert [line.split()[0] for line in lines[1:]] == ["block1", "block2", "block3", "block4", "pool", "head"]
    assert "48x8x16x16" in usual
    r = run_cmd("vt-embed", "--model", TINY, "--weights", weights, "--list-layers", "--all")
    assert r.returncode == 0
    every = r.stdout
    assert "block3.0" in every and "Conv3d" in every and len(every.splitlines()) > len(lines)


class _ChannelsLast(nn.Module):
    """A transformer-like toy: tokens with channels last, and a module named with '/'."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv3d(3, 8, (2, 8, 8), stride=(2, 8, 8))
        self.mix = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
        self.add_module("odd/name", nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)
        self.vtcav_input_spec = {"frames": 4, "size": 32}
        self.vtcav_class_names = ["a", "b", "c"]

    def forward(self, x):
        x = self.embed(x).permute(0, 2, 3, 4, 1)          # N x T x H x W x C
        x = x + self.mix(x)
        x = getattr(self, "odd/name")(x)
        return self.head(x.mean((1, 2, 3)))


def channels_last_toy() -> nn.Module:
    return _ChannelsLast()


def test_channel_axis_inference():
    loaded = load_model("test_models:channels_last_toy", None)
    infos = describe_layers(loaded)
    assert infos["embed"].channel_axis == 0 and infos["embed"].shape == (8, 2, 4, 4)
    assert infos["mix"].shape == (2, 4, 4, 8) and infos["mix"].channel_axis == 3 and infos["mix"].channels_last
    assert infos["mix.2"].channel_axis == 3          # GELU keeps the Linear's layout
    assert infos["odd/name"].channel_axis == 3


def test_tiny_classifier_weights_classify_a_fresh_world(tmp_path):
    """The committed weights, loaded through load_model, on held-out videos of an unseen world seed."""
    from vtcav_common.embed import sample_video
    from vtcav_common.formats.records import read_manifest
    from vtcav_common.synth import CLASSES, generate_world

    weights = WEIGHTS / "classifier.pt"
    loaded = load_model(None, str(weights))          # the sidecar names the factory
    assert loaded.provenance["arch"] == TINY and loaded.class_names == list(CLASSES)
    assert weights.stat().st_size < 1_000_000
    torch.load(weights, weights_only=True)           # a plain state dict
    generate_world(tmp_path / "world", seed=2024, train_per_class=0, test_per_class=8)
    videos = read_manifest(str(tmp_path / "world" / "labels.jsonl"))
    clips = np.stack([sample_video(v.path, loaded.input_spec.frames) for v in videos])
    with torch.no_grad():
        predictions = loaded.module(preprocess(clips, loaded.input_spec)).argmax(1).numpy()
    truth = np.array([CLASSES.index(v.label) for v in videos])
    accuracy = float((predictions == truth).mean())
    print(f"tiny classifier held-out accuracy on a fresh world: {accuracy:.3f} ({len(videos)} videos)")
    assert accuracy >= 0.95


def test_list_layers_from_the_architecture_alone():
    r = run_cmd("vt-embed", "--model", "r3d_18", "--list-layers")
    assert r.returncode == 0, r.stderr
    assert "zero weights" in r.stderr and "never downloads" not in r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert {"stem", "layer1", "layer2.1", "layer4", "fc"} <= set(names)


def test_usual_layers_declared_by_the_source_or_guessed():
    from vtcav_common.models.layers import usual_layers

    assert usual_layers(load_model(TINY, str(WEIGHTS / "classifier.pt"))) == ["block1", "block2", "block3"]
    # No declaration: the top-level modules whose output is still a T x H x W grid.
    assert usual_layers(load_model("test_models:channels_last_toy", None)) == ["embed", "mix", "odd/name"]


def test_commands_and_torchscript_models_import_only_what_they_need(tmp_path):
    """--help/--version answer without torch; a TorchScript model loads without torchvision."""
    import subprocess
    import sys

    tools = ", ".join(f"tools.vt_{name}" for name in ("embed", "explain", "detect", "ace", "concepts", "synth"))
    heavy = "('torch', 'torchvision', 'ultralytics')"
    code = f"import sys, {tools}; print([m for m in {heavy} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=WEIGHTS.parent)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr + result.stdout
    scripted = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.script(motion_c3d().eval()), str(scripted))
    (tmp_path / "tiny.json").write_text(json.dumps({"input": {"frames": 16, "size": 64}}))
    code = (f"import sys; from vtcav_common.models import load_model; load_model(None, {str(scripted)!r}); "
            f"print('torchvision' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=WEIGHTS.parent)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
