"""Reading checkpoints safely, and checking that a state dict fits a module.

``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers: a
checkpoint that needs arbitrary pickle (a pickled ``nn.Module``, custom classes) could run
code when loaded, so it is refused unless the user passes ``--trust-checkpoint``.

Common wrappers are unwrapped: ``{"state_dict": ...}``, ``{"model": ...}``,
``{"model_state_dict": ...}``, ``{"module": ...}``, ``{"net": ...}``, and the ``module.``
(DataParallel / DDP) and ``_orig_mod.`` (``torch.compile``) key prefixes.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Collection

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
KEY_PREFIXES = ("module.", "_orig_mod.")
SIDECAR_SUFFIX = ".json"


def is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive (zip with a ``code/`` folder), whatever its suffix."""
    if path.suffix in (".ts", ".torchscript"):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def is_exported_program(path: Path) -> bool:
    """A ``torch.export.save`` archive (``.pt2``)."""
    if path.suffix == ".pt2":
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("serialized_exported_program.json") or "/models/" in name
                       and name.endswith(".json") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def existing_file(path: str | Path, what: str = "weights") -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise VtcavError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise VtcavError(f"{path}: is a directory, expected a {what} file")
    return path


def read_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path`` (unwrapped, prefixes stripped), loaded safely."""
    return read_checkpoint_with_meta(path, trust_checkpoint)[0]


def read_checkpoint_with_meta(path: str | Path, trust_checkpoint: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict and the checkpoint's ``meta`` dict (mmaction, mmengine), ``{}`` if none."""
    path = existing_file(path)
    try:
        with warnings.catch_warnings():   # torch's own notes on pickles would precede our one-line refusal
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as err:
        needs = re.search(r"GLOBAL ([\w.]+)", str(err))
        if needs is None:  # not a pickle the weights-only loader understands at all
            raise VtcavError(f"{path}: not a readable PyTorch checkpoint (no state dict could be unpickled)") from None
        raise VtcavError(
            f"{path}: checkpoint needs arbitrary pickle to load (it stores {needs.group(1)}); refusing, since "
            f"unpickling can run code. Re-save it as a plain state dict (torch.save(model.state_dict(), path)) "
            f"or pass --trust-checkpoint if you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VtcavError(f"{path}: not a readable PyTorch checkpoint ({first[:160]})") from None
    meta = content.get("meta") if isinstance(content, dict) and isinstance(content.get("meta"), dict) else {}
    return state_dict_of(content, path), meta


def state_dict_of(content: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict inside what ``torch.load`` returned."""
    if isinstance(content, nn.Module):  # a pickled model (only reachable with --trust-checkpoint)
        content = content.state_dict()
    for _ in range(3):  # wrappers nest at most a couple of levels in practice
        if isinstance(content, dict) and not _is_state_dict(content):
            inner = next((content[k] for k in WRAPPER_KEYS
                          if k in content and isinstance(content[k], (dict, nn.Module))),
                         None)
            if inner is None:
                break
            content = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if not isinstance(content, dict) or not _is_state_dict(content):
        found = ", ".join(list(content)[:6]) if isinstance(content, dict) else type(content).__name__
        raise VtcavError(f"{path}: no state dict found in the checkpoint (top level holds: {found})")
    return strip_prefixes({str(k): v for k, v in content.items() if isinstance(v, torch.Tensor)})


def _is_state_dict(content: dict) -> bool:
    values = list(content.values())
    return bool(values) and sum(isinstance(v, torch.Tensor) for v in values) >= max(1, len(values) // 2)


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_strictly(module: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str,
                  assign: bool = False) -> None:
    """Load ``state`` into ``module`` or fail with one line naming the first mismatches."""
    problem = mismatch(module.state_dict(), state)
    if problem:
        raise VtcavError(f"{path}: checkpoint does not fit {arch}: {problem}")
    module.load_state_dict(state, strict=True, assign=assign)


def mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], show: int = 3) -> str:
    """A short description of how ``found`` differs from ``expected`` ('' when it fits)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)} expected"
              for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k].shape)]
    parts = []
    for label, items in (("shape mismatch at", shapes), ("missing keys", missing), ("unexpected keys", unexpected)):
        if items:
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            parts.append(f"{label} {', '.join(items[:show])}{more}")
    return "; ".join(parts)


def read_sidecar(weights: Path | None) -> dict:
    """``<weights without suffix>.json`` next to the weights, if present (see docs/models.md)."""
    if weights is None:
        return {}
    sidecar = weights.with_suffix(SIDECAR_SUFFIX)
    if sidecar == weights or not sidecar.exists():
        return {}
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:   # ValueError: JSONDecodeError and UnicodeDecodeError
        raise VtcavError(f"{sidecar}: unreadable sidecar JSON ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(record, dict):
        raise VtcavError(f"{sidecar}: sidecar must be a JSON object")
    return record


# The models a sidecar may name without --trust-checkpoint: vtcav's own factories. A sidecar
# travels with downloaded weights and is as untrusted as a pickle: naming ``os:system`` (or a
# module of ours that loads pickles) with keyword arguments would run code. Torchvision
# architecture names (plain strings that select built-in code) are allowed too; files
# (TorchScript, .pt2, mmaction .py configs run as Python) and any other callable are not.
OWN_FACTORIES = frozenset({"vtcav_common.models.tiny:motion_c3d", "vtcav_common.models.tiny:appearance_c3d"})


def sidecar_model(weights: Path | None, sidecar: dict, trust_checkpoint: bool,
                  architectures: Collection[str] = ()) -> str:
    """The model a weights file's sidecar names, if it may be used: ``""`` when none.

    Without ``trust_checkpoint`` only :data:`OWN_FACTORIES` and torchvision architectures
    pass, and ``model_kwargs`` must be plain JSON values (numbers, strings, booleans).
    """
    model = sidecar.get("model")
    if model in (None, ""):
        return ""
    where = weights.with_suffix(SIDECAR_SUFFIX) if weights is not None else "sidecar"
    if not isinstance(model, str):
        raise VtcavError(f"{where}: sidecar 'model' must be a string, not {type(model).__name__}")
    if trust_checkpoint:
        return model
    kwargs = sidecar.get("model_kwargs")
    if kwargs is not None and (not isinstance(kwargs, dict) or not all(
            isinstance(v, (bool, str)) and len(str(v)) <= 200
            or isinstance(v, (int, float)) and abs(v) <= 100_000 for v in kwargs.values())):
        # small plain values: a num_classes of 10**12 would allocate terabytes building the model
        raise VtcavError(f"{where}: sidecar 'model_kwargs' must be an object of small plain values "
                         f"(or pass --trust-checkpoint)")
    if model in OWN_FACTORIES:
        return model
    if re.fullmatch(r"[a-z][a-z0-9_]*", model) and model in architectures and not kwargs:
        return model   # an architecture name of the video zoo: no code to name
    shown = model if len(model) <= 80 and model.isprintable() else repr(model[:80])
    raise VtcavError(f"{where}: the sidecar names the model {shown}, which is not one of vtcav's own "
                     f"models; refusing to run code named by a file that came with the weights. "
                     f"Give --model yourself, or pass --trust-checkpoint if you trust its source")


def read_class_names(path: str | Path) -> list[str]:
    """A names file: one class name a line (blank lines ignored)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such class names file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
        raise VtcavError(f"{path}: cannot read the class names ({reason})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise VtcavError(f"{path}: class names file is empty")
    return names
