"""Options every command shares, declared once: one name, one meaning, one type.

The front ends in ``tools/`` use these as parameter defaults, e.g.
``output: str = options.output("-")``.  Groups:

- output and messages: ``-o/--output``, ``-q/--quiet``, ``--version``;
- model: ``--model``, ``--weights``, ``--class-names``, ``--trust-checkpoint``, ``--mean``,
  ``--std``, and ``--device auto|cpu|cuda``, ``--batch-size``;
- sampling: ``--frames`` (clip length), ``--size`` (H or HxW), ``--frame-stride``;
- filters, repeatable everywhere: ``--label``, ``--concept``, ``--set``; ``--split``;
- ``--seed``.

Old spellings stay accepted for one release as hidden aliases (``--out``, ``--batch``,
``--stride``; the detector's ``--model`` in vt-detect): :class:`vtcav_common.cli.frame.VtCommand`
parses them but leaves them out of ``--help``.
"""

from __future__ import annotations

from typing import Any

import typer

from .frame import version_option
from ..core.parsing import parse_rgb, parse_size, square_size  # noqa: F401  (the front ends' parsers)

MODEL_HELP = ("Architecture name (swin3d_t, r3d_18, ...), package.module:factory, TorchScript/.pt2 file, "
              "or mmaction:CONFIG. May be left out when --weights is a TorchScript/.pt2 file or has a "
              "sidecar naming the model. See docs/models.md.")
DEVICE_HELP = "auto (cuda when present), cpu, or cuda (cuda:N for one GPU)."


def _option(default: Any, *decls: str, hidden_aliases: tuple[str, ...] = (), **kwargs) -> Any:
    info = typer.Option(default, *decls, **kwargs)
    info.hidden_aliases = hidden_aliases  # read by frame.VtCommand
    return info


# --------------------------------------------------------------------------- output, messages
def output(default: Any = "-", help: str = "Output file, written atomically; - for stdout.") -> Any:
    return _option(default, "-o", "--output", hidden_aliases=("--out",), help=help,
                   show_default=default not in (None, ...))


def quiet(help: str = "No progress or messages on stderr.") -> Any:
    return typer.Option(False, "-q", "--quiet", help=help)


def version() -> Any:
    return version_option()


def seed(help: str = "Random seed; the same inputs and seed give the same bytes.") -> Any:
    # numpy's and torch's generators take 0 .. 2**63-1: a negative seed is a usage error, not a traceback
    return typer.Option(0, "--seed", min=0, max=2**63 - 1, help=help)


# --------------------------------------------------------------------------- model
def model(help: str = MODEL_HELP) -> Any:
    return typer.Option(None, "--model", "-m", help=help)


def weights(help: str = "Local checkpoint (state dict) of the model.") -> Any:
    return typer.Option(None, "--weights", "-w", help=help)


def class_names() -> Any:
    return typer.Option(None, "--class-names", help="Class names file, one per line.")


def trust_checkpoint() -> Any:
    return typer.Option(False, "--trust-checkpoint",
                        help="Allow checkpoints that need arbitrary pickle (can run code).")


def mean() -> Any:
    return typer.Option(None, "--mean", help="Override normalisation mean: R,G,B in [0, 1].")


def std() -> Any:
    return typer.Option(None, "--std", help="Override normalisation std: R,G,B in [0, 1].")


def device(help: str = DEVICE_HELP) -> Any:
    return typer.Option("auto", "--device", help=help)


def batch_size(default: int, help: str = "Clips per forward/backward pass.") -> Any:
    return _option(default, "--batch-size", "-b", hidden_aliases=("--batch",), min=1, help=help)


def shard() -> Any:
    """``--shard K/N`` on the heavy steps; :func:`vtcav_common.scale.shard.parse_shard` reads it."""
    from ..scale.shard import HELP

    return typer.Option(None, "--shard", metavar="K/N", help=HELP)


def detector() -> Any:
    """The detector's weights (vt-detect): not ``--model``, which names the explained model."""
    return _option(..., "--detector", "-d", hidden_aliases=("--model", "-m"), show_default=False,
                   help="Ultralytics detector weights file (.pt) on local disk.")


# --------------------------------------------------------------------------- sampling
def frames(default: Any = None, help: str = "Frames per clip (T); default: the model's clip length.",
           minimum: int = 1) -> Any:
    return typer.Option(default, "--frames", "-T", min=minimum, help=help)


def size(default: Any = None, help: str = "Frame size in pixels: H (square) or HxW; default: the model's.") -> Any:
    return typer.Option(default, "--size", metavar="H|HxW", help=help)


def frame_stride(default: int = 1, help: str = "Source frames between clip frames.") -> Any:
    return _option(default, "--frame-stride", hidden_aliases=("--stride",), min=1, help=help)


def columns(default: int, help: str = "Frames shown per clip (columns).") -> Any:
    """Pictures: how many frames to show. Not ``--frames``, which is the clip length."""
    return _option(default, "--columns", hidden_aliases=("--frames",), min=1, help=help)


def target(default: Any = None, help: str = "The class (name or index) whose logit is explained.",
           hidden_aliases: tuple[str, ...] = ()) -> Any:
    """The class a command is about: ``--target`` everywhere (``--label`` filters videos)."""
    return _option(default, "--target", "-t", hidden_aliases=hidden_aliases, help=help,
                   show_default=default not in (None, ...))


# --------------------------------------------------------------------------- filters
def labels(help: str = "Only videos with this label (repeatable).") -> Any:
    return typer.Option([], "--label", help=help)


def split(default: Any = None, help: str = "Only videos of this split (e.g. train).") -> Any:
    return typer.Option(default, "--split", help=help)


def concepts(help: str = "Concept set(s): names or patterns such as 'ball_*' (repeatable; default: all).") -> Any:
    return typer.Option([], "--concept", help=help)


def sets(help: str = "Set(s) to use: names or patterns such as 'random_*' (repeatable; default: all).") -> Any:
    return typer.Option([], "--set", help=help)


# --------------------------------------------------------------------------- parsers
# parse_rgb, parse_size, square_size: typer-free, in parsing.py, so that the library can use them too
def resolve_device_name(text: str) -> str:
    """``--device auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; other names as given."""
    if text != "auto":
        return text
    import torch  # only the commands that run a model get here

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- the model bundle
def load_model_options(model: str | None, weights: str | None, class_names=None, trust_checkpoint: bool = False,
                       device: str = "auto", frames: int | None = None, size: str | None = None,
                       mean: str | None = None, std: str | None = None, **extra):
    """The model that the options ``--model --weights --class-names --trust-checkpoint --device``
    (and the input overrides ``--frames --size --mean --std``) name: one translation of the
    bundle every model-running front end declares (vt-embed, vt-explain, vt-ace)."""
    from ..models import load_model  # cheap: torch is imported when the model is loaded

    return load_model(model, weights, class_names=str(class_names) if class_names else None,
                      trust_checkpoint=trust_checkpoint, frames=frames, size=square_size(size),
                      mean=parse_rgb(mean, "--mean"), std=parse_rgb(std, "--std"), device=device, **extra)
