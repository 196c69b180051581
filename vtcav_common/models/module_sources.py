"""Model sources other than torchvision's zoo: factories, TorchScript, torch.export programs.

- ``package.module:factory``: any callable returning an ``nn.Module``; the module may
  declare ``vtcav_input_spec`` (an :class:`InputSpec` or its dict), ``vtcav_class_names``
  and ``vtcav_activation_layouts`` (layer name or pattern -> ``"NCTHW"``/``"NTHWC"``/...).
  A state dict from ``--weights`` is loaded strictly.
- TorchScript (``torch.jit.save``; deprecated by PyTorch, still common): TorchScript modules
  cannot take forward hooks, so the script is wrapped in a
  :class:`~vtcav_common.models.torchscript_probe.TorchScriptProbe`, which keeps the
  original layer names and makes hooks (and gradients) work. If that fails the model
  still gives logits, and asking for layers says why not.
- ``torch.export`` programs (``.pt2``): unflattened into their module tree; the program's
  input shape fixes frames and size (and the batch size when it was exported static).
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError, VtcavError
from .base import InputSpec
from .checkpoint import load_strictly, read_checkpoint
from .torchscript_probe import TorchScriptProbe

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(model: str) -> bool:
    return bool(FACTORY_PATTERN.match(model))


def call_factory(model: str, kwargs: dict | None = None) -> nn.Module:
    module_name, _, attribute = model.partition(":")
    try:
        package = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"--model {model}: cannot import {module_name} ({err})") from None
    factory = getattr(package, attribute, None)
    if not callable(factory):
        raise UsageError(f"--model {model}: {module_name} has no callable '{attribute}'")
    try:
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
    return spec_from_dict(spec, f"{type(module).__name__}.vtcav_input_spec")


def spec_from_dict(record: dict, where: str) -> InputSpec:
    try:
        size = record.get("size", (112, 112))
        size = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
        fields = {k: record[k] for k in ("frames", "layout", "channel_order") if k in record}
        for key in ("mean", "std"):
            if key in record:
                fields[key] = tuple(float(v) for v in record[key])
        return InputSpec(size=size, **fields)
    except (TypeError, ValueError, IndexError) as err:
        raise VtcavError(f"{where}: bad input spec ({err})") from None


def load_factory(model: str, weights: Path | None, trust_checkpoint: bool, kwargs: dict | None) -> nn.Module:
    module = call_factory(model, kwargs)
    if weights is not None:
        load_strictly(module, read_checkpoint(weights, trust_checkpoint), weights, model)
    return module


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


def load_exported(path: Path) -> tuple[nn.Module, tuple[int, ...] | None]:
    """A ``torch.export`` program as an unflattened module, and its static input shape if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.load(str(path))
        except Exception as err:  # serialisation errors have many types
            raise VtcavError(f"{path}: not a loadable torch.export program "
                             f"({str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__})"
                             ) from None
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
