"""torchvision's video zoo as a model source: architecture by name + a local state dict.

Models are built with ``weights=None`` (nothing is ever downloaded) and a
``num_classes`` read from the checkpoint's head, then the checkpoint is loaded strictly.
The input contract (clip length, crop size, mean/std) and Kinetics-400 class names come
from torchvision's weights enums, which ship their metadata with the library (offline).
Without a checkpoint (``--list-layers`` only) the architecture is built with zeros for
weights: its layers and shapes are the same, and nothing is spent on initialisation.
torchvision itself is imported only here, when such a model is loaded.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError
from ..core.messages import warn
from . import common
from .base import InputSpec, LoadedModel
from .checkpoint import load_strictly, read_checkpoint
from .registry import ModelSource

# Architecture -> the state-dict key of its classification layer's weight (rows = classes).
HEADS = {
    "swin3d_t": "head.weight", "swin3d_s": "head.weight", "swin3d_b": "head.weight",
    "r3d_18": "fc.weight", "mc3_18": "fc.weight", "r2plus1d_18": "fc.weight",
    "s3d": "classifier.1.weight",
    "mvit_v1_b": "head.1.weight", "mvit_v2_s": "head.1.weight",
}
ARCHITECTURES = tuple(HEADS)
KINETICS_CLASSES = 400

# The layers explained when the user names none: the output of each of the four stages.
USUAL_LAYERS = {
    "swin3d": ["features.0", "features.2", "features.4", "features.6"],      # .1/.3/.5 merge patches
    "r3d_18": ["layer1", "layer2", "layer3", "layer4"], "mc3_18": ["layer1", "layer2", "layer3", "layer4"],
    "r2plus1d_18": ["layer1", "layer2", "layer3", "layer4"],
    "s3d": ["features.3", "features.6", "features.12", "features.15"],       # conv 2c, mixed 3c, 4f, 5c
    "mvit": ["blocks.0", "blocks.2", "blocks.13", "blocks.15"],             # the last block of each scale
}

# Activation layouts that the generic inference could not see from module types alone:
# Swin runs its stages channels-last, MViT works on tokens (N x (1 + THW) x C).
LAYOUTS = {
    "swin3d": {"patch_embed": "NTHWC", "features": "NTHWC", "features.[0-9]": "NTHWC",
               "features.[0-9].[0-9]": "NTHWC", "features.[0-9].[0-9][0-9]": "NTHWC", "norm": "NTHWC"},
    "mvit": {"pos_encoding": "NLC", "blocks.[0-9]": "NLC", "blocks.[0-9][0-9]": "NLC", "norm": "NLC"},
}


def weights_enum(arch: str):
    import torchvision

    return list(torchvision.models.get_model_weights(arch))[0]


def default_input_spec(arch: str) -> InputSpec:
    """Clip length, crop size and normalisation of torchvision's Kinetics-400 weights."""
    entry = weights_enum(arch)
    transform = entry.transforms()
    docs = entry.meta.get("_docs", "")
    clip_len = re.search(r"clip_len=(\d+)", docs)
    crop = transform.crop_size
    return InputSpec(frames=int(clip_len.group(1)) if clip_len else 16,
                     size=(int(crop[0]), int(crop[-1])),
                     mean=tuple(float(v) for v in transform.mean),
                     std=tuple(float(v) for v in transform.std))


def kinetics400_names() -> list[str]:
    return list(weights_enum("r3d_18").meta["categories"])


def num_classes_of(arch: str, state: dict[str, torch.Tensor], path: Path) -> int:
    key = HEADS[arch]
    if key not in state:
        near = [k for k in state if k.endswith("weight")][-1:] or list(state)[-1:]
        raise VtcavError(f"{path}: checkpoint does not fit {arch}: no classification head '{key}' "
                         f"(last weight key is {', '.join(near) or 'none'}); is it another architecture?")
    return int(state[key].shape[0])


