"""The model sources, behind one shape: which specs each accepts, how it loads.

A *source* is one file in this package named ``*_source.py`` that defines ``SOURCE``,
a :class:`ModelSource`, or a ModelSource that an installed package declares in the
entry-point group ``vtcav.models`` (:mod:`vtcav_common.core.registry`). Adding a source is
adding such a file (or installing such a package): it is found here by its name, asked
(in ``order``) whether it accepts what the user passed as ``--model``, and the first that
does builds the :class:`~.base.LoadedModel` from a
:class:`~.common.LoadRequest`. The provenance it records comes from
:func:`.common.provenance`, so every source identifies its model the same way.

>>> [source.name for source in sources()]                          # doctest: +SKIP
['mmaction', 'torchvision', 'torchscript', 'export', 'factory']
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import UsageError
from ..core.registry import Registry
from .base import LoadedModel
from .common import LoadRequest


@dataclass(frozen=True)
class ModelSource:
    """One way of turning ``--model``/``--weights`` into a model.

    ``accepts(model)`` must be cheap (no heavy imports, no loading); ``load(request)``
    returns the module in eval mode with its input spec, class names and provenance
    (``provenance["source"]`` is ``name``). ``spec`` says in a few words which
    ``--model`` values it takes (it appears in help and error messages).
    """

    name: str
    spec: str
    accepts: Callable[[str], bool]
    load: Callable[[LoadRequest], LoadedModel]
    order: int = 50


@functools.lru_cache(maxsize=None)
def sources() -> tuple[ModelSource, ...]:
    """Every ``*_source`` module of this package and every plugin, by ``order`` then name."""
    found: Registry[ModelSource] = Registry("model source", group="vtcav.models", kind=ModelSource)
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.endswith("_source"):
            module = importlib.import_module(f"{__package__}.{info.name}")
            source = getattr(module, "SOURCE", None)
            if isinstance(source, ModelSource):
                found.add(source.name, source)
    return tuple(sorted(found.values(), key=lambda s: (s.order, s.name)))


def source_for(model: str) -> ModelSource:
    """The source that takes ``model``, or a usage error listing what is accepted."""
    for source in sources():
        if source.accepts(model):
            return source
    if Path(model).expanduser().is_file():
        raise UsageError(f"--model {model}: not a TorchScript file or a torch.export program "
                         f"(for a state dict give an architecture or package.module:factory)")
    kinds = "; ".join(source.spec for source in sources())
    raise UsageError(f"unknown model '{model}': expected {kinds}")
