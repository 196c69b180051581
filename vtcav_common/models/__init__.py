"""Model sources behind one function, :func:`load_model`.

>>> loaded = load_model("r3d_18", "r3d_18_kinetics.pth")                   # doctest: +SKIP
>>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")  # doctest: +SKIP
>>> loaded = load_model(None, "model.pt2")                                 # doctest: +SKIP

``model`` is one of:

- a torchvision video architecture (``swin3d_t``, ``r3d_18``, ... see ``ARCHITECTURES``)
  with ``weights`` a local state dict;
- ``package.module:factory`` (any ``nn.Module`` factory), with an optional state dict;
- a TorchScript file or a ``torch.export`` program (``.pt2``), given as ``model`` or as
  ``weights`` with no ``model``;
- ``mmaction:<config>`` or a ``*.py`` mmaction2 config, with a checkpoint;
- ``None`` when the weights' sidecar (``<weights without suffix>.json``) names the model.

See docs/models.md for the sidecar, the class names and the checkpoint rules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import torch

from ..cli import warn
from ..errors import UsageError, VtcavError
from . import module_sources, torchvision_source
from .base import InputSpec, LoadedModel, file_sha256
from .checkpoint import (existing_file, is_exported_program, is_torchscript, read_checkpoint, read_class_names,
                         read_sidecar)
from .module_sources import spec_from_dict
from .torchvision_source import ARCHITECTURES

__all__ = ["load_model", "ARCHITECTURES", "LoadedModel", "InputSpec", "resolve_device"]

MMACTION_HINT = "install the extra: pip install vtcav[mmaction]"
SHORT_NAME_LIST = 32   # class names are stored in provenance as a list up to this many


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    return torch.device(device)


def load_model(model: str | None, weights: str | None, *, class_names: str | Sequence[str] | None = None,
               trust_checkpoint: bool = False, frames: int | None = None, size: int | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model named by ``model`` with ``weights``: eval mode, on ``device``."""
    device = resolve_device(device)
    weights_path = existing_file(weights) if weights else None
    sidecar = read_sidecar(weights_path)
    model = model or sidecar.get("model")
    overrides = dict(frames=frames, size=size, mean=mean, std=std)
    if model is None:
        if weights_path is None:
            raise UsageError("give --model (an architecture, package.module:factory, a TorchScript or .pt2 "
                             "file, or mmaction:CONFIG) and/or --weights")
        if not (is_exported_program(weights_path) or is_torchscript(weights_path)):
            raise UsageError(f"{weights_path}: a state dict needs --model (an architecture name such as "
                             f"r3d_18, or package.module:factory)")
        model, weights_path = str(weights_path), None

    if model.startswith("mmaction:") or model.endswith(".py"):
        loaded = _load_mmaction(model, weights_path, class_names, trust_checkpoint, overrides, device)
    elif model in ARCHITECTURES:
        loaded = _load_torchvision(model, weights_path, class_names, trust_checkpoint, overrides, sidecar)
    elif Path(model).exists() and not module_sources.is_factory(model):
        loaded = _load_file(existing_file(model, "model"), weights_path, class_names, overrides, sidecar)
    elif module_sources.is_factory(model):
        loaded = _load_factory(model, weights_path, class_names, trust_checkpoint, overrides, sidecar)
    else:
        raise UsageError(f"unknown model '{model}': expected one of {', '.join(ARCHITECTURES)}, "
                         f"package.module:factory, a TorchScript/.pt2 file, or mmaction:CONFIG")
    loaded.module.to(device).eval()
    return loaded


# --------------------------------------------------------------------------- sources
def _load_mmaction(model, weights_path, class_names, trust_checkpoint, overrides, device) -> LoadedModel:
    config = model[len("mmaction:"):] if model.startswith("mmaction:") else model
    try:
        from .mmaction_source import load_mmaction
    except ImportError as err:
        raise VtcavError(f"mmaction2 models need mmaction2 ({err}); {MMACTION_HINT}") from None
    names = read_class_names(class_names) if isinstance(class_names, (str, Path)) else class_names
    try:
        return load_mmaction(config, str(weights_path) if weights_path else None, class_names=names,
                             trust_checkpoint=trust_checkpoint, device=device, **overrides)
    except ImportError as err:
        raise VtcavError(f"mmaction2 models need mmaction2 ({err}); {MMACTION_HINT}") from None


