"""One registry type for every extension point: named items, aliases, and plugins.

The extension points (``--help`` and validation are made from each one's list):

===========================  =====================  =========================================
entry-point group            registry               an item
===========================  =====================  =========================================
``vtcav.models``             models.registry        a :class:`~vtcav_common.models.registry.ModelSource`
``vtcav.classifiers``        tcav.classifiers       a :class:`~vtcav_common.tcav.classifiers.Classifier`
``vtcav.tests``              stats.methods          a :class:`~vtcav_common.stats.methods.Test`
``vtcav.corrections``        stats.corrections      a :class:`~vtcav_common.stats.corrections.Correction`
``vtcav.relevance_methods``  explain.methods        a :class:`~vtcav_common.explain.methods.RelevanceMethod`
``vtcav.detection_formats``  detect.imports         a :class:`~vtcav_common.detect.imports.DetectionFormat`
===========================  =====================  =========================================

A lab adds its own without touching vtcav: a package that declares, in its pyproject.toml,

.. code-block:: toml

    [project.entry-points."vtcav.classifiers"]
    svm = "mylab.cavs:svm"        # a Classifier object, or a function that registers itself

is found once it is pip-installed: the entry point is loaded the first time the registry is
listed or asked for a name it does not hold. A plugin that cannot be loaded is an error
naming it (never a silent absence).

>>> colours = Registry("colour", aliases={"grey": "gray"})
>>> colours.add("gray", (128, 128, 128))
(128, 128, 128)
>>> colours["grey"], list(colours)
((128, 128, 128), ['gray'])
>>> colours["mauve"]
Traceback (most recent call last):
...
vtcav_common.core.registry.UnknownName: unknown colour 'mauve'; choose from gray
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import UsageError, VtcavError

T = TypeVar("T")


class UnknownName(UsageError, ValueError):
    """A name no registry entry has: a usage error for a command (exit status 2), a
    ValueError for a library caller."""


class Registry(Generic[T]):
    """Items by name, in the order they were added; aliases; plugins from ``group``."""

    def __init__(self, what: str, group: str | None = None, aliases: dict[str, str] | None = None,
                 kind: type | None = None, choices: Callable[["Registry"], str] | None = None):
        self.what = what                  # "classifier": names the item in errors
        self.group = group                # the entry-point group plugins declare
        self.aliases = dict(aliases or {})
        self.kind = kind                  # an entry point may load an object of this type
        self._choices = choices
        self._items: dict[str, T] = {}
        self._plugins_loaded = group is None

    # ------------------------------------------------------------------ filling
    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name`` (a later one with the same name replaces it)."""
        self._items[name] = item
        return item

    def load_plugins(self) -> None:
        """Load the entry points of ``group`` once (installed packages' extensions)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for point in entry_points(group=self.group):
            try:
                loaded = point.load()
            except Exception as err:  # a broken plugin is named, whatever it raised
                raise VtcavError(f"{self.group} plugin '{point.name}' ({point.value}): cannot load it "
                                 f"({type(err).__name__}: {err})") from None
            if point.name in self._items:
                continue                  # it registered itself when imported
            if self.kind is not None and not isinstance(loaded, self.kind):
                raise VtcavError(f"{self.group} plugin '{point.name}' ({point.value}): not a "
                                 f"{self.kind.__name__}, and it did not register a {self.what} named "
                                 f"'{point.name}'")
            self.add(point.name, loaded)

    # ------------------------------------------------------------------ asking
    def resolve(self, name: str) -> str:
        """The registered name for ``name`` (aliases included), or :class:`UnknownName` listing the choices."""
        name = self.aliases.get(name, name)
        if name not in self._items:
            self.load_plugins()
        if name not in self._items:
            raise UnknownName(f"unknown {self.what} '{name}'; choose from {self.choices()}")
        return name

    def __getitem__(self, name: str) -> T:
        return self._items[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        try:
            self.resolve(name)  # type: ignore[arg-type]
        except UnknownName:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        self.load_plugins()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self)

    def values(self) -> list[T]:
        return [self._items[name] for name in self]

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self]

    def choices(self) -> str:
        """The names, comma-separated, as help and errors list them."""
        return self._choices(self) if self._choices else ", ".join(self)
