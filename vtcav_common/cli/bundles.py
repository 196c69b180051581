"""Option bundles: options that several commands take together, declared once as a dataclass.

A bundle is a dataclass whose fields default to options (:mod:`.options`). A command
decorated with :func:`bundled` names it as one parameter annotated with the class; the
command line shows the bundle's options where that parameter stands, and the command receives
one instance::

    @app.command()
    @bundled
    def features(candidates: str = typer.Argument(...), model: ModelOptions = BUNDLE, ...):
        loaded = model.load()

A field marked ``closing`` (:func:`closing`) is shown instead with the command's closing options
(just before ``--shard``, ``-q`` or ``--version``), where the tools have always listed
``--device``, ``--class-names`` and ``--trust-checkpoint``. The options themselves (names, help,
hidden old spellings) are unchanged: click sees the same parameters as if each command had
declared them one by one.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from . import options

BUNDLE: Any = None   # the default a bundle parameter is declared with (its options give the defaults)
CLOSING = ("shard", "quiet", "version")   # the options a command's option list ends with


def closing(option: Any) -> Any:
    """A bundle field shown with the command's closing options."""
    return dataclasses.field(default=option, metadata={"closing": True})


def bundled(command: Callable) -> Callable:
    """``command`` with each bundle parameter spread into its options, and the options gathered
    back into the bundle when the command runs."""
    hints = typing.get_type_hints(command)
    parameters, late, bundles = [], [], {}
    for parameter in inspect.signature(command).parameters.values():
        kind = hints.get(parameter.name, parameter.annotation)
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            parameters.append(parameter.replace(annotation=kind))
            continue
        fields = dataclasses.fields(kind)
        types = typing.get_type_hints(kind)
        bundles[parameter.name] = (kind, [f.name for f in fields])
        for field in fields:
            spread = inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=field.default,
                                       annotation=types[field.name])
            (late if field.metadata.get("closing") else parameters).append(spread)
    at = next((i for i, p in enumerate(parameters) if p.name in CLOSING), len(parameters))
    parameters[at:at] = late
    names = [p.name for p in parameters]
    assert len(names) == len(set(names)), f"{command.__name__}: a bundle's option repeats a parameter"

    def run(**values):
        for name, (kind, fields) in bundles.items():
            values[name] = kind(**{field: values.pop(field) for field in fields})
        return command(**values)

    # not functools.wraps: its __wrapped__ would lead typer and frame.VtCommand to the unspread signature
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(run, attribute, getattr(command, attribute))
    run.__signature__ = inspect.Signature(parameters)
    return run


# --------------------------------------------------------------------------- the model bundle
@dataclasses.dataclass
class ModelOptions:
    """``--model --weights`` and, with the closing options, ``--device --class-names --trust-checkpoint``:
    the explained model, loaded by :meth:`load` when the command has checked its input."""

    model: Optional[str] = options.model()
    weights: Optional[str] = options.weights()
    device: str = closing(options.device())
    class_names: Optional[Path] = closing(options.class_names())
    trust_checkpoint: bool = closing(options.trust_checkpoint())

    def load(self, **extra):
        return options.load_model_options(self.model, self.weights, self.class_names, self.trust_checkpoint,
                                          self.device, **extra)


# --------------------------------------------------------------------------- vt-concepts
def clip_sets_output() -> Any:
    return options.output(..., help="The clip-set HDF5 file to write (written atomically).")


def source_videos(required: bool = False) -> Any:
    return typer.Option(... if required else None, "--videos",
                        help="A labels manifest (labels.jsonl: video_id, path, label) or a folder of videos. "
                             "Without it, the detection records' own video paths are used.")


def set_replace() -> Any:
    return typer.Option(False, "--replace", help="With --append or merge: a set of the same name is replaced.")


@dataclasses.dataclass
class VideoFilter:
    """Which videos clips are cut from (vt-concepts spatial, spatiotemporal, random)."""

    labels: Optional[List[str]] = options.labels(help="Only videos with this manifest label (repeatable).")
    exclude: Optional[List[str]] = typer.Option(None, "--exclude-label",
                                                help="Leave out videos with this label (repeatable).")
    split: Optional[str] = options.split(help="Only videos of this manifest split (e.g. train).")


@dataclasses.dataclass
class ClipSampling:
    """The clips' sampling and the seed of the draws (vt-concepts spatial, spatiotemporal, random)."""

    frames: int = options.frames(16, help="Frames per clip (T).")
    size: str = options.size("64", help="Clip size: H (square) or HxW, in pixels.")
    stride: int = options.frame_stride(1, help="Source frames between clip frames. Sets in one file must share it.")
    seed: int = options.seed()


@dataclasses.dataclass
class SetWriting:
    """How the set(s) go into OUT (vt-concepts spatial, spatiotemporal, random)."""

    append: bool = typer.Option(False, "--append", help="Add the set(s) to OUT, keeping the sets it has.")
    replace: bool = set_replace()
    shard: Optional[str] = options.shard()

    def cut(self, plans: list) -> tuple[list, dict | None]:
        """The plans this shard cuts, and its identity (all of them and None unsharded)."""
        from ..scale import shard

        return shard.shard_plans(plans, shard.parse_shard(self.shard), self.append)


# --------------------------------------------------------------------------- vt-ace
def max_videos() -> Any:
    return typer.Option(None, "--max-videos", min=1, help="At most this many videos.")


@dataclasses.dataclass
class MaskDraws:
    """VTCD's random masks (vt-ace vtcd and masks)."""

    masks: int = typer.Option(128, "--masks", help="Random masks per video.")
    rate: float = typer.Option(0.05, "--rate", help="Probability that a concept (or null copy) is masked in a draw.")
    null_copies: int = typer.Option(4, "--null-copies", help="Randomly shifted copies of each concept: the null.")
