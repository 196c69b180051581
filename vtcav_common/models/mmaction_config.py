"""mmaction2 configs for the mmaction model source: importing mmaction2, finding and reading configs.

A config is a path, a path relative to mmaction2's packaged configs, or a unique packaged
file name (``swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb``). Reading
one switches off every pretrained download (weights come only from the user's
checkpoint), and :func:`input_spec_from_config` turns its preprocessor and test pipeline
into vtcav's :class:`InputSpec`. An mmaction config is Python code that is executed when
read: use configs you trust (the packaged ones, or your own).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import json
import sys
import types
import warnings
from pathlib import Path
from typing import Sequence

from torch import nn

from ..core.errors import UsageError, VtcavError
from .base import InputSpec

EXTRA_MISSING = "mmaction2 extra not installed (run shell/install_mmaction.sh or pip install 'vtcav[mmaction]')"

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


def _stand_in_for_incompatible_multimodal() -> None:
    """mmaction2 1.2.0 imports its multimodal models (VindLU) whenever ``transformers`` is
    installed, and they need transformers 4's API and timm: with transformers 5 (which vtcav's
    own source of VideoMAE, TimeSformer and ViViT uses) that import fails and takes every
    mmaction2 model down with it. vtcav explains recognizers, never VindLU's retrieval models,
    so an empty package stands in for ``mmaction.models.multimodal`` where it cannot import."""
    import importlib.metadata
    import importlib.util

    name = "mmaction.models.multimodal"
    if name in sys.modules or importlib.util.find_spec("transformers") is None:
        return
    try:
        major = int(importlib.metadata.version("transformers").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        major = 5
    if major < 5 and importlib.util.find_spec("timm") is not None:
        return                                  # VindLU's own requirements: it imports
    package = types.ModuleType(name)
    package.__path__ = []
    sys.modules[name] = package


@functools.lru_cache(maxsize=None)
def import_mmaction():
    """Import mmaction2 with its models registered; a clear error when the extra is absent."""
    try:
        import mmaction  # noqa: F401
        _stand_in_for_missing_drn()
        _stand_in_for_incompatible_multimodal()
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
