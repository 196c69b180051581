"""Relevance maps of a video model over ``T x H x W``: Grad-CAM, gradients, gradient x input.

Every map is computed from ONE forward and ONE backward pass of one clip, at the
model's input sampling (``InputSpec``: ``frames`` sampled uniformly from the video,
resized to ``size``), and is returned on that grid as a non-negative
``T x H x W`` float32 array.

- ``gradcam`` (Selvaraju et al. 2017, extended to space-time) at a layer with
  activations ``A`` and gradients ``G = d logit_k / d A``, both ``C x T' x H' x W'``:
  ``w_c = mean_{t,y,x} G_c``, ``map = ReLU(sum_c w_c A_c)``, upsampled trilinearly
  (``align_corners=False``) to the input's ``T x H x W``. The layer's channel axis
  comes from :func:`vtcav_common.models.layers.describe_layers` (declared layouts,
  then the kind of module): channels-first ``C x T x H x W`` (3D CNNs) and
  channels-last ``T x H x W x C`` (Video Swin) are moved to channels-first. Tokens
  ``L x C`` (MViT) are put on their ``T' x H' x W'`` grid, taken from the block's own
  output when it returns one (torchvision's MViT blocks return ``(x, thw)``) or from
  ``grid=(T', H', W')``; with ``L = T'H'W' + 1`` the first token is a class token and is
  dropped.
- ``gradient``: ``|d logit_k / d x|`` summed over the colour channels, where ``x`` is
  the normalised input clip the model sees.
- ``gradxinput``: ``|sum_colour x · d logit_k / d x|`` (the channel sum of captum's
  InputXGradient, made non-negative like the other maps).

``k`` is the target class: given, or the predicted class of each clip.

Example (run by tests/test_examples.py, after the concepts example)::

    from vtcav_common.explain import Explainer
    from vtcav_common.formats.clips import read_clips
    from vtcav_common.models import load_model
    from vtcav_common.models.base import preprocess

    loaded = load_model("vtcav_common.models.tiny:motion_c3d", "weights/classifier.pt")
    clip = read_clips("concepts.h5", "ball", 0, 1)[0]                # T x H x W x 3 uint8
    explainer = Explainer(loaded, "gradcam", layer="block1")
    result = explainer(preprocess(clip[None], loaded.input_spec))
    assert result.relevance.shape == (16, 64, 64)
"""

from .methods import METHODS, RelevanceMethod, register_method

# Lazy: the front end builds --method's help from .methods (light) before anything else; torch
# and the rest load on first use.
_LAZY = {name: ".explainer" for name in ("Explainer", "Explanation", "colour_axis", "default_cam_layer", "grad_cam",
                                          "to_channels_first", "tokens_to_volume", "upsample_volume")}
_LAZY.update({name: ".run" for name in ("ExplainOptions", "VideoItem", "explain_videos", "gather_videos",
                                         "picture_stem")})
_LAZY["MapSink"] = "..formats.relevance"

__all__ = ["METHODS", "ExplainOptions", "Explainer", "Explanation", "MapSink", "RelevanceMethod", "VideoItem",
           "colour_axis", "default_cam_layer", "explain_videos", "gather_videos", "grad_cam", "picture_stem",
           "register_method", "to_channels_first", "tokens_to_volume", "upsample_volume"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
