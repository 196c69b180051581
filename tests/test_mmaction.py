"""mmaction2 recognizers as a model source: Video Swin from a packaged config and a local checkpoint.

Skipped when the optional mmaction2 extra is not installed (shell/install_mmaction.sh).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmaction", reason="mmaction2 extra not installed")

from conftest import run_cmd  # noqa: E402
from vtcav_common.core.errors import UsageError, VtcavError  # noqa: E402
from vtcav_common.models import mmaction_source as mm  # noqa: E402
from vtcav_common.models.base import LayerRecorder  # noqa: E402

SWIN_T = "swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb"
SWIN_T_PATH = f"recognition/swin/{SWIN_T}.py"
FRAMES, SIZE = 8, 64           # 8 frames -> 4 temporal patches; 64 px -> 16x16 patches, 2x2 at stage 4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def swin_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A randomly initialised swin-tiny K400 saved the way mmaction saves checkpoints."""
    torch.manual_seed(0)
    cfg = mm.read_config(mm.resolve_config(SWIN_T))
    module = mm.build_classifier(cfg, Path(SWIN_T))
    path = tmp_path_factory.mktemp("mmaction") / "swin_tiny_random.pth"
    torch.save({"meta": {"mmaction_version": "1.2.0", "epoch": 0}, "state_dict": module.state_dict()}, path)
    return path, module


def swin_variant_config(folder: Path, name: str, **cls_head) -> Path:
    """A user config that inherits the packaged swin-tiny and changes its head."""
    base = mm.packaged_configs_root() / "_base_" / "models" / "swin_tiny.py"
    path = folder / f"{name}.py"
    head = ", ".join(f"{k}={v!r}" for k, v in cls_head.items())
    path.write_text(f"_base_ = [{str(base)!r}]\nmodel = dict(cls_head=dict({head}))\n")
    return path


def random_clip(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- configs

def test_missing_drn_module_gets_a_stand_in_that_refuses_to_build():
    mm.import_mmaction()
    import mmaction.models  # noqa: F401  (fails without the stand-in on the 1.2.0 wheel)
    drn = sys.modules["mmaction.models.localizers.drn.drn"]
    if not hasattr(drn, "__file__"):          # our stand-in, not a real module
        with pytest.raises(VtcavError, match="DRN"):
            drn.DRN()


@pytest.mark.parametrize("given", [SWIN_T, SWIN_T + ".py", SWIN_T_PATH])
def test_packaged_config_found_by_name_or_relative_path(given):
    path = mm.resolve_config(given)
    assert path.is_file() and path.name == SWIN_T + ".py"
    assert path.parent == mm.packaged_configs_root() / "recognition" / "swin"


def test_unknown_config_is_a_usage_error_with_a_suggestion():
    with pytest.raises(UsageError, match=r"not found.*did you mean.*swin-tiny"):
        mm.resolve_config("recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics401-rgb.py")


def test_input_spec_comes_from_the_config_in_unit_range():
    cfg = mm.read_config(mm.resolve_config(SWIN_T))
    spec, sampling = mm.input_spec_from_config(cfg)
    assert spec.frames == 32 and spec.size == (224, 224) and spec.layout == "NCTHW"
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)
    assert spec.std == pytest.approx((0.229, 0.224, 0.225), abs=1e-6)
    assert sampling == {"frame_interval": 2, "num_clips": 4, "test_crop": "ThreeCrop"}


def test_pretrained_downloads_are_switched_off():
    cfg = mm.read_config(mm.resolve_config(SWIN_T))
    assert cfg.model.backbone.pretrained is None          # the packaged config names a URL
    assert cfg.model.backbone.pretrained2d is False


# ----------------------------------------------------------------------------- loading

def test_checkpoint_round_trip_gives_the_same_400_logits(swin_checkpoint):
    path, original = swin_checkpoint
    model = mm.load_mmaction(SWIN_T_PATH, str(path), frames=FRAMES, size=SIZE)
    x = random_clip()
    with torch.no_grad():
        logits = model.module(x)
        expected = original(x)
    assert logits.shape == (2, 400)
    torch.testing.assert_close(logits, expected)
    assert model.class_names[0] == "abseiling" and len(model.class_names) == 400
    assert model.class_index("playing tennis") == model.class_names.index("playing tennis")
    assert (model.input_spec.frames, model.input_spec.size) == (FRAMES, (SIZE, SIZE))
    prov = model.provenance
    assert prov["source"] == "mmaction" and prov["num_classes"] == 400
    assert prov["weights"] == path.name and len(prov["weights_sha256"]) == 64
    assert prov["arch"] == f"mmaction:{SWIN_T}" and prov["backbone"] == "SwinTransformer3D"


