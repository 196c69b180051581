"""vt-explain's relevance methods, as a registry: one list, from which ``--method``'s help and
its validation are made.

Three methods come from the forward and backward pass vtcav runs for every clip anyway (the
prediction and its gradient): ``gradcam`` at a layer, ``gradient`` and ``gradxinput`` at the
input (:mod:`.explainer`). The others are built once per run by their ``build(loaded, name)``,
which returns ``attribute(x, target)``: a non-negative ``T x H x W`` torch tensor for one
preprocessed clip ``x`` (``1 x ...``, as the model takes it) and the class index ``target``;
captum's seven (:mod:`.captum_methods`) are built that way. A method with ``layer=True`` takes
``--layer`` and is given vtcav's Grad-CAM there: its map (``gradcam``), or the factor its own
map is multiplied by (``guided_gradcam``).

Nothing heavy is imported here (torch and captum only when a method is built), so the front
end can build its help without the cost.

An installed package adds a method through the entry-point group ``vtcav.relevance_methods``
(:mod:`vtcav_common.core.registry`), e.g. ``[project.entry-points."vtcav.relevance_methods"]``
``edges = "mylab.relevance:EDGES"`` with ``EDGES = RelevanceMethod("edges", build)``.

>>> METHODS.names()[:3]
('gradcam', 'gradient', 'gradxinput')
>>> check_method("saliency")
Traceback (most recent call last):
...
vtcav_common.core.registry.UnknownName: unknown relevance method 'saliency'; choose from gradcam, gradient, ..., lrp
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..core.registry import Registry

# captum's methods (:mod:`.captum_methods`), in the order --help lists them
CAPTUM_METHODS = ("integrated_gradients", "deeplift", "guided_backprop", "guided_gradcam", "occlusion",
                  "smoothgrad", "lrp")


@dataclass(frozen=True)
class RelevanceMethod:
    name: str
    # build(loaded, name) -> attribute(x, target) -> T x H x W map; None: vtcav's own pass makes the map
    build: Callable | None = None
    layer: bool = False          # takes --layer: Grad-CAM there is the map, or a factor of the built one


METHODS: Registry[RelevanceMethod] = Registry("relevance method", group="vtcav.relevance_methods",
                                              kind=RelevanceMethod)


def register_method(name: str, build: Callable | None = None, layer: bool = False) -> RelevanceMethod:
    """Add a relevance method under ``name`` (see the module's notes for ``build`` and ``layer``)."""
    return METHODS.add(name, RelevanceMethod(name, build, layer))


def check_method(name: str) -> RelevanceMethod:
    return METHODS[name]   # an unknown name: a usage error listing the choices


def layer_methods() -> tuple[str, ...]:
    """The methods that take ``--layer``."""
    return tuple(name for name, method in METHODS.items() if method.layer)


def _captum(loaded, name: str):
    from .captum_methods import CaptumMethod

    return CaptumMethod(loaded, name)


register_method("gradcam", layer=True)
register_method("gradient")
register_method("gradxinput")
for _name in CAPTUM_METHODS:
    register_method(_name, _captum, layer=_name == "guided_gradcam")