def mvit_input_size(arch: str, state: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """(frames, size) that an MViT checkpoint was built for: its position tables fix them."""
    if arch == "mvit_v1_b" and "pos_encoding.spatial_pos" in state:
        tokens = state["pos_encoding.spatial_pos"].shape[0]
        return int(state["pos_encoding.temporal_pos"].shape[0]) * 2, int(round(math.sqrt(tokens))) * 4
    if arch == "mvit_v2_s" and "blocks.0.attn.rel_pos_h" in state:
        return ((int(state["blocks.0.attn.rel_pos_t"].shape[0]) + 1) // 2 * 2,
                (int(state["blocks.0.attn.rel_pos_h"].shape[0]) + 1) // 2 * 4)
    return None


@contextlib.contextmanager
def _mvit_sized(frames: int, size: int):
    """Build MViT for another input size: torchvision's builders hard-code 16 x 224 x 224."""
    from torchvision.models.video import mvit

    original = mvit._mvit

    def sized(*args, **kwargs):
        kwargs["spatial_size"], kwargs["temporal_size"] = (size, size), frames
        return original(*args, **kwargs)

    mvit._mvit = sized
    try:
        yield
    finally:
        mvit._mvit = original


def build(arch: str, num_classes: int, spec: InputSpec, device: str | torch.device = "cpu") -> nn.Module:
    """The architecture (uninitialised on ``meta``), sized for ``spec`` where the architecture needs it."""
    import torchvision.models.video

    builder = getattr(torchvision.models.video, arch)
    with torch.device(device):
        if arch.startswith("mvit"):
            with _mvit_sized(spec.frames, spec.size[0]):
                return builder(weights=None, num_classes=num_classes)
        return builder(weights=None, num_classes=num_classes)


def build_with_state(arch: str, num_classes: int, spec: InputSpec, state: dict[str, torch.Tensor],
                     path: Path) -> nn.Module:
    """Build without spending time on random initialisation, then take the checkpoint's tensors.

    The skeleton is made on the ``meta`` device and the checkpoint's tensors are assigned
    to it; if anything is left on ``meta`` (a buffer that checkpoints do not store), the
    model is built normally instead.
    """
    module = build(arch, num_classes, spec, device="meta")
    load_strictly(module, state, path, arch, assign=True)
    if any(t.is_meta for t in list(module.parameters()) + list(module.buffers())):
        module = build(arch, num_classes, spec)
        load_strictly(module, state, path, arch)
    return module


def check_input_size(arch: str, spec: InputSpec, trained: tuple[int, int] | None) -> None:
    """Refuse sizes the architecture cannot run, before a cryptic error inside forward."""
    meta = weights_enum(arch).meta
    min_frames = int(meta.get("min_temporal_size", 1))
    min_size = int(meta.get("min_size", (1, 1))[0])
    if arch.startswith("mvit"):
        if spec.size[0] != spec.size[1]:
            raise UsageError(f"{arch} needs square frames, got {spec.size[0]}x{spec.size[1]}")
        if trained and (spec.frames, spec.size[0]) != trained:
            raise UsageError(f"{arch}: the checkpoint's position embeddings fix the input at {trained[0]} frames "
                             f"of {trained[1]}x{trained[1]}; got --frames {spec.frames} --size {spec.size[0]}")
        return
    if spec.frames < min_frames or min(spec.size) < min_size:
        raise UsageError(f"{arch} needs at least {min_frames} frames of {min_size}x{min_size}; "
                         f"got {spec.frames} frames of {spec.size[0]}x{spec.size[1]}")


def layouts_for(arch: str) -> dict[str, str]:
    return dict(_by_family(LAYOUTS, arch) or {})


def usual_layers(arch: str) -> list[str]:
    return list(_by_family(USUAL_LAYERS, arch) or [])


def _by_family(table: dict, arch: str):
    return next((value for family, value in table.items() if arch.startswith(family)), None)


def build_zeros(arch: str, num_classes: int, spec: InputSpec) -> nn.Module:
    """The architecture with every parameter and buffer zero: its layers, without initialising."""
    module = build(arch, num_classes, spec, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.zero_()
    return module


def load(request: common.LoadRequest) -> LoadedModel:
    arch, weights_path = request.model, request.weights
    if weights_path is None and request.need_weights:
        raise UsageError(f"--model {arch} needs --weights: a local state dict (vtcav never downloads weights)")
    state = read_checkpoint(weights_path, request.trust_checkpoint) if weights_path else {}
    num_classes = num_classes_of(arch, state, weights_path) if weights_path else KINETICS_CLASSES
    spec = common.input_spec(default_input_spec(arch), request.sidecar, request.overrides)
    trained = mvit_input_size(arch, state)
    if trained and not (request.frames or request.size):
        spec = spec.with_overrides(frames=trained[0], size=trained[1])   # MViT: the checkpoint decides
    check_input_size(arch, spec, trained)
    if weights_path is None:
        warn(f"--model {arch} without --weights: zero weights (enough to list its layers, not to explain)")
        module = build_zeros(arch, num_classes, spec)
    else:
        module = build_with_state(arch, num_classes, spec, state, weights_path)
    default_names = kinetics400_names() if num_classes == KINETICS_CLASSES else None
    names = common.class_names(request, num_classes, weights_path or arch, default=default_names)
    provenance = common.provenance("torchvision", arch, weights_path, num_classes, names, spec, layouts_for(arch),
                                   state=None if weights_path else module.state_dict())
    return LoadedModel(module.eval(), spec, names, provenance, usual_layers=usual_layers(arch))


SOURCE = ModelSource(
    name="torchvision", order=20, load=load, accepts=lambda model: model in ARCHITECTURES,
    spec=f"a torchvision video architecture ({', '.join(ARCHITECTURES)}) with a local state dict")
