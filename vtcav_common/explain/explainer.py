"""The relevance methods on one clip: Grad-CAM at a layer (any layout: channels first or
last, tokens on their grid), input gradients and gradient x input (see the package's notes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UsageError, VtcavError
from ..models.base import LayerRecorder, LoadedModel
from ..models.layers import LayerInfo, default_layers, describe_layers, resolve_layers
from .methods import check_method, layer_methods

# the maps vtcav makes from its own forward and backward pass; every other method is built (.methods)
PASS_METHODS = ("gradcam", "gradient", "gradxinput")


@dataclass
class Explanation:
    """One clip's relevance map and the model's verdict on it."""

    relevance: np.ndarray        # T x H x W float32, >= 0, at the model's input grid
    probabilities: np.ndarray    # K float32 (softmax of the logits)
    target_index: int
    predicted_index: int


# --------------------------------------------------------------------------- layer geometry
def to_channels_first(tensor: torch.Tensor, channel_axis: int | None,
                      grid: tuple[int, int, int] | None = None, layer: str = "?") -> torch.Tensor:
    """One sample's layer output as ``C x T x H x W`` (see the module docstring)."""
    shape = tuple(tensor.shape)
    if tensor.ndim == 4 and channel_axis is not None:
        return tensor.movedim(channel_axis, 0)       # C x T x H x W or T x H x W x C
    if tensor.ndim == 2 and channel_axis == 1:
        return tokens_to_volume(tensor, grid, layer)
    raise UsageError(f"layer {layer}: output of shape {'x'.join(map(str, shape))} (channel axis {channel_axis}) "
                     f"has no space-time grid; Grad-CAM needs C x T x H x W, T x H x W x C or tokens L x C "
                     f"(see vt-embed --list-layers)")


def tokens_to_volume(tokens: torch.Tensor, grid: tuple[int, int, int] | None, layer: str) -> torch.Tensor:
    """Tokens ``L x C`` on a ``T' x H' x W'`` grid -> ``C x T' x H' x W'`` (class token dropped)."""
    if grid is None:
        raise UsageError(f"layer {layer} gives tokens ({tokens.shape[0]} x {tokens.shape[1]}) without their "
                         f"grid; give --grid T,H,W (tokens per axis)")
    t, h, w = grid
    count = tokens.shape[0]
    if count == t * h * w + 1:
        tokens = tokens[1:]                              # a leading class token
    elif count != t * h * w:
        raise UsageError(f"layer {layer}: {count} tokens do not fit the grid {t}x{h}x{w} "
                         f"({t * h * w} tokens, or one more with a class token)")
    return tokens.reshape(t, h, w, -1).permute(3, 0, 1, 2)


def grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_c w_c A_c)`` with ``w_c`` the gradient averaged over space-time (C x T x H x W in)."""
    weights = gradient.mean(dim=(1, 2, 3))
    return torch.relu(torch.einsum("c,cthw->thw", weights, activation))


def upsample_volume(volume: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of a ``T x H x W`` map to ``size`` (align_corners=False)."""
    if tuple(volume.shape) == tuple(size):
        return volume
    return F.interpolate(volume[None, None].float(), size=size, mode="trilinear", align_corners=False)[0, 0]


def colour_axis(layout: str) -> int:
    """The colour axis of a clip tensor (batch axis included)."""
    return 1 if layout == "NCTHW" else 2


def default_cam_layer(loaded: LoadedModel, infos: dict[str, LayerInfo]) -> str:
    """The model's declared Grad-CAM layer, else the deepest of the usual layers whose output is a volume."""
    if getattr(loaded, "cam_layer", None):
        return loaded.cam_layer
    volumes = [name for name in default_layers(loaded.module) if _is_volume(infos.get(name))]
    if not volumes:
        raise UsageError("this model has no usual layer with a C x T x H x W output; choose one with --layer "
                         "(see vt-embed --list-layers)")
    return volumes[-1]


def _is_volume(info: LayerInfo | None) -> bool:
    """A 4-D output (channels and three more axes) that is more than one voxel (not pooled away)."""
    if info is None or not info.shape or len(info.shape) != 4 or info.channel_axis is None:
        return False
    return int(np.prod(info.shape)) > info.shape[info.channel_axis]


# --------------------------------------------------------------------------- the explainer
class _GridProbe:
    """Remembers a token grid that a block returns beside its tokens: ``(x, (T, H, W))``."""

    def __init__(self, module: torch.nn.Module):
        self.grid: tuple[int, int, int] | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output) -> None:
        if isinstance(output, (tuple, list)) and len(output) == 2:
            candidate = output[1]
            if isinstance(candidate, (tuple, list)) and len(candidate) == 3 and \
                    all(isinstance(v, int) for v in candidate):
                self.grid = tuple(int(v) for v in candidate)

    def remove(self) -> None:
        self._handle.remove()


