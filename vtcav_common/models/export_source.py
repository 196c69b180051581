"""``torch.export`` programs (``.pt2``, ``torch.export.save``) as a model source.

The program is unflattened into its module tree (the original layer names, hookable);
its input shape fixes frames and size, and the batch size when it was exported static
(callers then pad the last batch up to it). Normalisation comes from a sidecar
``<file>.json`` or the options.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..core.errors import VtcavError
from . import common
from .base import InputSpec, LoadedModel
from .checkpoint import is_exported_program
from .registry import ModelSource
from .torchscript_source import complete_file


def accepts(model: str) -> bool:
    path = Path(model).expanduser()
    return path.is_file() and is_exported_program(path)


def load_exported(path: Path) -> tuple[nn.Module, tuple[int | None, ...] | None]:
    """A ``torch.export`` program as an unflattened module, and its static input shape if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.load(str(path))
        except Exception as err:  # serialisation errors have many types
            first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise VtcavError(f"{path}: not a loadable torch.export program ({first})") from None
        module = torch.export.unflatten(program)
    return module, exported_input_shape(program)


def exported_input_shape(program) -> tuple[int | None, ...] | None:
    """The first user input's shape; symbolic (dynamic) dimensions are None."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            if value is None or not hasattr(value, "shape"):
                return None
            return tuple(int(d) if isinstance(d, int) else None for d in value.shape)
    return None


def spec_from_shape(spec: InputSpec, shape: tuple[int | None, ...] | None) -> InputSpec:
    """Frames and size from an exported program's static input shape."""
    if not shape or len(shape) != 5:
        return spec
    t, h, w = (shape[2], shape[3], shape[4]) if spec.layout == "NCTHW" else (shape[1], shape[3], shape[4])
    if t is not None:
        spec = replace(spec, frames=t)
    if h is not None and w is not None:
        spec = replace(spec, size=(h, w))
    return spec


def load(request: common.LoadRequest) -> LoadedModel:
    path, sidecar = complete_file(request)
    request.sidecar = sidecar
    module, shape = load_exported(path)
    base = spec_from_shape(common.input_spec(InputSpec(), sidecar, {}), shape)
    spec = common.input_spec(base, {}, request.overrides)
    fixed_batch = shape[0] if shape and shape[0] is not None else None
    common.warn_unset_input(path, sidecar, request.overrides)
    module.eval()
    num_classes = common.count_outputs(module, spec, str(path), fixed_batch)
    names = common.class_names(request, num_classes, path)
    provenance = common.provenance("export", "export", path, num_classes, names, spec,
                                   sidecar.get("activation_layouts") or {})
    return LoadedModel(module, spec, names, provenance, fixed_batch=fixed_batch,
                       usual_layers=sidecar.get("usual_layers"))


SOURCE = ModelSource(name="export", order=30, load=load, accepts=accepts,
                     spec="a torch.export program (.pt2)")