def test_layer_names_are_mmactions(swin_checkpoint):
    model = mm.load_mmaction(SWIN_T, str(swin_checkpoint[0]))
    names = set(model.layer_names())
    assert {"backbone.patch_embed", "backbone.layers.0.blocks.1", "backbone.layers.2.blocks.5",
            "backbone.layers.2.downsample", "backbone.norm3", "cls_head.fc_cls"} <= names
    assert not any(n.startswith("data_preprocessor") for n in names)
    # Explained by default: each stage's output before its patch merging.
    assert model.usual_layers == [f"backbone.layers.{i}" for i in range(4)]
    state_keys = set(model.module.state_dict())
    assert set(torch.load(swin_checkpoint[0], weights_only=True)["state_dict"]) == state_keys


def test_activations_and_gradients_of_two_layers_from_one_pass(swin_checkpoint):
    model = mm.load_mmaction(SWIN_T, str(swin_checkpoint[0]), frames=FRAMES, size=SIZE)
    layers = ["backbone.layers.1.blocks.1", "backbone"]
    target = model.class_index("playing tennis")
    with LayerRecorder(model.module, layers, keep_grad=True) as recorder:
        logits = model.module(random_clip())
        logits[:, target].sum().backward()
    acts, grads = recorder.activations(), recorder.gradients()
    # Swin stages run channels-last; the backbone's output is channels-first.
    assert acts["backbone.layers.1.blocks.1"].shape == (2, 4, 8, 8, 192)
    assert mm.activation_layout("backbone.layers.1.blocks.1") == "NTHWC"
    assert acts["backbone"].shape == (2, 768, 4, 2, 2) and mm.activation_layout("backbone") == "NCTHW"
    assert grads["backbone.layers.1.blocks.1"].shape == acts["backbone.layers.1.blocks.1"].shape
    assert grads["backbone.layers.1.blocks.1"].abs().sum() > 0
    # The I3D head is average pooling then a linear layer: d logit_k / d features = w_k / (T*H*W).
    weight = model.module.cls_head.fc_cls.weight[target].detach()
    expected = (weight / (4 * 2 * 2)).view(1, 768, 1, 1, 1).expand(2, 768, 4, 2, 2)
    torch.testing.assert_close(grads["backbone"], expected)


def test_declared_swin_layouts_match_the_real_outputs(swin_checkpoint):
    """Every layer that SWIN_LAYOUTS covers has the rank and channel width its layout says."""
    module = swin_checkpoint[1]
    widths = {96, 192, 384, 768, 3 * 96, 3 * 192, 3 * 384, 3 * 768, 4 * 96, 4 * 192, 4 * 384, 4 * 768}
    shapes = {}

    def record(name):
        def hook(_module, _inputs, output):
            shapes.setdefault(name, tuple(output.shape))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in module.named_modules() if name]
    with torch.no_grad():
        module(random_clip(1))
    for hook in hooks:
        hook.remove()
    checked = 0
    for name, shape in shapes.items():
        layout = mm.activation_layout(name)
        if layout in ("NCTHW", "NTHWC", "NLC") and "softmax" not in name and "attn_drop" not in name:
            assert len(shape) == len(layout), (name, shape, layout)
            assert shape[layout.index("C")] in widths, (name, shape, layout)
            checked += 1
    assert checked > 150
    assert mm.activation_layout("backbone.layers.1.blocks.1") == "NTHWC"
    assert mm.activation_layout("backbone.layers.1.blocks.1.attn.qkv") == "NLC"
    assert mm.activation_layout("backbone.patch_embed") == "NCTHW"


