"""What every model source gives the rest of vtcav: a module, its input contract, hooks.

A *model source* (torchvision name, ``package.module:factory``, TorchScript, torch.export
program, mmaction2 config) turns what the user passed into a :class:`LoadedModel`.
Everything downstream (vt-embed, vt-explain, discovery) only uses this interface, so
the project's own tiny classifier and a user's Video Swin go through the same path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UsageError
from ..core.files import file_sha256  # noqa: F401  (importable from here as before)
from .sampling import temporal_indices  # noqa: F401  (importable from here as before)


@dataclass(frozen=True)
class InputSpec:
    """How a model expects its input clip; recorded in every file computed from it.

    ``mean``/``std`` are per channel in [0, 1] units, in the model's channel order.
    ``layout`` is the tensor layout the module's ``forward`` takes.
    """

    frames: int = 16
    size: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
    std: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
    layout: str = "NCTHW"            # or "NTCHW"
    channel_order: str = "RGB"       # or "BGR"

    def to_dict(self) -> dict:
        record = asdict(self)
        record["size"] = list(self.size)
        record["mean"] = list(self.mean)
        record["std"] = list(self.std)
        return record

    def with_overrides(self, frames: int | None = None, size: int | None = None) -> "InputSpec":
        spec = self
        if frames:
            spec = replace(spec, frames=int(frames))
        if size:
            spec = replace(spec, size=(int(size), int(size)))
        return spec


def preprocess(clips: np.ndarray, spec: InputSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 clips ``N x T x H x W x 3`` (RGB) -> the float tensor ``spec`` asks for.

    Uniform temporal sampling to ``spec.frames``, bilinear resize to ``spec.size``,
    scale to [0, 1], per-channel normalisation, channel order, then layout.
    """
    clips = np.asarray(clips)
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"expected N x T x H x W x 3 clips, got shape {clips.shape}")
    clips = clips[:, temporal_indices(clips.shape[1], spec.frames)]
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
    n, t, h, w, _ = x.shape
    x = x.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float().div_(255.0)   # NT x C x H x W
    if (h, w) != tuple(spec.size):
        x = F.interpolate(x, size=tuple(spec.size), mode="bilinear", align_corners=False, antialias=True)
    if spec.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).reshape(n, t, 3, *spec.size)
    if spec.layout == "NCTHW":
        x = x.permute(0, 2, 1, 3, 4)
    elif spec.layout != "NTCHW":
        raise ValueError(f"unknown layout {spec.layout!r}")
    return x.contiguous()


@dataclass
class LoadedModel:
    """A ready-to-run classifier: eval mode, its input contract and where it came from.

    ``provenance`` holds at least ``source``, ``arch``, ``weights`` (file name),
    ``weights_sha256`` and ``num_classes``; files computed with this model copy it, and
    tools that combine files compare it.
    """

    module: torch.nn.Module
    input_spec: InputSpec
    class_names: list[str]
    provenance: dict = field(default_factory=dict)
    # The only batch size the module accepts (a torch.export program exported with a
    # static batch); None = any. Callers pad the last batch up to it.
    fixed_batch: int | None = None
    # The layers explained when the user names none (e.g. a network's stages); None: the
    # source does not know, and vtcav_common.models.layers.usual_layers guesses.
    usual_layers: list[str] | None = None
    # The layer Grad-CAM explains when the user names none; None: the deepest usual
    # volume (vtcav_common.explain.default_cam_layer). E.g. a class-token transformer,
    # whose last layer's grid gets no gradient.
    cam_layer: str | None = None

    def class_index(self, name_or_index: str) -> int:
        """Resolve a class given by name (or a plain integer index), with a clear error."""
        if name_or_index in self.class_names:
            return self.class_names.index(name_or_index)
        if str(name_or_index).isdigit() and int(name_or_index) < len(self.class_names):
            return int(name_or_index)
        close = [c for c in self.class_names if str(name_or_index).lower() in c.lower()][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown class '{name_or_index}' for model {self.provenance.get('arch', '?')} "
                         f"({len(self.class_names)} classes){hint}")

    def layer_names(self) -> list[str]:
        return [name for name, _ in self.module.named_modules() if name]

    def check_layers(self, names: Iterable[str]) -> list[str]:
        known = set(self.layer_names())
        names = list(names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown layer(s) {', '.join(unknown)} in model "
                             f"{self.provenance.get('arch', '?')}; see vt-embed --list-layers")
        return names


def first_tensor(output) -> torch.Tensor:
    """A layer's output as one tensor: tuples/lists/dicts give their first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    if isinstance(output, dict):
        for item in output.values():
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"layer output of type {type(output).__name__} holds no tensor")


class LayerHooks:
    """Forward hooks on named layers of ``module``, in place for the length of a ``with`` block.

    The one hook mechanism of vtcav: what a hook does is the subclass's ``_hook(name)``
    (:class:`LayerRecorder` records outputs; VTCD's ``FeatureMasks`` multiplies them by masks).
    """

    def __init__(self, module: torch.nn.Module, layer_names: list[str]):
        modules = dict(module.named_modules())
        missing = [n for n in layer_names if n not in modules]
        if missing:
            raise UsageError(f"unknown layer(s) {', '.join(missing)}; see vt-embed --list-layers")
        self._modules = [(name, modules[name]) for name in layer_names]
        self._handles: list = []

    def _hook(self, name: str):
        raise NotImplementedError

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class LayerRecorder(LayerHooks):
    """Forward hooks on many named layers: activations (and their gradients) from ONE pass.

    Use as a context manager around a forward pass; with ``keep_grad=True`` call
    ``backward`` once on the target logit and read :meth:`gradients` for every layer.
    The hook hands the rest of the network a clone of the output, so in-place
    operations downstream (``ReLU(inplace=True)``) cannot corrupt what was recorded.
    """

    def __init__(self, module: torch.nn.Module, layer_names: list[str], keep_grad: bool = False):
        super().__init__(module, layer_names)
        self.keep_grad = keep_grad
        self.outputs: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            tensor = first_tensor(output)
            if self.keep_grad and tensor.requires_grad:
                tensor.retain_grad()
            self.outputs[name] = tensor
            if isinstance(output, torch.Tensor):
                return output.clone()
            return None
        return hook

    def __enter__(self) -> "LayerRecorder":
        self.outputs.clear()
        return super().__enter__()

    def activations(self) -> dict[str, torch.Tensor]:
        return {name: self.outputs[name].detach() for name, _ in self._modules}

    def gradients(self) -> dict[str, torch.Tensor]:
        grads = {}
        for name, _ in self._modules:
            grad = self.outputs[name].grad
            if grad is None:
                raise RuntimeError(f"layer {name} received no gradient (is it on the path to the logits?)")
            grads[name] = grad.detach()
        return grads
