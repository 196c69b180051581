"""vt-explain's methods that captum implements: each a ``T x H x W`` map of one clip.

========================  =======================================================  =====================
method                    captum                                                   map from attributions
========================  =======================================================  =====================
``integrated_gradients``  ``IntegratedGradients``, 16 steps from the zero clip     ``|sum over colour|``
``deeplift``              ``DeepLift`` (rescale rule), from the zero clip          ``|sum over colour|``
``guided_backprop``       ``GuidedBackprop``                                       ``sum |.|`` over colour
``guided_gradcam``        ``GuidedBackprop`` x vtcav's Grad-CAM at ``--layer``     ``sum |.|`` x Grad-CAM
``occlusion``             ``Occlusion``, windows of 1/8 of T, H, W, all colours    ``|sum over colour|``
``smoothgrad``            ``NoiseTunnel(Saliency)``, 16 samples, noise 15% of range ``sum |.|`` over colour
``lrp``                   ``LRP``: batch norms folded, gamma on convolutions but   ``|sum over colour|``
                          the first, epsilon elsewhere; where every layer has a rule
========================  =======================================================  =====================

The zero clip is the mean colour of the model's normalisation (the input is normalised).
Attribution methods (their maps sum to the logit's change) keep the sign of the colour sum
before its absolute value, like vtcav's ``gradxinput``; gradient-like methods sum absolute
values over colour, like vtcav's ``gradient``.

vtcav keeps three methods of its own, where its code is better:

- ``gradcam``: captum's ``LayerGradCam`` takes the layer's axis 1 as channels, which is
  wrong for Video Swin (``T x H x W x C``), token grids and tokens; vtcav's Grad-CAM reads
  each layer's channel axis (``models.layers``) and gives the same map where captum's is
  right (tests/test_relevance_captum.py);
- ``gradient`` and ``gradxinput``: the same values as captum's ``Saliency`` and
  ``InputXGradient`` (tested), from the one forward and backward pass vtcav already runs for
  the prediction, where captum would run its own.

Guided Grad-CAM is captum's definition (guided backprop times the upsampled Grad-CAM) with
vtcav's Grad-CAM, for the reason above. Guided backprop, DeepLIFT and LRP change how
modules propagate gradients, so they run on a copy of the model with in-place operations
switched off (captum cannot hook ``ReLU(inplace=True)`` safely). Guided backprop and DeepLIFT
act only at ReLU-like ``nn.Module`` non-linearities (ReLU; DeepLIFT also ELU, sigmoid, tanh,
softmax and max pooling modules); a transformer's GELU, LayerNorm and attention are none of
these, so on VideoMAE, TimeSformer or ViViT guided backprop is the plain gradient and DeepLIFT
from the zero clip is gradient x input. LRP runs only when every leaf module has a rule:
batch norms that follow a convolution or linear layer in an ``nn.Sequential`` are folded
into it first (the usual canonization), the first convolution gets the epsilon rule and the
others the gamma rule (0.25), linear layers, remaining batch norms and pooling the epsilon
rule (with epsilon everywhere a ReLU network's LRP is exactly gradient x input), ReLU,
Dropout, Tanh and Identity pass relevance through; anything else (LayerNorm, attention,
GELU, Flatten modules) is refused.
Functional operations inside ``forward`` (a ResNet's shortcut sum) pass relevance as
gradients do, so LRP's conservation holds only for plain feed-forward networks.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..core.errors import UsageError
from ..models.base import LoadedModel

# (the names are registered in .methods, CAPTUM_METHODS, each built by CaptumMethod)
SIGNED = ("integrated_gradients", "deeplift", "occlusion", "lrp")     # |colour sum|; the rest sum |.|
ON_A_COPY = ("deeplift", "guided_backprop", "guided_gradcam", "lrp")
IG_STEPS = 16
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15          # of the clip's value range (Smilkov et al. 2017: 10-20%)
OCCLUSION_PARTS = 8              # windows of 1/8 of each of T, H, W
BATCH = 4                        # clips per forward in IG, SmoothGrad and occlusion

# LRP's composite (Montavon et al. 2019): epsilon on the input layer, gamma on the other
# convolutions, epsilon elsewhere. With epsilon everywhere, a ReLU network's LRP is exactly
# gradient x input (Ancona et al. 2018): nothing new (measured: the same maps).
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LRP_GAMMA = 0.25
LRP_RULED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
             nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
LRP_PASS = (nn.ReLU, nn.Dropout, nn.Tanh)
FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def import_captum():
    try:
        import captum.attr
    except ImportError:
        raise UsageError("this --method needs captum: pip install 'vtcav[explain]'") from None
    return captum.attr


class _Logits(nn.Module):
    """The model with its output reduced to the ``N x K`` logits captum expects."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.module(x)
        return output[0] if isinstance(output, (tuple, list)) else output


