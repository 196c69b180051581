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
the caller trusts it. Note that an mmaction config is Python code that is executed when
read: use configs you trust (the packaged ones, or your own).
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import importlib.util
import json
import sys
import types
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..cli import warn
from ..errors import UsageError, VtcavError
from .base import InputSpec, LoadedModel, file_sha256

EXTRA_MISSING = "mmaction2 extra not installed (run shell/install_mmaction.sh or pip install 'vtcav[mmaction]')"

SHORT_NAME_LIST = 32        # class names are copied into the provenance up to this many

# Config fallbacks when a pipeline does not say (mmaction's own Kinetics defaults).
DEFAULT_FRAMES = 32
DEFAULT_SIZE = 224
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)

# Pipeline steps that carry the clip length / the crop size the model was tested with.
_SAMPLERS = ("SampleFrames", "UniformSample", "DenseSampleFrames", "UntrimmedSampleFrames")
_CROPS = ("CenterCrop", "ThreeCrop", "TenCrop")


# ----------------------------------------------------------------------------- import

def _stand_in_for_missing_drn() -> None:
    """Register an empty ``mmaction.models.localizers.drn`` if the installed wheel lacks it.

    mmaction2 1.2.0's wheel ships without that sub-package, yet
    ``mmaction/models/localizers/__init__.py`` imports ``DRN`` from it, and every
    ``import mmaction.models`` (so every ``MODELS.build``) runs that file. DRN is a
    temporal-grounding localizer that vtcav never builds; the stand-in class refuses
    to be built rather than pretending to work.
    """
    name = "mmaction.models.localizers.drn"
    # Look on disk: asking the import system would import mmaction.models, the failing import.
    mmaction_dir = Path(importlib.util.find_spec("mmaction").origin).parent
    if name in sys.modules or (mmaction_dir / "models" / "localizers" / "drn").exists():
        return

    class DRN(nn.Module):
        def __init__(self, *args, **kwargs):
            raise VtcavError("mmaction2's DRN localizer is missing from the installed mmaction2 wheel")

    package = types.ModuleType(name)
    package.__path__ = []                       # a package, so ``drn.drn`` can be imported
    module = types.ModuleType(name + ".drn")
    module.DRN = DRN
    package.drn = module
    sys.modules[name] = package
    sys.modules[name + ".drn"] = module


@functools.lru_cache(maxsize=None)
def import_mmaction():
    """Import mmaction2 with its models registered; a clear error when the extra is absent."""
    try:
        import mmaction  # noqa: F401
        _stand_in_for_missing_drn()
        with warnings.catch_warnings():
            # mmcv-lite lacks the compiled ops; mmcv says so at import. vtcav does not use them.
            warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
            from mmaction.utils import register_all_modules
            register_all_modules(init_default_scope=True)
    except ImportError as exc:                   # mmaction2 or one of its own imports is missing
        raise VtcavError(f"{EXTRA_MISSING}: {exc}") from None
    return mmaction


# ----------------------------------------------------------------------------- config

def packaged_configs_root() -> Path:
    """Where the mmaction2 wheel keeps its configs (``mmaction/.mim/configs``)."""
    mmaction = import_mmaction()
    return Path(mmaction.__file__).parent / ".mim" / "configs"


