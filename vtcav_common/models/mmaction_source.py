"""mmaction2 recognizers (the Video-TCAV paper's Video Swin) as a vtcav model source.

A config file (a path, or a config packaged with mmaction2 such as
``recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py``)
plus a local checkpoint become a :class:`~vtcav_common.models.base.LoadedModel`:

>>> model = load_mmaction("recognition/swin/swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py",
...                       "swin_tiny_k400.pth")                        # doctest: +SKIP
>>> logits = model.module(preprocess(clips, model.input_spec))          # doctest: +SKIP

The module is a plain ``nn.Module`` whose ``forward`` takes the normalised
``N x C x T x H x W`` clip and returns ``N x K`` logits: the recognizer's backbone,
neck and classification head, without mmaction's data preprocessor (vtcav normalises
from the :class:`InputSpec`, derived here from the config). Its layers keep mmaction's
names (``backbone.layers.0.blocks.1``, ``cls_head.fc_cls``), so a checkpoint's keys
and the names a user reads in mmaction's code are the names vtcav records.

Video Swin's activation layouts (see :func:`activation_layout`): ``backbone.patch_embed``
and ``backbone`` give ``N x C x T x H x W``; the stages ``backbone.layers.I``, their blocks
(``.blocks.J``, with their norms and MLPs), the patch-merging ``.downsample`` and the
``backbone.normI`` layers give channels-last ``N x T x H x W x C``; window attention
(``.blocks.J.attn*``) works on flattened windows, ``(N * windows) x tokens x C``;
``cls_head`` gives ``N x K``. The table is recorded as ``provenance["activation_layouts"]``.

Nothing is downloaded: pretrained-backbone URLs in configs are switched off, weights come
only from the checkpoint file, and it is read with ``torch.load(weights_only=True)`` unless
the caller trusts it. Configs are found and read by :mod:`.mmaction_config`; note that an
mmaction config is Python code that is executed when read: use configs you trust.
"""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError
from ..core.messages import warn
from . import common
from .base import LoadedModel
from .checkpoint import read_checkpoint_with_meta
# The config helpers are re-exported: callers and tests reach mmaction through this module.
from .mmaction_config import (import_mmaction, input_spec_from_config, model_config_sha256,  # noqa: F401
                              packaged_configs_root, read_config, resolve_config)
from .registry import ModelSource

# ----------------------------------------------------------------------------- module

class MMActionClassifier(nn.Module):
    """An mmaction 3D recognizer as ``forward(N x C x T x H x W) -> N x K`` logits.

    Holds the recognizer's own ``backbone``, ``neck`` and ``cls_head`` modules under the
    same attribute names, so layer names and checkpoint keys are mmaction's.
    """

    def __init__(self, recognizer: nn.Module):
        super().__init__()
        self.backbone = recognizer.backbone
        if getattr(recognizer, "with_neck", False):
            self.neck = recognizer.neck
        self.cls_head = recognizer.cls_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        if hasattr(self, "neck"):
            features, _ = self.neck(features)
        logits = self.cls_head(features)
        return logits


def build_classifier(cfg, config_path: Path) -> MMActionClassifier:
    """Build the recognizer a config describes (random weights) and wrap it."""
    import_mmaction()
    from mmaction.registry import MODELS
    recognizer_type = cfg.model.get("type", "?")
    if recognizer_type != "Recognizer3D":
        raise UsageError(f"{config_path}: recognizer type {recognizer_type!r} is not supported "
                         "(vtcav takes mmaction's Recognizer3D models: Video Swin, I3D, SlowFast, X3D, ...)")
    try:
        with warnings.catch_warnings():
            # Swin's attention calls torch.meshgrid without `indexing`: torch warns, nothing to fix here.
            warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
            recognizer = MODELS.build(cfg.model)
    except VtcavError:
        raise
    except Exception as exc:
        raise VtcavError(f"{config_path}: cannot build the model: {exc}") from None
    if getattr(recognizer, "cls_head", None) is None:
        raise UsageError(f"{config_path}: the recognizer has no cls_head, so it gives no class logits")
    return MMActionClassifier(recognizer).eval()


# Output layouts of Video Swin's layers, as shell-style patterns tried in order (the
# ``activation_layouts`` provenance convention of vtcav_common.models.layers). Swin's stages
# run channels-last; window attention sees (N * windows) x tokens x C; the patch embedding's
# LayerNorm runs on N x tokens x C before being reshaped back to channels-first.
SWIN_LAYOUTS = {
    "backbone": "NCTHW",
    "backbone.patch_embed": "NCTHW",
    "backbone.patch_embed.proj": "NCTHW",
    "backbone.patch_embed.norm": "NLC",
    "backbone.pos_drop": "NCTHW",
    "backbone.layers.*.attn*": "NLC",
    "backbone.layers.*": "NTHWC",
    "backbone.norm*": "NTHWC",
    "cls_head": "NK",
    "cls_head.fc_cls": "NK",
}


def activation_layout(layer_name: str, backbone_type: str = "SwinTransformer3D") -> str:
    """The layout of a layer's output in the wrapper: "NCTHW", channels-last "NTHWC", "NLC", "NK".

    Video Swin's come from :data:`SWIN_LAYOUTS`; the 3D CNN backbones (ResNet3d, X3D,
    SlowFast pathways) are "NCTHW" up to the head. "unknown" where no rule says.
    """
    if layer_name in ("cls_head", "cls_head.fc_cls"):
        return "NK"
    if backbone_type == "SwinTransformer3D":
        return next((layout for pattern, layout in SWIN_LAYOUTS.items()
                     if fnmatch.fnmatchcase(layer_name, pattern)), "unknown")
    return "NCTHW" if layer_name.startswith("backbone") else "unknown"


