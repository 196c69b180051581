"""Model sources behind one function, :func:`load_model`.

>>> loaded = load_model("r3d_18", "r3d_18_kinetics.pth")                   # doctest: +SKIP
>>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")  # doctest: +SKIP
>>> loaded = load_model(None, "model.pt2")                                 # doctest: +SKIP

``model`` is one of (each a source in :mod:`.registry`, one file ``*_source.py`` each):

- a torchvision video architecture (``swin3d_t``, ``r3d_18``, ... see ``ARCHITECTURES``)
  with ``weights`` a local state dict;
- ``package.module:factory`` (any ``nn.Module`` factory), with an optional state dict;
- a TorchScript file or a ``torch.export`` program (``.pt2``), given as ``model`` or as
  ``weights`` with no ``model``;
- ``mmaction:<config>`` or a ``*.py`` mmaction2 config, with a checkpoint;
- ``None`` when the weights' sidecar (``<weights without suffix>.json``) names the model.

Importing this package is cheap: torch (and torchvision, mmaction2) are imported only
when a model is loaded, so commands answer ``--help`` without them.
See docs/models.md for the sidecar, the class names and the checkpoint rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .base import LoadedModel

__all__ = ["load_model", "ARCHITECTURES", "LoadedModel", "InputSpec", "resolve_device"]

_LAZY = {"ARCHITECTURES": ".torchvision_source", "LoadedModel": ".base", "InputSpec": ".base",
         "resolve_device": ".common"}


def __getattr__(name: str):
    """The package's public names, imported on first use (they pull in torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(model: str | None, weights: str | None, *, class_names: str | Sequence[str] | None = None,
               trust_checkpoint: bool = False, frames: int | None = None, size: int | None = None,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               device: "str | torch.device" = "cpu", need_weights: bool = True) -> "LoadedModel":
    """Build the model named by ``model`` with ``weights``: eval mode, on ``device``.

    ``need_weights=False`` is for questions the architecture alone answers (its layers):
    sources that otherwise require a checkpoint then build with random weights.
    """
    from ..core.errors import UsageError
    from .checkpoint import existing_file, is_exported_program, is_torchscript, read_sidecar, sidecar_model
    from .common import LoadRequest, resolve_device
    from .registry import source_for
    from .torchvision_source import ARCHITECTURES

    request = LoadRequest(model=model or "", weights=existing_file(weights) if weights else None,
                          class_names=class_names, trust_checkpoint=trust_checkpoint, frames=frames,
                          size=size, mean=mean, std=std, device=resolve_device(device), need_weights=need_weights)
    request.sidecar = read_sidecar(request.weights)
    # A model the sidecar names is code chosen by whoever shipped the weights: only vtcav's
    # own models, unless the user trusts the checkpoint (see checkpoint.sidecar_model).
    request.model = model or sidecar_model(request.weights, request.sidecar, trust_checkpoint, ARCHITECTURES)
    if model and model != request.sidecar.get("model") and request.sidecar.get("model_kwargs"):
        # The user chose another callable: the sidecar's arguments were meant for its own model.
        request.sidecar = {k: v for k, v in request.sidecar.items() if k != "model_kwargs"}
    if not request.model:
        if request.weights is None:
            raise UsageError("give --model (an architecture, package.module:factory, a TorchScript or .pt2 "
                             "file, or mmaction:CONFIG) and/or --weights")
        if not (is_exported_program(request.weights) or is_torchscript(request.weights)):
            raise UsageError(f"{request.weights}: a state dict needs --model (an architecture name such as "
                             f"r3d_18, or package.module:factory)")
        request.model, request.weights = str(request.weights), None   # a complete model file
    loaded = source_for(request.model).load(request)
    loaded.module.to(request.device).eval()
    return loaded

