"""The embedding 3D-ACE clusters in: a layer's activations, pooled to a small grid per channel.

Full activations of a video layer are large (the tiny classifier's ``block3`` has
48 x 8 x 16 x 16 = 98,304 numbers a clip), and k-means over thousands of candidates
would hold them all. Average-pooling each channel to a ``grid`` (``grid`` cells per
axis: 1 = one mean per channel, 2 = 2 x 2 x 2 cells) keeps what the layer detects and
roughly where, in ``channels x grid^k`` numbers. ``grid = 0`` keeps the full
flattened activations (ACE's original choice; memory grows with the candidates).

The same function embeds discovery's candidates and the faithfulness check's test
supervoxels, so "nearest concept centre" means the same thing in both.

Example (in a project folder, after shell/pipeline.sh: concepts.h5):
    >>> from vtcav_common.ace.features import Embedder
    >>> from vtcav_common.formats.clips import read_clips
    >>> from vtcav_common.models import load_model
    >>> loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    >>> embedder = Embedder(loaded, "block3", grid=2)
    >>> clips = read_clips("concepts.h5", "ball_right", 0, 4)      # 4 x 16 x 64 x 64 x 3 uint8
    >>> features = embedder(clips)
    >>> features.shape, features.dtype                               # N x (48 channels * 2 x 2 x 2 cells)
    ((4, 384), dtype('float32'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..embed import LayerPass
from ..core.errors import UsageError
from ..models.base import LoadedModel, preprocess
from ..models.layers import describe_layers, model_device, resolve_layers


@dataclass(frozen=True)
class FeatureSpec:
    layer: str
    grid: int = 2

    def to_dict(self) -> dict:
        return {"layer": self.layer, "grid": self.grid}


class Embedder:
    """Clips (uint8 ``N x T x H x W x 3``) -> pooled activations of one layer (``N x F``)."""

    def __init__(self, loaded: LoadedModel, layer: str, grid: int = 2, batch_size: int = 16):
        if grid < 0:
            raise UsageError(f"--grid must be 0 (no pooling) or more, got {grid}")
        resolve_layers(loaded, [layer])
        info = describe_layers(loaded)[layer]
        if info.shape is None:
            raise UsageError(f"layer {layer} never ran in a forward pass; choose another")
        self.loaded = loaded
        self.spec = FeatureSpec(layer, grid)
        self.channel_axis = 0 if info.channel_axis is None else int(info.channel_axis)
        self.batch_size = batch_size
        self._pass = LayerPass(loaded, [layer])
        self._device = model_device(loaded.module)

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        parts = [self._batch(clips[start:start + self.batch_size])
                 for start in range(0, len(clips), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def over(self, batches: Iterable[np.ndarray]) -> np.ndarray:
        """Features of a stream of clip batches, stacked (only the features are held)."""
        return np.concatenate([self(batch) for batch in batches])

    def logits(self, clips: np.ndarray) -> np.ndarray:
        """The model's class logits for clips (``N x K``), in batches."""
        parts = []
        for start in range(0, len(clips), self.batch_size):
            x = preprocess(clips[start:start + self.batch_size], self.loaded.input_spec, self._device)
            parts.append(self._pass(x).logits)
        return np.concatenate(parts)

    def _batch(self, clips: np.ndarray) -> np.ndarray:
        x = preprocess(clips, self.loaded.input_spec, self._device)
        acts = self._pass(x).acts[self.spec.layer]
        return pool(acts, self.channel_axis, self.spec.grid)


def pool(acts: np.ndarray, channel_axis: int, grid: int) -> np.ndarray:
    """``n x (per-sample shape)`` activations -> ``n x (channels * grid^k)``; grid 0 flattens."""
    n = acts.shape[0]
    if grid == 0 or acts.ndim == 2:
        return acts.reshape(n, -1).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(acts, channel_axis + 1, 1))).float()
    rest = x.shape[2:]
    if len(rest) == 3:
        pooled = F.adaptive_avg_pool3d(x, tuple(min(grid, s) for s in rest))
    elif len(rest) == 2:
        pooled = F.adaptive_avg_pool2d(x, tuple(min(grid, s) for s in rest))
    else:
        flat = x.reshape(n, x.shape[1], -1)
        pooled = F.adaptive_avg_pool1d(flat, min(grid, flat.shape[-1]))
    return pooled.reshape(n, -1).numpy().astype(np.float32)