def test_checkpoint_with_another_number_of_classes_is_refused_naming_the_file(tmp_path):
    config = swin_variant_config(tmp_path, "swin_tiny_10", num_classes=10)
    ten = mm.build_classifier(mm.read_config(config), config)
    checkpoint = tmp_path / "ten_classes.pth"
    torch.save({"state_dict": ten.state_dict()}, checkpoint)
    with pytest.raises(VtcavError, match=r"ten_classes\.pth.*10 classes.*builds 400"):
        mm.load_mmaction(SWIN_T, str(checkpoint))
    # Its own config loads it; without names (none in its meta) the classes are called class_0..
    assert mm.load_mmaction(str(config), str(checkpoint)).class_names[9] == "class_9"
    names_file = tmp_path / "names.txt"
    names_file.write_text("".join(f"action {i}\n" for i in range(10)))
    model = mm.load_mmaction(str(config), str(checkpoint), class_names=str(names_file), frames=FRAMES, size=SIZE)
    assert model.class_names[3] == "action 3"
    with torch.no_grad():
        assert model.module(random_clip(1)).shape == (1, 10)
    with pytest.raises(VtcavError, match="9 class names, but the model"):
        mm.load_mmaction(str(config), str(checkpoint), class_names=[f"c{i}" for i in range(9)])


def test_checkpoint_of_another_architecture_is_refused_naming_the_file(tmp_path):
    checkpoint = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"backbone.conv1.conv.weight": torch.zeros(64, 3, 5, 7, 7),
                               "cls_head.fc_cls.weight": torch.zeros(400, 2048)}}, checkpoint)
    with pytest.raises(VtcavError, match=r"resnet\.pth: checkpoint does not fit the architecture.*missing keys"):
        mm.load_mmaction(SWIN_T, str(checkpoint))


def test_pickled_objects_need_trust(tmp_path, swin_checkpoint):
    path, original = swin_checkpoint
    pickled = tmp_path / "with_objects.pth"
    torch.save({"state_dict": original.state_dict(), "meta": {"args": argparse.Namespace(lr=0.1)}}, pickled)
    with pytest.raises(VtcavError, match=r"with_objects\.pth.*--trust-checkpoint"):
        mm.load_mmaction(SWIN_T, str(pickled))
    model = mm.load_mmaction(SWIN_T, str(pickled), trust_checkpoint=True)
    assert model.provenance["weights"] == "with_objects.pth"


def test_missing_checkpoint_file_is_an_error(tmp_path):
    with pytest.raises(VtcavError, match=r"nowhere\.pth: no such file"):
        mm.load_mmaction(SWIN_T, str(tmp_path / "nowhere.pth"))


def test_normalisation_overrides_and_provenance(swin_checkpoint):
    model = mm.load_mmaction(SWIN_T, str(swin_checkpoint[0]), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert model.input_spec.mean == (0.5, 0.5, 0.5) and model.input_spec.std == (0.25, 0.25, 0.25)
    assert model.provenance["input"] == model.input_spec.to_dict()
    assert model.provenance["activation_layouts"]["backbone.layers.*"] == "NTHWC"
    with pytest.raises(UsageError, match="--std needs three numbers"):
        mm.load_mmaction(SWIN_T, str(swin_checkpoint[0]), std=(0.2, 0.2))


# ----------------------------------------------------------------------------- through the CLI

def test_vt_embed_lists_the_layers_of_an_mmaction_model(swin_checkpoint):
    result = run_cmd("vt-embed", "--model", f"mmaction:{SWIN_T}", "--weights", swin_checkpoint[0],
                     "--list-layers", "--all", "--frames", str(FRAMES), "--size", str(SIZE))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if not line.startswith("#")}
    # name -> type, shape, channel axis, calls: Swin's stages are channels-last (axis 3).
    assert rows["backbone.layers.1.blocks.1"][:3] == ["SwinTransformerBlock3D", "4x8x8x192", "3"]
    assert rows["backbone"][:3] == ["SwinTransformer3D", "768x4x2x2", "0"]
    assert rows["cls_head"][1] == "400"
    assert not any(name.startswith("data_preprocessor") for name in rows)


def test_vt_embed_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    checkpoint = tmp_path / "other.pth"
    torch.save({"state_dict": {"cls_head.fc_cls.weight": torch.zeros(400, 2048)}}, checkpoint)
    result = run_cmd("vt-embed", "--model", f"mmaction:{SWIN_T}", "--weights", checkpoint, "--list-layers")
    assert result.returncode == 1
    assert "other.pth: checkpoint does not fit" in result.stderr and "Traceback" not in result.stderr
