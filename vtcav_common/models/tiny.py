"""A small 3D CNN for the synthetic motion world (``vtcav_common.synth``).

It is the model the tests and the demo explain: trained by ``shell/train_classifier.py``
on decoded mp4s of the world, saved as a plain state dict (``weights/classifier.pt``),
and loaded like any user's model::

    vt-embed world/labels.jsonl --model vtcav_common.models.tiny:motion_c3d \\
        --weights weights/classifier.pt --layers block1,block2,block3 -o acts.h5

The factory declares the model's input contract and class names as attributes
(``vtcav_input_spec``, ``vtcav_class_names``, ``vtcav_usual_layers``), which
``load_model`` reads for any factory (see docs/models.md).

Layout: input ``N x 3 x 16 x 64 x 64``;
``block1`` 16 x 16 x 32 x 32 (space halved), ``block2`` 32 x 8 x 16 x 16 (time and
space halved), ``block3`` 48 x 8 x 16 x 16 (no pooling: it keeps enough time and space
for "ball moving right" to be a direction in its activations), ``block4`` 64 x 4 x 8 x 8,
global average pool, linear ``head`` to 4 logits.

Why ``block4``: the gradient of a logit with respect to the block that feeds global
pooling and a linear head is the same for every input (the head's weights, spread
evenly), so TCAV's sign count there can only be 0 or 1. With ``block4`` on top, the
blocks one explains (``block1..3``) have gradients that depend on the input, as in any
real network's inner layers.
"""

from __future__ import annotations

from torch import nn

from ..synth import APPEARANCE_CLASSES, CLASSES
from .base import InputSpec

INPUT_SPEC = InputSpec(frames=16, size=(64, 64), mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))
WIDTHS = (16, 32, 48, 64)


def _block(c_in: int, c_out: int, kernel, stride) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


class MotionC3D(nn.Module):
    """Conv3d-BN-ReLU x 4 (``block1..4``), global average pool, linear ``head``."""

    def __init__(self, num_classes: int = len(CLASSES), widths: tuple[int, int, int, int] = WIDTHS):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.block1 = _block(3, w1, (3, 5, 5), (1, 2, 2))
        self.block2 = _block(w1, w2, (3, 3, 3), (2, 2, 2))
        self.block3 = _block(w2, w3, (3, 3, 3), (1, 1, 1))
        self.block4 = _block(w3, w4, (3, 3, 3), (2, 2, 2))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(w4, num_classes)
        # What load_model reads from any factory's module (the user may override both).
        self.vtcav_input_spec = INPUT_SPEC
        self.vtcav_class_names = list(CLASSES[:num_classes])
        # What vt-embed explains without --layers: block4's gradients do not depend on the input.
        self.vtcav_usual_layers = ["block1", "block2", "block3"]

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.head(self.pool(x).flatten(1))


def motion_c3d(num_classes: int = len(CLASSES)) -> MotionC3D:
    """The factory named on the command line: ``vtcav_common.models.tiny:motion_c3d``."""
    return MotionC3D(num_classes)


def appearance_c3d(num_classes: int = len(APPEARANCE_CLASSES)) -> MotionC3D:
    """The same network for the appearance world (``vt-synth --world appearance``), whose classes
    are the ball's colours: ``vtcav_common.models.tiny:appearance_c3d`` with
    ``weights/appearance_classifier.pt``."""
    model = MotionC3D(num_classes)
    model.vtcav_class_names = list(APPEARANCE_CLASSES[:num_classes])
    return model