def _load_torchvision(arch, weights_path, class_names, trust_checkpoint, overrides, sidecar) -> LoadedModel:
    if weights_path is None:
        raise UsageError(f"--model {arch} needs --weights: a local state dict (vtcav never downloads weights)")
    state = read_checkpoint(weights_path, trust_checkpoint)
    num_classes = torchvision_source.num_classes_of(arch, state, weights_path)
    spec = _spec(torchvision_source.default_input_spec(arch), sidecar, overrides)
    trained = torchvision_source.mvit_input_size(arch, state)
    if trained and not (overrides["frames"] or overrides["size"]):
        spec = spec.with_overrides(frames=trained[0], size=trained[1])   # MViT: the checkpoint decides
    torchvision_source.check_input_size(arch, spec, trained)
    module = torchvision_source.build_with_state(arch, num_classes, spec, state, weights_path)
    default_names = torchvision_source.kinetics400_names() if num_classes == 400 else None
    names = _class_names(class_names, sidecar, None, default_names, num_classes, weights_path)
    provenance = _provenance("torchvision", arch, weights_path, num_classes, names, spec,
                             torchvision_source.layouts_for(arch))
    return LoadedModel(module.eval(), spec, names, provenance)


def _load_factory(model, weights_path, class_names, trust_checkpoint, overrides, sidecar) -> LoadedModel:
    if weights_path is None:
        warn(f"--model {model} without --weights: using the factory's own parameters")
    module = module_sources.load_factory(model, weights_path, trust_checkpoint, sidecar.get("model_kwargs"))
    module.eval()
    told = bool(sidecar.get("input")) or bool(overrides["frames"] and overrides["size"])
    spec = _spec(module_sources.declared_spec(module) or _undeclared(model, quiet=told), sidecar, overrides)
    num_classes = _count_outputs(module, spec, model)
    names = _class_names(class_names, sidecar, getattr(module, "vtcav_class_names", None), None,
                         num_classes, weights_path or model)
    layouts = dict(getattr(module, "vtcav_activation_layouts", None) or {})
    provenance = _provenance("factory", model, weights_path, num_classes, names, spec, layouts,
                             state=None if weights_path else module.state_dict())
    return LoadedModel(module, spec, names, provenance)


def _load_file(path: Path, weights_path, class_names, overrides, sidecar) -> LoadedModel:
    """A TorchScript file or a torch.export program (it holds its own weights)."""
    if weights_path is not None and weights_path != path:
        raise UsageError(f"--model {path} is a complete model file; do not also give --weights")
    sidecar = sidecar or read_sidecar(path)
    fixed_batch = None
    if is_exported_program(path):
        module, shape = module_sources.load_exported(path)
        base = _spec(InputSpec(), sidecar, {})
        base = _spec_from_shape(base, shape)
        spec = _spec(base, {}, overrides)
        if shape and shape[0] is not None:
            fixed_batch = shape[0]
        source = "export"
        _warn_unset_normalisation(path, sidecar, overrides)
    elif is_torchscript(path):
        spec = _spec(InputSpec(), sidecar, overrides)
        _warn_unset_normalisation(path, sidecar, overrides, sized=True)
        module, why_not = module_sources.load_torchscript(path)
        if why_not:
            warn(f"{path}: cannot expose the layers of this TorchScript model ({why_not}); logits only. "
                 f"Export the model with torch.export.save (.pt2) to record layers")
        source = "torchscript"
    else:
        raise UsageError(f"--model {path}: not a TorchScript file or a torch.export program "
                         f"(for a state dict give an architecture or package.module:factory)")
    module.eval()
    loaded = LoadedModel(module, spec, [], {}, fixed_batch=fixed_batch)
    num_classes = _count_outputs(module, spec, str(path), fixed_batch)
    loaded.class_names = _class_names(class_names, sidecar, None, None, num_classes, path)
    loaded.provenance = _provenance(source, source, path, num_classes, loaded.class_names, spec,
                                    sidecar.get("activation_layouts") or {})
    return loaded


# --------------------------------------------------------------------------- helpers
def _undeclared(model: str, quiet: bool = False) -> InputSpec:
    if not quiet:
        warn(f"{model} declares no input spec (vtcav_input_spec); using {InputSpec().frames} frames of "
             f"{InputSpec().size[0]}x{InputSpec().size[1]}: pass --frames/--size/--mean/--std")
    return InputSpec()


