"""``package.module:factory`` as a model source: any callable that returns an ``nn.Module``.

The module may declare, as attributes, ``vtcav_input_spec`` (an :class:`InputSpec` or its
dict), ``vtcav_class_names``, ``vtcav_activation_layouts`` (layer name or pattern ->
``"NCTHW"``/``"NTHWC"``/...) and ``vtcav_usual_layers`` (the layers explained when the
user names none). A state dict from ``--weights`` is loaded strictly; without one the
factory's own parameters are used (and identified by their values in provenance).
A sidecar's ``model_kwargs`` are passed to the factory.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from torch import nn

from ..core.errors import UsageError
from ..core.messages import warn
from . import common
from .base import InputSpec, LoadedModel
from .checkpoint import load_strictly, read_checkpoint
from .registry import ModelSource

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(model: str) -> bool:
    return bool(FACTORY_PATTERN.match(model)) and not Path(model).exists()


def call_factory(model: str, kwargs: dict | None = None) -> nn.Module:
    module_name, _, attribute = model.partition(":")
    try:
        package = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"--model {model}: cannot import {module_name} ({err})") from None
    factory = getattr(package, attribute, None)
    if not callable(factory):
        raise UsageError(f"--model {model}: {module_name} has no callable '{attribute}'")
    import torch

    try:
        # Seeded, so a factory model without --weights has the same parameters (and weights
        # hash) on every call; fork_rng leaves the caller's random state as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = factory(**(kwargs or {}))
    except TypeError as err:
        raise UsageError(f"--model {model}: calling the factory failed ({err})") from None
    if not isinstance(module, nn.Module):
        raise UsageError(f"--model {model}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    return module


def declared_spec(module: nn.Module) -> InputSpec | None:
    spec = getattr(module, "vtcav_input_spec", None)
    if spec is None or isinstance(spec, InputSpec):
        return spec
    return common.spec_from_dict(spec, f"{type(module).__name__}.vtcav_input_spec")


def load(request: common.LoadRequest) -> LoadedModel:
    model, weights_path = request.model, request.weights
    if weights_path is None and request.need_weights:
        warn(f"--model {model} without --weights: using the factory's own parameters")
    module = call_factory(model, request.sidecar.get("model_kwargs"))
    if weights_path is not None:
        load_strictly(module, read_checkpoint(weights_path, request.trust_checkpoint), weights_path, model)
    module.eval()
    told = bool(request.sidecar.get("input")) or bool(request.frames and request.size)
    base = declared_spec(module)
    if base is None:
        base = InputSpec()
        if not told:
            warn(f"{model} declares no input spec (vtcav_input_spec); using {base.frames} frames of "
                 f"{base.size[0]}x{base.size[1]}: pass --frames/--size/--mean/--std")
    spec = common.input_spec(base, request.sidecar, request.overrides)
    num_classes = common.count_outputs(module, spec, model)
    names = common.class_names(request, num_classes, weights_path or model,
                               declared=getattr(module, "vtcav_class_names", None))
    layouts = dict(getattr(module, "vtcav_activation_layouts", None) or {})
    provenance = common.provenance("factory", model, weights_path, num_classes, names, spec, layouts,
                                   state=None if weights_path else module.state_dict())
    usual = getattr(module, "vtcav_usual_layers", None)
    return LoadedModel(module, spec, names, provenance, usual_layers=list(usual) if usual else None)


SOURCE = ModelSource(name="factory", order=50, load=load, accepts=is_factory,
                     spec="package.module:factory (an nn.Module factory) with an optional state dict")
