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
``--stride``; the detector's ``--model`` in vt-detect): :class:`vtcav_common.frame.VtCommand`
parses them but leaves them out of ``--help``.
"""

from __future__ import annotations

from typing import Any

import typer

from .errors import UsageError
from .frame import version_option

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
    return typer.Option(0, "--seed", help=help)


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
    """``--shard K/N`` on the heavy steps; :func:`vtcav_common.shard.parse_shard` reads it."""
    from .shard import HELP

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
def parse_rgb(text: str | None, option: str) -> list[float] | None:
    """``"0.45,0.45,0.45"`` -> three floats (per-channel mean or std), or a usage error.

    >>> parse_rgb("0.45,0.45,0.45", "--mean")
    [0.45, 0.45, 0.45]
    >>> parse_rgb(None, "--mean") is None
    True
    """
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{option} takes three comma-separated numbers, got '{text}'") from None
    if len(values) != 3:
        raise UsageError(f"{option} takes three comma-separated numbers (R,G,B in [0, 1]), got '{text}'")
    return values


def parse_size(text: str, minimum: int = 8) -> tuple[int, int]:
    """``--size``: ``"64"`` -> (64, 64); ``"64x48"`` -> (64, 48) as (H, W).

    >>> parse_size("64"), parse_size("64x48")
    ((64, 64), (64, 48))
    """
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < minimum:
        raise UsageError(f"--size must be H or HxW with sides of at least {minimum} pixels, got '{text}'")
    return (values[0], values[-1])


def square_size(text: str | None, minimum: int = 8) -> int | None:
    """``--size`` where the frame is square (a model's input, the synthetic world).

    >>> square_size("112"), square_size("112x112"), square_size(None)
    (112, 112, None)
    """
    if text is None:
        return None
    height, width = parse_size(text, minimum)
    if height != width:
        raise UsageError(f"--size {text}: this frame is square; give one number")
    return height


def single_label(values: list[str] | None, option: str = "--label") -> str | None:
    """A repeatable filter where this command takes one value: at most one, or a usage error."""
    values = list(values or [])
    if len(values) > 1:
        raise UsageError(f"{option} takes one value here, got {len(values)}: {', '.join(values)}")
    return values[0] if values else None


def resolve_device_name(text: str) -> str:
    """``--device auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``; other names as given."""
    if text != "auto":
        return text
    import torch  # only the commands that run a model get here

    return "cuda" if torch.cuda.is_available() else "cpu"