def resolve_config(config: str) -> Path:
    """A config path, a path relative to mmaction2's packaged configs, or a unique file name there."""
    given = Path(config).expanduser()
    if given.is_file():
        return given
    root = packaged_configs_root()
    relative = config if config.endswith(".py") else config + ".py"
    if (root / relative).is_file():
        return root / relative
    if Path(relative).name != relative:         # a path that is not there: no guessing by name
        by_name = []
    else:
        by_name = sorted(root.rglob(relative))
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        choices = ", ".join(str(p.relative_to(root)) for p in by_name[:5])
        raise UsageError(f"mmaction config '{config}' is ambiguous: {choices}")
    names = [str(p.relative_to(root)) for p in root.rglob("*.py") if not p.name.startswith("_")]
    close = difflib.get_close_matches(relative, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (packaged configs are under {root})"
    raise UsageError(f"mmaction config '{config}' not found as a file nor among mmaction2's configs{hint}")


def read_config(path: Path):
    """Parse a config file (mmengine executes it) and switch off every pretrained download."""
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(str(path))
    except Exception as exc:                     # a config is code: any error is the file's
        raise VtcavError(f"{path}: cannot read mmaction config: {exc}") from None
    if "model" not in cfg:
        raise VtcavError(f"{path}: not a model config (no 'model' entry)")
    _disable_pretrained(cfg.model)
    return cfg


def _disable_pretrained(model_cfg) -> None:
    """Weights come only from the user's checkpoint: drop backbone URLs and init_cfg loaders."""
    for part in ("backbone", "neck", "cls_head"):
        sub = model_cfg.get(part)
        if not isinstance(sub, dict):
            continue
        if "pretrained" in sub:
            sub["pretrained"] = None
        if "pretrained2d" in sub:
            sub["pretrained2d"] = False          # would inflate 2D weights from `pretrained`
        init_cfg = sub.get("init_cfg")
        if isinstance(init_cfg, dict) and init_cfg.get("type") == "Pretrained":
            sub["init_cfg"] = None


def model_config_sha256(cfg) -> str:
    canonical = json.dumps(cfg.model.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find_step(pipeline, types_: Sequence[str]):
    for step in pipeline or []:
        if isinstance(step, dict) and step.get("type") in types_:
            return step
    return None


def input_spec_from_config(cfg) -> tuple[InputSpec, dict]:
    """The InputSpec a config implies, and the sampling details InputSpec cannot hold.

    Mean/std come from ``model.data_preprocessor`` (0-255 units, converted to [0, 1]);
    clip length and crop size from the test pipeline (the validation one if absent).
    """
    pre = cfg.model.get("data_preprocessor") or {}
    fmt = pre.get("format_shape", "NCTHW")
    if fmt != "NCTHW":
        raise UsageError(f"mmaction recognizers with format_shape {fmt!r} are not supported "
                         "(vtcav takes 3D recognizers: NCTHW)")
    mean = tuple(float(v) / 255.0 for v in (pre.get("mean") or IMAGENET_MEAN_255))
    std = tuple(float(v) / 255.0 for v in (pre.get("std") or IMAGENET_STD_255))

    pipelines = [cfg.get("test_pipeline"), cfg.get("val_pipeline")]
    sampler = next((s for s in (_find_step(p, _SAMPLERS) for p in pipelines) if s), None) or {}
    crop = next((s for s in (_find_step(p, _CROPS) for p in pipelines) if s), None) or {}
    frames = int(sampler.get("clip_len", DEFAULT_FRAMES))
    crop_size = crop.get("crop_size", DEFAULT_SIZE)
    size = (int(crop_size), int(crop_size)) if isinstance(crop_size, int) else tuple(int(v) for v in crop_size)

    sampling = {"frame_interval": int(sampler.get("frame_interval", 1)),
                "num_clips": int(sampler.get("num_clips", 1)),
                "test_crop": crop.get("type", "none")}
    # vtcav feeds RGB frames; mmaction decodes videos to RGB too (``to_rgb`` only flips BGR frames).
    spec = InputSpec(frames=frames, size=size, mean=mean, std=std, layout="NCTHW", channel_order="RGB")
    return spec, sampling


def with_normalisation(spec: InputSpec, mean: Sequence[float] | None, std: Sequence[float] | None) -> InputSpec:
    """``spec`` with the caller's mean/std (three numbers each, [0, 1] units) where given."""
    values = {}
    for key, given in (("mean", mean), ("std", std)):
        if given is not None:
            if len(given) != 3:
                raise UsageError(f"--{key} needs three numbers (R,G,B in [0, 1] units), got {len(given)}")
            values[key] = tuple(float(v) for v in given)
    return replace(spec, **values) if values else spec


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

def read_state_dict(path: Path, trust_checkpoint: bool) -> tuple[dict, dict]:
    """A checkpoint's state dict and meta; mmaction's ``{"state_dict", "meta"}`` or a bare dict."""
    if not path.is_file():
        raise VtcavError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as exc:
        if not trust_checkpoint and "weights_only" in str(exc):
            raise VtcavError(f"{path}: the checkpoint holds Python objects besides tensors; load it only "
                             "if you trust its source (--trust-checkpoint)") from None
        raise VtcavError(f"{path}: cannot read checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(payload, dict):
        raise VtcavError(f"{path}: not a state-dict checkpoint (found {type(payload).__name__})")
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VtcavError(f"{path}: no state dict of tensors in the checkpoint")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}      # saved from DataParallel
    # mmaction's preprocessor keeps mean/std out of the state dict, but older saves may not.
    state = {k: v for k, v in state.items() if not k.startswith("data_preprocessor.")}
    return state, meta


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


# ----------------------------------------------------------------------------- classes

def kinetics400_classes() -> list[str]:
    """Kinetics-400 names in label order (alphabetical, as mmaction's label_map_k400.txt)."""
    from torchvision.models.video import R3D_18_Weights
    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def resolve_class_names(class_names, num_classes: int, meta: dict, checkpoint: Path | None) -> list[str]:
    """Names from the caller (list or names file) > checkpoint meta > Kinetics-400 when K = 400."""
    if isinstance(class_names, (str, Path)):
        names_file = Path(class_names)
        if not names_file.is_file():
            raise UsageError(f"{names_file}: class-names file not found")
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        origin = str(names_file)
    elif class_names is not None:
        names, origin = [str(n) for n in class_names], "the given class names"
    elif isinstance(meta.get("dataset_meta"), dict) and meta["dataset_meta"].get("classes"):
        names, origin = [str(n) for n in meta["dataset_meta"]["classes"]], f"{checkpoint} (meta)"
    elif num_classes == 400:
        return kinetics400_classes()
    else:
        raise UsageError(f"the model has {num_classes} classes: give a class-names file "
                         "(one name a line, in label order)")
    if len(names) != num_classes:
        raise UsageError(f"{origin}: {len(names)} class names for a model with {num_classes} classes")
    return names


# ----------------------------------------------------------------------------- entry point

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
    """
    import_mmaction()
    config_path = resolve_config(config)
    cfg = read_config(config_path)
    spec, sampling = input_spec_from_config(cfg)
    spec = with_normalisation(spec.with_overrides(frames=frames, size=size), mean, std)

    module = build_classifier(cfg, config_path)
    meta: dict = {}
    weights_path = Path(checkpoint).expanduser() if checkpoint else None
    if weights_path is not None:
        state, meta = read_state_dict(weights_path, trust_checkpoint)
        check_fits(state, module, weights_path, config_path)
        module.load_state_dict(state, strict=True)
    else:
        warn(f"mmaction:{config} without a checkpoint: random weights (good for listing layers, "
             "not for explanations)")

    num_classes = int(module.cls_head.num_classes)
    backbone_type = cfg.model.backbone.get("type", "?")
    names = resolve_class_names(class_names, num_classes, meta, weights_path)
    provenance = {
        "source": "mmaction",
        "arch": f"mmaction:{config_path.stem}",
        "config": str(config),
        # The merged model section (with its _base_ files), as built: what the weights must fit.
        "config_sha256": model_config_sha256(cfg),
        "backbone": backbone_type,
        "weights": weights_path.name if weights_path else None,
        "weights_sha256": file_sha256(weights_path) if weights_path else None,
        "num_classes": num_classes,
        "class_names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "input": spec.to_dict(),
        "mmaction_version": import_mmaction().__version__,
        "sampling": sampling,
    }
    if backbone_type == "SwinTransformer3D":
        provenance["activation_layouts"] = dict(SWIN_LAYOUTS)
    if len(names) <= SHORT_NAME_LIST:
        provenance["class_names"] = names
    return LoadedModel(module=module.to(_device(device)).eval(), input_spec=spec, class_names=names,
                       provenance=provenance)


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
