"""One forward (and one backward) pass of a batch: activations and target-logit gradients of many layers.

:class:`LayerPass` hooks every requested layer (:class:`~vtcav_common.models.base.LayerRecorder`),
runs the batch forward once and, with a target class, runs ONE backward pass of
``logits[:, k].sum()`` that gives the gradient at every layer. With a pooling
(:mod:`vtcav_common.embed.pooling`) activations and gradients are average-pooled alike before
they leave the device, so what is stored (and moved) is already the smaller array.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from .precision import PRECISIONS
from ..core.errors import UsageError, VtcavError
from ..models.base import LayerRecorder, LoadedModel, preprocess
from .pooling import Pooling, pool


def to_tensor(batch, loaded: LoadedModel, device: torch.device) -> torch.Tensor:
    """Uniform temporal sampling, resize and normalisation by the model's InputSpec."""
    spec = loaded.input_spec
    if isinstance(batch.clips, list):  # videos of different sizes: preprocess one by one
        return torch.cat([preprocess(clip[None], spec, device) for clip in batch.clips])
    return preprocess(batch.clips, spec, device)



@dataclass
class BatchResult:
    logits: np.ndarray                      # n x K float32
    acts: dict[str, np.ndarray]             # layer -> n x shape (float32)
    grads: dict[str, np.ndarray] | None     # layer -> n x shape (float32), with a target


@contextlib.contextmanager
def _parameters_frozen(module: torch.nn.Module):
    """No gradients for parameters: the backward pass then only computes what we keep."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA (fp16 where the GPU lacks bf16), fp32 on the CPU."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class LayerPass:
    """Activations of ``layers`` (and gradients of the target logit) for a batch of clips.

    With ``precision`` bf16/fp16 the forward runs under autocast (convolutions and matmuls
    in half precision, accumulating in fp32); the target logit is taken in fp32 before the
    backward pass, and everything stored is widened to fp32 first.
    """

    def __init__(self, loaded: LoadedModel, layers: list[str], target_index: int | None = None,
                 precision: str = "fp32", pooling: Pooling | None = None,
                 channel_axes: dict[str, int | None] | None = None):
        self.loaded = loaded
        self.layers = layers
        self.target_index = target_index
        self.precision = precision
        self.pooling = pooling
        self.channel_axes = channel_axes or {}
        if pooling is not None and set(layers) - set(self.channel_axes):
            raise ValueError("pooling needs the channel axis of every layer (models.layers.describe_layers)")

    def _pooled(self, tensors: dict[str, torch.Tensor], n: int) -> dict[str, np.ndarray]:
        """The same linear pooling for activations and gradients, then to float32 numpy."""
        return {k: _numpy(pool(v[:n], self.channel_axes.get(k), self.pooling, k), n) for k, v in tensors.items()}

    def _autocast(self, device: torch.device):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def __call__(self, x: torch.Tensor, classes: np.ndarray | None = None) -> BatchResult:
        """``classes``: one class per input whose logit's gradient to take instead of the target's
        (vt-embed --control permute-labels)."""
        step = self.loaded.fixed_batch or len(x)
        parts = [self._run(x[start:start + step], None if classes is None else classes[start:start + step])
                 for start in range(0, len(x), step)]
        if len(parts) == 1:
            return parts[0]
        return BatchResult(np.concatenate([p.logits for p in parts]),
                           {k: np.concatenate([p.acts[k] for p in parts]) for k in self.layers},
                           None if self.target_index is None else
                           {k: np.concatenate([p.grads[k] for p in parts]) for k in self.layers})

    def _run(self, x: torch.Tensor, classes: np.ndarray | None = None) -> BatchResult:
        n = len(x)
        if self.loaded.fixed_batch and n < self.loaded.fixed_batch:  # a static-batch program
            padding = x.new_zeros((self.loaded.fixed_batch - n, *x.shape[1:]))
            x = torch.cat([x, padding])
        module = self.loaded.module
        if self.target_index is None:
            with LayerRecorder(module, self.layers) as recorder, torch.no_grad(), self._autocast(x.device):
                logits = _logits(module(x))
            acts = recorder.activations()
            return BatchResult(_numpy(logits, n), self._pooled(acts, n), None)
        with _parameters_frozen(module), LayerRecorder(module, self.layers, keep_grad=True) as recorder, \
                torch.enable_grad():
            # The input carries the graph, so activations need grad even without trainable parameters.
            with self._autocast(x.device):
                logits = _logits(module(x.detach().requires_grad_(True)))
            if classes is None:
                logits[:n, self.target_index].float().sum().backward()
            else:
                logits[torch.arange(n), torch.as_tensor(classes, device=logits.device)].float().sum().backward()
            acts = recorder.activations()
            try:
                grads = recorder.gradients()
            except RuntimeError as err:
                raise VtcavError(f"{err}; drop that layer from --layers") from None
        return BatchResult(_numpy(logits, n), self._pooled(acts, n), self._pooled(grads, n))


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _numpy(tensor: torch.Tensor, n: int) -> np.ndarray:
    return tensor[:n].detach().float().cpu().numpy()
