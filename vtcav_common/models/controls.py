"""Sanity controls (``vt-embed --control``): embed under a randomised model, or with randomised gradients.

In the spirit of Adebayo et al. 2018 ("Sanity checks for saliency maps"): a verdict that
also appears when what the model learned is destroyed says nothing about what it learned.
Four controls, each run through the same commands as a real run:

- ``reinit``: every module's weights re-initialised (its own ``reset_parameters``, seeded
  by ``--seed``): the architecture, nothing learned;
- ``cascade:LAYER``: the layers from the top (the head) down to and including ``LAYER``
  re-initialised, the ones below kept (Adebayo's cascading randomisation). "Above" is
  the forward order: a module is above ``LAYER`` when its first call starts after
  ``LAYER``'s forward has returned;
- ``permute-grads``: each input's gradient at each layer with its elements permuted and
  their signs flipped at random (seeded per input, so sharding and batch size do not
  change it). Assigning one input's gradient to another input instead would be a no-op:
  TCAV scores and magnitudes average over the inputs' gradients and never look at the
  inputs' own activations, so a reassignment leaves every score unchanged. A permutation
  without sign flips keeps each gradient's mean, and CAVs of ReLU activations share a
  mean direction, so the derivative would keep a bias that differs from CAV to CAV by
  its mean component (a concept with brighter activations would "win"); random signs
  make the expected derivative zero along every CAV, as for a gradient unrelated to it;
- ``permute-labels``: the gradient of a class drawn at random per input (any class but
  the target) instead of the target's.

The control is recorded in the embeddings file's provenance (``control``: name, seed
and what was re-initialised), carried by vt-cav into the CAV file and by vt-score into
every score record (``control``: the name, null for a real run). Model controls
(``reinit``, ``cascade``) change the activations, so files of different model controls
(or seeds) are refused together (:func:`vtcav_common.formats.embeddings.model_key`, compared by
:func:`vtcav_common.formats.embeddings.require_same_model`); gradient controls change only the
gradients, so vt-score accepts real CAVs with a gradient control's gradients
(:func:`scoring_control`).

Example:
    >>> parse_control("cascade:block3", seed=1).name
    'cascade:block3'
    >>> parse_control(None) is None
    True
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..core.errors import IncompatibleError, UsageError, VtcavError

if TYPE_CHECKING:  # pragma: no cover
    from .base import LoadedModel

MODEL_CONTROLS = ("reinit", "cascade")    # the same in formats.embeddings.model_key (the file format)
GRADIENT_CONTROLS = ("permute-grads", "permute-labels")
HELP = ("Sanity control: embed under a randomised model. reinit (every weight re-initialised, seeded by "
        "--seed), cascade:LAYER (the layers from the head down to and including LAYER re-initialised), "
        "permute-grads (each input's gradient elements permuted, signs flipped at random), permute-labels "
        "(the gradient of a random other class per input). Give the same --control to both vt-embed runs "
        "of a chain; vt-stats --control compares the verdicts. See docs/statistics.md, Sanity controls.")


@dataclass(frozen=True)
class Control:
    kind: str                  # one of MODEL_CONTROLS + GRADIENT_CONTROLS
    seed: int = 0
    layer: str | None = None   # cascade's lowest re-initialised layer

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.layer}" if self.kind == "cascade" else self.kind

    @property
    def changes_model(self) -> bool:
        return self.kind in MODEL_CONTROLS


def parse_control(text: str | None, seed: int = 0) -> Control | None:
    """``--control`` as typed: reinit, cascade:LAYER, permute-grads or permute-labels (or None)."""
    if text is None:
        return None
    kind, sep, layer = text.partition(":")
    if kind == "cascade":
        if not layer:
            raise UsageError("--control cascade:LAYER names the lowest layer re-initialised, e.g. cascade:block3")
        return Control(kind, seed, layer)
    if kind in ("reinit",) + GRADIENT_CONTROLS and not sep:
        return Control(kind, seed)
    raise UsageError(f"--control takes reinit, cascade:LAYER, permute-grads or permute-labels, got '{text}'")


# --------------------------------------------------------------------------- provenance
def control_name(provenance: dict) -> str | None:
    control = provenance.get("control")
    return control.get("name") if isinstance(control, dict) else None


def scoring_control(cavs: str, cav_provenance: dict, gradients: str, grads_provenance: dict) -> str | None:
    """The control of the scores of these CAVs along these gradients, or IncompatibleError.

    The model part was compared already (``require_same_model``). A gradient control is a
    property of the gradients: real CAVs may be scored with them; CAVs of a gradient-control
    run with real gradients would be a real run labelled as a control, so that is refused.
    """
    cav_name, grads_name = control_name(cav_provenance), control_name(grads_provenance)
    if cav_name is not None and cav_name != grads_name:
        raise IncompatibleError(f"{gradients}: gradients of control {grads_name or 'none (a real run)'}, CAVs in "
                                f"{cavs} of control {cav_name}; embed both with the same vt-embed --control")
    return grads_name


# --------------------------------------------------------------------------- model controls
def randomise(loaded: LoadedModel, control: Control) -> dict:
    """Re-initialise ``loaded``'s module in place as ``control`` says; what it did, for the provenance.

    Resets run on the CPU under ``torch.manual_seed(control.seed)`` in the module's
    definition order, so the same seed gives the same weights on any device.
    """
    import torch

    from .layers import model_device

    module = loaded.module
    scope = _cascade_scope(loaded, control.layer) if control.kind == "cascade" else None
    device = model_device(module)
    module.to("cpu")
    reset, kept = [], []
    torch.manual_seed(control.seed)
    with torch.no_grad():
        for name, sub in module.named_modules():
            if scope is not None and name not in scope:
                continue
            function = getattr(sub, "reset_parameters", None) or getattr(sub, "_reset_parameters", None)
            owns = any(True for _ in sub.parameters(recurse=False))
            if callable(function):
                function()
                reset.append(name or "<root>")
            elif owns:
                kept.append(name or "<root>")
    module.to(device)
    if not reset:
        raise VtcavError(f"--control {control.name}: no module of model {loaded.provenance.get('arch', '?')} has "
                         f"reset_parameters (a TorchScript or exported program cannot be re-initialised); load it "
                         f"as a PyTorch module (package.module:factory)")
    return {"reinitialised": reset, "kept": kept}


def _cascade_scope(loaded: LoadedModel, layer: str) -> set[str]:
    """``layer``, its submodules, and every module whose first call starts after ``layer`` returned."""
    import torch

    from .base import preprocess
    from .layers import model_device

    loaded.check_layers([layer])
    module = loaded.module
    clock, started, finished = [0], {}, {}

    def before(name):
        def hook(_module, _inputs):
            clock[0] += 1
            started.setdefault(name, clock[0])
        return hook

    def after(name):
        def hook(_module, _inputs, _output):
            clock[0] += 1
            finished.setdefault(name, clock[0])
        return hook

    handles = []
    for name, sub in module.named_modules():
        handles.append(sub.register_forward_pre_hook(before(name)))
        handles.append(sub.register_forward_hook(after(name)))
    spec = loaded.input_spec
    clips = np.zeros((loaded.fixed_batch or 1, spec.frames, *spec.size, 3), np.uint8)
    try:
        with torch.no_grad():
            module(preprocess(clips, spec, model_device(module)))
    finally:
        for handle in handles:
            handle.remove()
    if layer not in finished:
        raise VtcavError(f"--control cascade:{layer}: layer '{layer}' never ran in a forward pass")
    end = finished[layer]
    return {name for name, _ in module.named_modules()
            if name == layer or name.startswith(layer + ".") or started.get(name, -1) > end}


# --------------------------------------------------------------------------- gradient controls
def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator per input (and layer), so the draw does not depend on batches or shards."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def draw_classes(control: Control, set_name: str, ids: Sequence[str], num_classes: int, target: int) -> np.ndarray:
    """permute-labels: one class per input, uniform over every class but the target."""
    if num_classes < 2:
        raise VtcavError("--control permute-labels needs a model with at least 2 classes")
    others = np.array([k for k in range(num_classes) if k != target])
    return np.array([others[_rng(control.seed, "label", set_name, i).integers(len(others))] for i in ids])


def permute_gradients(control: Control, set_name: str, ids: Sequence[str],
                      grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """permute-grads: each input's gradient at each layer, elements permuted, signs flipped at random."""
    out = {}
    for layer, block in grads.items():
        rows = []
        for i, row in zip(ids, block):
            rng = _rng(control.seed, "grad", layer, set_name, i)
            flat = row.reshape(-1)
            signs = rng.choice(np.array([-1.0, 1.0], flat.dtype), size=flat.shape)
            rows.append((flat[rng.permutation(flat.shape[0])] * signs).reshape(row.shape))
        out[layer] = np.stack(rows) if rows else block
    return out