def _copy_without_inplace(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    for child in clone.modules():
        if getattr(child, "inplace", False) is True:
            child.inplace = False
    return clone.eval()


def canonize_for_lrp(module: nn.Module) -> None:
    """Prepare a copy of the model for LRP (in place): fold each batch norm into the
    convolution or linear layer just before it in an ``nn.Sequential``, and put a
    ``Dropout(0)`` (an identity captum's LRP passes relevance through) where the norm and any
    ``nn.Identity`` were. Without folding, the epsilon rule at a batch norm hands relevance
    to its shift, and on the motion world LRP's maps miss the moving ball (share 0.01-0.03,
    below the ball's area); folded, they find it (0.79)."""
    for parent in module.modules():
        children = list(parent.named_children())
        for name, child in children:
            if isinstance(child, nn.Identity):
                setattr(parent, name, nn.Dropout(0.0))
        if not isinstance(parent, nn.Sequential):
            continue   # only a Sequential's order of children is its order of execution
        for (_, layer), (norm_name, norm) in zip(children, children[1:]):
            if isinstance(layer, FOLDABLE) and isinstance(norm, NORMS) and norm.running_var is not None:
                _fold(layer, norm)
                setattr(parent, norm_name, nn.Dropout(0.0))


def _fold(layer: nn.Module, norm: nn.Module) -> None:
    scale = (norm.weight if norm.affine else torch.ones_like(norm.running_var)) / \
        torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
    with torch.no_grad():
        layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.ndim - 1)))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
        layer.bias = nn.Parameter(shift + (bias - norm.running_mean) * scale)


def _attach_lrp_rules(module: nn.Module) -> None:
    """The composite's rules on every leaf (captum has none for 3D layers); refuse what has no rule."""
    from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule

    first = True
    for name, leaf in module.named_modules():
        if any(True for _ in leaf.children()):
            continue
        if isinstance(leaf, CONVOLUTIONS):
            leaf.rule = EpsilonRule() if first else GammaRule(gamma=LRP_GAMMA)   # the input layer: epsilon
            first = False
        elif isinstance(leaf, LRP_RULED):
            leaf.rule = EpsilonRule()
        elif not isinstance(leaf, LRP_PASS):
            raise UsageError(f"--method lrp: layer {name.removeprefix('module.')} ({type(leaf).__name__}) has no "
                             f"LRP rule (rules exist for convolutions, linear layers, batch norms, pooling, ReLU); "
                             f"choose another method")


class CaptumMethod:
    """One captum method on one model: ``method(x, target) -> T x H x W`` (non-negative)."""

    def __init__(self, loaded: LoadedModel, method: str):
        if (loaded.fixed_batch or 1) > 1:
            raise UsageError(f"--method {method}: this model takes exactly {loaded.fixed_batch} clips per call; "
                             f"captum's methods need any batch (use gradcam, gradient or gradxinput)")
        attr = import_captum()
        self.method, self.layout = method, loaded.input_spec.layout
        module = _copy_without_inplace(loaded.module) if method in ON_A_COPY else loaded.module
        self.model = _Logits(module).eval()
        if method == "integrated_gradients":
            self.engine = attr.IntegratedGradients(self.model)
        elif method == "deeplift":
            self.engine = attr.DeepLift(self.model)
        elif method in ("guided_backprop", "guided_gradcam"):
            self.engine = attr.GuidedBackprop(self.model)
        elif method == "occlusion":
            self.engine = attr.Occlusion(self.model)
        elif method == "smoothgrad":
            self.engine = attr.NoiseTunnel(attr.Saliency(self.model))
        elif method == "lrp":
            canonize_for_lrp(self.model)
            _attach_lrp_rules(self.model)
            self.engine = attr.LRP(self.model)
        else:
            raise UsageError(f"unknown captum method '{method}'")

    @property
    def colour_axis(self) -> int:
        return 1 if self.layout == "NCTHW" else 2

    def __call__(self, x: torch.Tensor, target: int) -> torch.Tensor:
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad(), warnings.catch_warnings():
            # captum announces every hook it sets and every input it marks for gradients
            warnings.simplefilter("ignore", UserWarning)
            attributions = self._attribute(x, int(target))
        attributions = attributions.detach()[0].float()
        axis = self.colour_axis - 1
        if self.method in SIGNED:
            return attributions.sum(dim=axis).abs()
        return attributions.abs().sum(dim=axis)

    def _attribute(self, x: torch.Tensor, target: int) -> torch.Tensor:
        method, engine = self.method, self.engine
        if method == "integrated_gradients":
            return engine.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS,
                                    internal_batch_size=BATCH)
        if method == "deeplift":
            return engine.attribute(x, baselines=torch.zeros_like(x), target=target)
        if method == "occlusion":
            return engine.attribute(x, sliding_window_shapes=self._window(x), strides=self._window(x),
                                    baselines=0.0, target=target, perturbations_per_eval=BATCH)
        if method == "smoothgrad":
            spread = float(x.max() - x.min()) * SMOOTHGRAD_NOISE
            return engine.attribute(x, nt_type="smoothgrad", nt_samples=SMOOTHGRAD_SAMPLES,
                                    nt_samples_batch_size=BATCH, stdevs=spread, target=target)
        if method == "lrp":
            _attach_lrp_rules(self.model)  # captum deletes the rules after each attribution
        return engine.attribute(x, target=target)

    def _window(self, x: torch.Tensor) -> tuple[int, ...]:
        """All colours at once, 1/8 of each of T, H and W (at least one)."""
        sizes = list(x.shape[1:])
        axis = self.colour_axis - 1
        return tuple(size if i == axis else max(1, size // OCCLUSION_PARTS) for i, size in enumerate(sizes))