# ----------------------------------------------------------------------------- checkpoint

def check_fits(state: dict, module: nn.Module, checkpoint: Path, config: Path) -> None:
    """Refuse a checkpoint made for another architecture or number of classes, saying which."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if not (missing or unexpected or mismatched):
        return
    head = "cls_head.fc_cls.weight"
    if not missing and not unexpected and head in state and state[head].shape[1:] == expected[head].shape[1:] \
            and state[head].shape[0] != expected[head].shape[0]:
        raise VtcavError(f"{checkpoint}: checkpoint has {state[head].shape[0]} classes but config "
                         f"{config.name} builds {expected[head].shape[0]}")
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:2])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:2])})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[0]})")
    raise VtcavError(f"{checkpoint}: checkpoint does not fit the architecture of config {config.name}: "
                     + "; ".join(parts))


# ----------------------------------------------------------------------------- entry point

def load(request: common.LoadRequest) -> LoadedModel:
    """The source's loader: ``request.model`` is ``mmaction:CONFIG`` or a ``.py`` config path."""
    config = request.model[len("mmaction:"):] if request.model.startswith("mmaction:") else request.model
    import_mmaction()                        # one clear line when the extra is not installed
    config_path = resolve_config(config)
    cfg = read_config(config_path)
    config_spec, sampling = input_spec_from_config(cfg)
    spec = common.input_spec(config_spec, request.sidecar, request.overrides)

    module = build_classifier(cfg, config_path)
    meta: dict = {}
    weights_path = request.weights
    if weights_path is not None:
        state, meta = read_checkpoint_with_meta(weights_path, request.trust_checkpoint)
        # mmaction's preprocessor keeps mean/std out of the state dict, but older saves may not.
        state = {k: v for k, v in state.items() if not k.startswith("data_preprocessor.")}
        check_fits(state, module, weights_path, config_path)
        module.load_state_dict(state, strict=True)
    else:
        warn(f"mmaction:{config} without a checkpoint: random weights (good for listing layers, "
             "not for explanations)")

    num_classes = int(module.cls_head.num_classes)
    backbone_type = cfg.model.backbone.get("type", "?")
    dataset = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    from .torchvision_source import KINETICS_CLASSES, kinetics400_names   # mmaction's K400 order is the same

    names = common.class_names(request, num_classes, weights_path or config_path, declared=dataset.get("classes"),
                               declared_by=f"{weights_path} (meta)",
                               default=kinetics400_names() if num_classes == KINETICS_CLASSES else None)
    swin = backbone_type == "SwinTransformer3D"
    provenance = common.provenance(
        "mmaction", f"mmaction:{config_path.stem}", weights_path, num_classes, names, spec,
        SWIN_LAYOUTS if swin else None, state=None if weights_path else module.state_dict(),
        config=str(config),
        # The merged model section (with its _base_ files), as built: what the weights must fit.
        config_sha256=model_config_sha256(cfg), backbone=backbone_type,
        mmaction_version=import_mmaction().__version__, sampling=sampling)
    return LoadedModel(module=module, input_spec=spec, class_names=names, provenance=provenance,
                       usual_layers=swin_stage_outputs(module) if swin else None)


def swin_stage_outputs(module: nn.Module) -> list[str]:
    """Each Swin stage's output before its patch merging, the same points as torchvision's
    ``features.0/2/4/6``: what is explained by default. That is ``backbone.layers.I`` unless
    the backbone merges inside the stage (``out_after_downsample``): then its last block."""
    backbone = module.backbone
    if not getattr(backbone, "out_after_downsample", False):
        return [f"backbone.layers.{i}" for i in range(len(backbone.layers))]
    return [f"backbone.layers.{i}.blocks.{len(layer.blocks) - 1}" for i, layer in enumerate(backbone.layers)]


def load_mmaction(config: str, checkpoint: str | None, *, class_names=None, trust_checkpoint: bool = False,
                  frames: int | None = None, size: int | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  device: str | torch.device = "cpu") -> LoadedModel:
    """Build an mmaction2 3D recognizer from ``config`` and load ``checkpoint`` into it.

    ``config``: a ``.py`` path, a path relative to mmaction2's packaged configs, or a
    unique packaged file name. ``checkpoint``: a local ``.pth`` (mmaction's
    ``{"state_dict": ..., "meta": ...}`` or a bare state dict); ``None`` keeps random
    weights (for listing layers and tests). ``frames``/``size`` override the config's
    clip length and crop size; ``mean``/``std`` (in [0, 1] units) its normalisation.
    The same as ``load_model("mmaction:" + config, checkpoint, ...)``.
    """
    from . import load_model

    return load_model(f"mmaction:{config}", checkpoint, class_names=class_names, trust_checkpoint=trust_checkpoint,
                      frames=frames, size=size, mean=mean, std=std, device=device)


def accepts(model: str) -> bool:
    return model.startswith("mmaction:") or model.endswith(".py")


SOURCE = ModelSource(name="mmaction", order=10, load=load, accepts=accepts,
                     spec="mmaction:CONFIG (an mmaction2 recognizer config) with a checkpoint")
