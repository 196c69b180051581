"""What every model source shares: device choice, the input contract, class names, provenance.

A source (see :mod:`.registry`) builds a module its own way, then calls these so that
every source resolves the user's overrides, names classes and records where the model
came from in one way. The order of precedence is the same everywhere:

- input contract: the source's default < the weights' sidecar < ``--frames/--size/--mean/--std``;
- class names: the user's (``--class-names``) first, then the sidecar's, then what the
  model or checkpoint declares, then the architecture's default (Kinetics-400 for
  400-class heads), else ``class_0..`` with a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from ..core.errors import UsageError, VtcavError
from ..core.messages import warn
from ..core.files import file_sha256
from .base import InputSpec
from .checkpoint import read_class_names

SHORT_NAME_LIST = 32   # class names are stored in provenance as a list up to this many


@dataclass
class LoadRequest:
    """What the user asked for, as every source receives it."""

    model: str
    weights: Path | None = None
    sidecar: dict = field(default_factory=dict)
    class_names: str | Path | Sequence[str] | None = None
    trust_checkpoint: bool = False
    frames: int | None = None
    size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    device: torch.device = torch.device("cpu")
    # False: the caller only needs the architecture (--list-layers); sources that need
    # weights to exist may then build with random ones.
    need_weights: bool = True

    @property
    def overrides(self) -> dict:
        return dict(frames=self.frames, size=self.size, mean=self.mean, std=self.std)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else the CPU; asking for CUDA without one is a usage error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device takes auto, cpu or cuda[:N], got '{device}'") from None


def spec_from_dict(record: dict, where: str) -> InputSpec:
    """An InputSpec from a sidecar's or a module's dict (``size`` an int or two)."""
    try:
        size = record.get("size", (112, 112))
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        fields = {k: record[k] for k in ("frames", "layout", "channel_order") if k in record}
        for key in ("mean", "std"):
            if key in record:
                fields[key] = tuple(float(v) for v in record[key])
        spec = InputSpec(size=size, **fields)
    except (TypeError, ValueError, IndexError, OverflowError) as err:
        raise VtcavError(f"{where}: bad input spec ({err})") from None
    problem = spec_problem(spec)
    if problem:
        raise VtcavError(f"{where}: bad input spec ({problem})")
    return spec


def spec_problem(spec: InputSpec) -> str:
    """What makes ``spec`` unusable ('' if nothing): a zero or non-finite std divides the
    clip into NaN, which the model then turns into NaN activations with exit 0."""
    import math

    from ..core.files import check_memory
    from ..core.parsing import MAX_SIDE

    if not all(math.isfinite(v) for v in (*spec.mean, *spec.std)):
        return f"mean {list(spec.mean)} and std {list(spec.std)} must be finite numbers"
    if min(spec.std) <= 0:
        return f"std {list(spec.std)} must be positive (it divides the pixels)"
    if not 1 <= spec.frames <= 10_000 or not all(1 <= side <= MAX_SIDE for side in spec.size):
        return f"{spec.frames} frames of {spec.size[0]}x{spec.size[1]}: frames 1-10000, sides 1-{MAX_SIDE}"
    check_memory(spec.frames * spec.size[0] * spec.size[1] * 3 * 4 * 4, f"input of {spec.frames} frames of "
                                                                           f"{spec.size[0]}x{spec.size[1]}")
    return ""


def input_spec(base: InputSpec, sidecar: dict, overrides: dict) -> InputSpec:
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
            spec = replace(spec, **{key: tuple(float(v) for v in value)})
    problem = spec_problem(spec)
    if problem:
        raise UsageError(f"input spec: {problem}")
    return spec


def warn_unset_input(path: Path, sidecar: dict, overrides: dict, sized: bool = False) -> None:
    """Complete model files do not say how to normalise (or size) their input: say so once."""
    given = sidecar.get("input") or {}
    unset = [k for k in ("mean", "std") if k not in given and overrides.get(k) is None]
    if sized:
        unset += [k for k in ("frames", "size") if k not in given and overrides.get(k) is None]
    if unset:
        warn(f"{path}: {', '.join(unset)} not given (neither options nor a sidecar "
             f"{path.with_suffix('.json').name} say); using vtcav's defaults: pass --{' --'.join(unset)}")


def count_outputs(module: torch.nn.Module, spec: InputSpec, what: str, batch: int | None = None) -> int:
    """The number of classes, from one forward of a dummy clip."""
    x = torch.zeros(batch or 1, 3, spec.frames, *spec.size, device=_device_of(module))
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


def _device_of(module: torch.nn.Module) -> torch.device:
    tensor = next(iter(module.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def class_names(request: LoadRequest, num_classes: int, where, declared: Sequence[str] | None = None,
                default: Sequence[str] | None = None, declared_by: str = "the model's vtcav_class_names"
                ) -> list[str]:
    """The user's names (file or list) > the sidecar's > the model's own > the architecture's default."""
    given, sidecar = request.class_names, request.sidecar
    if isinstance(given, (str, Path)):
        source, names = str(given), read_class_names(given)
    elif given is not None:
        source, names = "--class-names", [str(n) for n in given]
    elif sidecar.get("class_names"):
        source, names = "sidecar", [str(n) for n in sidecar["class_names"]]
    elif declared:
        source, names = declared_by, [str(n) for n in declared]
    elif default and len(default) == num_classes:
        source, names = "default", list(default)
    else:
        warn(f"{where}: no class names for its {num_classes} classes; calling them class_0.. "
             f"(pass --class-names FILE, one name a line)")
        return [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise VtcavError(f"{source}: {len(names)} class names, but the model {where} has {num_classes} classes")
    return names


def provenance(source: str, arch: str, weights_path: Path | None, num_classes: int, names: list[str],
               spec: InputSpec, layouts: dict | None = None, state: dict | None = None, **extra) -> dict:
    """The record every file computed with the model copies (and combining tools compare).

    Weights are identified by the checkpoint file's hash, or, for a model running on its
    own parameters (a factory without --weights, random weights for --list-layers), by
    the hash of those parameters' values.
    """
    names_sha = hashlib.sha256("\n".join(names).encode()).hexdigest()
    if weights_path is not None:
        weights, weights_sha = weights_path.name, file_sha256(weights_path)
    else:
        weights, weights_sha = None, state_sha256(state or {})
    record = {"source": source, "arch": arch, "weights": weights, "weights_sha256": weights_sha,
              "num_classes": num_classes, "class_names_sha256": names_sha, "input": spec.to_dict()}
    record.update(extra)
    if len(names) <= SHORT_NAME_LIST:
        record["class_names"] = names
    if layouts:
        record["activation_layouts"] = dict(layouts)
    return record


def state_sha256(state: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