def _warn_unset_normalisation(path: Path, sidecar: dict, overrides: dict, sized: bool = False) -> None:
    given = sidecar.get("input") or {}
    unset = [k for k in ("mean", "std") if k not in given and overrides.get(k) is None]
    if sized:
        unset += [k for k in ("frames", "size") if k not in given and overrides.get(k) is None]
    if unset:
        warn(f"{path}: {', '.join(unset)} not given (neither options nor a sidecar "
             f"{path.with_suffix('.json').name} say); using vtcav's defaults: pass --{' --'.join(unset)}")


def _spec(base: InputSpec, sidecar: dict, overrides: dict) -> InputSpec:
    """``base`` updated by the sidecar's "input", then by the user's overrides."""
    spec = base
    if sidecar.get("input"):
        spec = spec_from_dict({**base.to_dict(), **sidecar["input"]}, "sidecar")
    spec = spec.with_overrides(frames=overrides.get("frames"), size=overrides.get("size"))
    for key in ("mean", "std"):
        value = overrides.get(key)
        if value is not None:
            if len(value) != 3:
                raise UsageError(f"--{key} needs three numbers (R,G,B in [0, 1] units), got {len(value)}")
            spec = InputSpec(**{**spec.__dict__, key: tuple(float(v) for v in value)})
    return spec


def _spec_from_shape(spec: InputSpec, shape: tuple[int | None, ...] | None) -> InputSpec:
    """Frames and size from an exported program's static input shape."""
    if not shape or len(shape) != 5:
        return spec
    t, h, w = (shape[2], shape[3], shape[4]) if spec.layout == "NCTHW" else (shape[1], shape[3], shape[4])
    fields = dict(spec.__dict__)
    if t is not None:
        fields["frames"] = t
    if h is not None and w is not None:
        fields["size"] = (h, w)
    return InputSpec(**fields)


def _count_outputs(module: torch.nn.Module, spec: InputSpec, what: str, batch: int | None = None) -> int:
    """The number of classes, from one forward of a dummy clip."""
    x = torch.zeros(batch or 1, 3, spec.frames, *spec.size)
    if spec.layout == "NTCHW":
        x = x.permute(0, 2, 1, 3, 4).contiguous()
    try:
        with torch.no_grad():
            logits = module(x)
    except Exception as err:  # any failure here means the input contract is wrong
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise VtcavError(f"model {what} fails on a {spec.frames}x{spec.size[0]}x{spec.size[1]} clip "
                         f"({first}); check --frames/--size") from None
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise VtcavError(f"model {what} must return N x K logits, returned "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    return int(logits.shape[1])


def _class_names(given, sidecar: dict, declared, default, num_classes: int, where) -> list[str]:
    """The user's names file/list > the sidecar's > the module's > the architecture's default."""
    if isinstance(given, (str, Path)):
        source, names = str(given), read_class_names(given)
    elif given is not None:
        source, names = "--class-names", [str(n) for n in given]
    elif sidecar.get("class_names"):
        source, names = "sidecar", [str(n) for n in sidecar["class_names"]]
    elif declared:
        source, names = "the model's vtcav_class_names", [str(n) for n in declared]
    elif default:
        source, names = "default", list(default)
    else:
        warn(f"{where}: no class names for its {num_classes} classes; calling them class_0.. "
             f"(pass --class-names FILE, one name a line)")
        return [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise VtcavError(f"{source}: {len(names)} class names, but the model {where} has {num_classes} classes")
    return names


def _provenance(source: str, arch: str, weights_path: Path | None, num_classes: int, names: list[str],
                spec: InputSpec, layouts: dict, state: dict | None = None) -> dict:
    names_sha = hashlib.sha256("\n".join(names).encode()).hexdigest()
    if weights_path is not None:
        weights, weights_sha = weights_path.name, file_sha256(weights_path)
    else:  # a factory's own parameters: identify them by their values
        weights, weights_sha = None, _state_sha256(state or {})
    record = {"source": source, "arch": arch, "weights": weights, "weights_sha256": weights_sha,
              "num_classes": num_classes, "class_names_sha256": names_sha, "input": spec.to_dict()}
    if len(names) <= SHORT_NAME_LIST:
        record["class_names"] = names
    if layouts:
        record["activation_layouts"] = layouts
    return record


def _state_sha256(state: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