class Explainer:
    """Relevance maps of one model by one method; call it on a preprocessed ``1 x ...`` clip."""

    def __init__(self, loaded: LoadedModel, method: str, layer: str | None = None,
                 grid: tuple[int, int, int] | None = None):
        chosen = check_method(method)   # an unknown name: a usage error listing the registry's
        if chosen.build is None and method not in PASS_METHODS:
            raise VtcavError(f"relevance method '{method}' has no build function (only vtcav's own "
                             f"{', '.join(PASS_METHODS)} are made without one)")
        self.loaded, self.method, self.grid = loaded, method, grid
        self.layer: str | None = None
        self.channel_axis: int | None = None
        if chosen.layer:
            self._choose_layer(layer)
        elif layer is not None:
            raise UsageError(f"--layer is for --method {' and '.join(layer_methods())}; {method} explains the "
                             f"input itself")
        # captum's methods and installed packages' (.methods): attribute(x, target) -> T x H x W
        self.built = chosen.build(loaded, method) if chosen.build is not None else None

    def _choose_layer(self, layer: str | None) -> None:
        if layer is not None:
            resolve_layers(self.loaded, [layer])
        infos = describe_layers(self.loaded)
        layer = layer or default_cam_layer(self.loaded, infos)
        info = infos[layer]
        if info.shape is None:
            raise UsageError(f"layer {layer} never runs (or gives no tensor) in a forward pass; choose another")
        if info.calls > 1:
            raise UsageError(f"layer {layer} runs {info.calls} times per forward pass, so its activation is "
                             f"ambiguous; choose a layer that runs once")
        if not (len(info.shape) == 4 or (len(info.shape) == 2 and info.channel_axis == 1)):
            to_channels_first(torch.zeros(info.shape), info.channel_axis, self.grid, layer)  # raises the error
        self.layer, self.channel_axis = layer, info.channel_axis

    @property
    def input_size(self) -> tuple[int, int, int]:
        spec = self.loaded.input_spec
        return spec.frames, spec.size[0], spec.size[1]

    def __call__(self, x: torch.Tensor, target_index: int | None = None) -> Explanation:
        """``x``: one preprocessed clip with its batch axis; ``target_index`` None = predicted."""
        module = self.loaded.module
        x = self._pad_batch(x.detach()).requires_grad_(True)
        probe = _GridProbe(dict(module.named_modules())[self.layer]) if self.layer else None
        try:
            with LayerRecorder(module, [self.layer] if self.layer else []) as recorder, torch.enable_grad():
                output = module(x)
                logits = output[0] if isinstance(output, (tuple, list)) else output
                probabilities = torch.softmax(logits[0].detach().float(), dim=0)
                predicted = int(probabilities.argmax())
                target = predicted if target_index is None else int(target_index)
                wrt = recorder.outputs[self.layer] if self.layer else x
                (gradient,) = torch.autograd.grad(logits[0, target], wrt, allow_unused=True)
        finally:
            if probe is not None:
                probe.remove()
        if gradient is None:
            raise VtcavError(f"layer {self.layer} received no gradient from the logits; choose another layer")
        if self.layer:
            grid = probe.grid or self.grid
            relevance = self._cam(wrt[0].detach(), gradient[0], grid)
        else:
            relevance = self._input_map(x[0].detach(), gradient[0])
        if self.built is not None:   # a layer method's map is a factor (guided Grad-CAM: guided backprop x Grad-CAM)
            built_map = self.built(x[:1], target)
            relevance = built_map * relevance if self.layer else built_map
        return Explanation(relevance.float().cpu().numpy().astype(np.float32),
                           probabilities.cpu().numpy().astype(np.float32), target, predicted)

    def _pad_batch(self, x: torch.Tensor) -> torch.Tensor:
        """A static-batch program (torch.export) takes exactly ``fixed_batch`` clips."""
        fixed = self.loaded.fixed_batch
        if x.shape[0] != 1:
            raise ValueError(f"Explainer takes one clip at a time, got a batch of {x.shape[0]}")
        if fixed and fixed > 1:
            x = torch.cat([x, x.new_zeros((fixed - 1, *x.shape[1:]))])
        return x

    def _cam(self, activation: torch.Tensor, gradient: torch.Tensor,
             grid: tuple[int, int, int] | None) -> torch.Tensor:
        acts = to_channels_first(activation, self.channel_axis, grid, self.layer).float()
        grads = to_channels_first(gradient, self.channel_axis, grid, self.layer).float()
        if not grads.any():
            # E.g. MViT's last block: the head reads only the class token, so the space-time
            # tokens get no gradient and every map would be zero.
            raise VtcavError(f"layer {self.layer}: its space-time positions get no gradient from the logits "
                             f"(does the model read out a class token after it?); choose an earlier layer")
        return upsample_volume(grad_cam(acts, grads), self.input_size).clamp_min(0)

    def _input_map(self, clip: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        axis = colour_axis(self.loaded.input_spec.layout) - 1       # no batch axis here
        if self.method == "gradient":
            return gradient.abs().sum(dim=axis)
        return (gradient * clip).sum(dim=axis).abs()
