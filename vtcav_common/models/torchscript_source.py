"""TorchScript files (``torch.jit.save``; deprecated by PyTorch, still common) as a model source.

TorchScript modules cannot take forward hooks, so the script is wrapped in a
:class:`~vtcav_common.models.torchscript_probe.TorchScriptProbe`, which keeps the
original layer names and makes hooks (and gradients) work. If that fails the model
still gives logits, and asking for layers says why not. The file holds its own weights;
how to size and normalise its input comes from a sidecar ``<file>.json`` or the options.
No torchvision is imported, whatever the script was built from.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError
from ..core.messages import warn
from . import common
from .base import InputSpec, LoadedModel
from .checkpoint import existing_file, is_exported_program, is_torchscript, read_sidecar
from .registry import ModelSource
from .torchscript_probe import TorchScriptProbe


def accepts(model: str) -> bool:
    path = Path(model).expanduser()
    return path.is_file() and not is_exported_program(path) and is_torchscript(path)


def load_torchscript(path: Path) -> tuple[nn.Module, str | None]:
    """The TorchScript file as a hookable module; (module, None) or (script module, why not hookable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            script = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise VtcavError(f"{path}: not a loadable TorchScript file ({str(err).splitlines()[0][:160]})") from None
    try:
        return TorchScriptProbe(script), None
    except Exception as err:  # TorchScript internals vary: fall back to logits only, and say why
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        return script, reason


def complete_file(request: common.LoadRequest) -> tuple[Path, dict]:
    """The model file (it holds its weights, so --weights must not name another) and its sidecar."""
    path = existing_file(request.model, "model")
    if request.weights is not None and request.weights != path:
        raise UsageError(f"--model {path} is a complete model file; do not also give --weights")
    return path, request.sidecar or read_sidecar(path)


def load(request: common.LoadRequest) -> LoadedModel:
    path, sidecar = complete_file(request)
    request.sidecar = sidecar
    spec = common.input_spec(InputSpec(), sidecar, request.overrides)
    common.warn_unset_input(path, sidecar, request.overrides, sized=True)
    module, why_not = load_torchscript(path)
    if why_not:
        warn(f"{path}: cannot expose the layers of this TorchScript model ({why_not}); logits only. "
             f"Export the model with torch.export.save (.pt2) to record layers")
    module.eval()
    num_classes = common.count_outputs(module, spec, str(path))
    names = common.class_names(request, num_classes, path)
    provenance = common.provenance("torchscript", "torchscript", path, num_classes, names, spec,
                                   sidecar.get("activation_layouts") or {})
    return LoadedModel(module, spec, names, provenance, usual_layers=sidecar.get("usual_layers"))


SOURCE = ModelSource(name="torchscript", order=30, load=load, accepts=accepts,
                     spec="a TorchScript file (torch.jit.save)")
