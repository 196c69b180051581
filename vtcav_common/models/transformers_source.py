"""Hugging Face ``transformers`` video classifiers (VideoMAE, TimeSformer, ViViT) as a model source.

Two ways to name one (nothing is ever downloaded: ``local_files_only``):

- a local ``save_pretrained`` folder (``config.json`` + ``model.safetensors``), given as
  ``--model hf:FOLDER`` or just ``--model FOLDER``;
- a config plus a state dict: ``--model hf:config.json --weights model.safetensors``
  (or a ``torch.save``'d state dict of the ``*ForVideoClassification`` model).

>>> loaded = load_model("hf:videomae-base-finetuned-kinetics", None)     # doctest: +SKIP
>>> loaded = load_model("hf:vivit/config.json", "vivit/model.safetensors")  # doctest: +SKIP

The module is :class:`VideoTransformer`: ``forward(N x T x C x H x W) -> N x K`` logits,
the same arithmetic as the ``*ForVideoClassification`` model it was built from (a test
compares them), on that model's own submodules under short names: ``embeddings``,
``encoder.layer.N`` (ViViT: ``layers.N``), ``layernorm`` / ``fc_norm``, ``classifier``.

The token layers (``embeddings`` and each ``encoder.layer.N``) give a **T' x H' x W' x C**
grid, so vt-embed, --pool, vt-cav, vt-score and vt-explain's Grad-CAM treat them like a
Video Swin stage: T' = frames / tubelet size (VideoMAE, ViViT) or frames (TimeSformer, one
token a frame and patch), H' = W' = image size / patch size. The class token (TimeSformer,
ViViT) is not on the grid: each such layer returns ``(grid, class_token)`` (a forward hook
the wrapper registers first turns the layer's tokens into that pair, and ``forward`` turns it
back), so what vtcav records and differentiates is the grid itself. TimeSformer orders its
tokens H', W', T' (its embeddings put time last); the grid is always T', H', W'.

A classifier that reads only the class token (TimeSformer, ViViT) gives its last layer's
grid no gradient, so Grad-CAM and TCAV default to earlier layers there (``cam_layer``).
The input contract comes from the config (``num_frames``, ``image_size``) and the folder's
``preprocessor_config.json`` (its rescale, offset and normalisation folded into mean/std
in [0, 1] units), else the family's published processor defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.errors import UsageError, VtcavError
from ..core.messages import warn
from . import common
from .base import InputSpec, LoadedModel
from .checkpoint import read_checkpoint
from .registry import ModelSource

PREFIXES = ("hf:", "transformers:")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CLASSES = {"videomae": "VideoMAEForVideoClassification", "timesformer": "TimesformerForVideoClassification",
           "vivit": "VivitForVideoClassification"}


@dataclass(frozen=True)
class Family:
    """What differs between the supported architectures."""

    backbone: str                 # attribute of the *ForVideoClassification model holding the encoder
    class_token: bool             # a class token precedes the patch tokens
    order: str                    # the order of the patch tokens' axes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


FAMILIES = {
    # VideoMAEImageProcessor: ImageNet mean/std.
    "videomae": Family("videomae", False, "THW", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # facebook/timesformer-* processors: mean 0.45, std 0.225.
    "timesformer": Family("timesformer", True, "HWT", (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    # VivitImageProcessor: x / 127.5 - 1, then (x - 0.5) / 0.5, i.e. (x01 - 0.75) / 0.25.
    "vivit": Family("vivit", True, "THW", (0.75, 0.75, 0.75), (0.25, 0.25, 0.25)),
}


def import_transformers():
    try:
        import transformers
    except ImportError:
        raise UsageError("Hugging Face models need the transformers package: pip install 'vtcav[transformers]'") \
            from None
    return transformers


# ----------------------------------------------------------------------------- the module
def token_grid(config, family: Family) -> tuple[int, int, int]:
    """(T', H', W'): tokens per axis for the config's clip."""
    patch = int(config.patch_size) if hasattr(config, "patch_size") else None
    if family.backbone == "vivit":
        tubelet = [int(v) for v in config.tubelet_size]
        return (int(config.num_frames) // tubelet[0], int(config.image_size) // tubelet[1],
                int(config.image_size) // tubelet[2])
    tubelet = int(getattr(config, "tubelet_size", 1)) if family.backbone == "videomae" else 1
    side = int(config.image_size) // patch
    return int(config.num_frames) // tubelet, side, side


class ToGrid:
    """Forward hook: a token layer's ``N x L x C`` output -> ``(N x T' x H' x W' x C grid, class token)``."""

    def __init__(self, grid: tuple[int, int, int], order: str, class_token: bool):
        self.grid, self.order, self.class_token = grid, order, class_token
        sizes = dict(zip("THW", grid))
        self.shape = tuple(sizes[axis] for axis in order)
        self.to_thw = [0] + [1 + order.index(axis) for axis in "THW"] + [4]
        self.from_thw = [0] + [1 + "THW".index(axis) for axis in order] + [4]

    def __call__(self, _module, _inputs, output):
        tokens = output[0] if isinstance(output, (tuple, list)) else output
        cls = tokens[:, :1] if self.class_token else None
        body = tokens[:, 1:] if self.class_token else tokens
        grid = body.reshape(body.shape[0], *self.shape, body.shape[-1]).permute(*self.to_thw)
        return (grid, cls) if cls is not None else (grid,)

    def tokens(self, pair) -> torch.Tensor:
        """The inverse: ``(grid, class token)`` -> ``N x L x C`` tokens in the model's own order."""
        grid = pair[0]
        body = grid.permute(*self.from_thw).reshape(grid.shape[0], -1, grid.shape[-1])
        return torch.cat([pair[1], body], dim=1) if self.class_token else body


class VideoTransformer(nn.Module):
    """A ``*ForVideoClassification`` model as ``forward(N x T x C x H x W) -> N x K`` logits,
    its token layers seen as ``T' x H' x W' x C`` grids (see the module docstring)."""

    def __init__(self, hf_model: nn.Module, family: Family):
        super().__init__()
        backbone = getattr(hf_model, family.backbone)
        self.family = family.backbone
        self.embeddings = backbone.embeddings
        if hasattr(backbone, "encoder"):         # VideoMAE, TimeSformer: encoder.layer.N
            self.encoder, self.prefix = backbone.encoder, "encoder.layer"
        else:                                    # ViViT (transformers 5): layers.N
            self.layers, self.prefix = backbone.layers, "layers"
        if getattr(backbone, "layernorm", None) is not None:
            self.layernorm = backbone.layernorm
        if getattr(hf_model, "fc_norm", None) is not None:
            self.fc_norm = hf_model.fc_norm
        self.classifier = hf_model.classifier
        self.grid = token_grid(hf_model.config, family)
        self.to_grid = ToGrid(self.grid, family.order, family.class_token)
        # Registered before any of vtcav's hooks, so those see (and differentiate) the grid.
        for layer in [self.embeddings, *self.blocks]:
            layer.register_forward_hook(self.to_grid)

    @property
    def blocks(self) -> nn.ModuleList:
        """The token layers, in order (named ``{prefix}.N``)."""
        return self.encoder.layer if hasattr(self, "encoder") else self.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.family == "videomae":
            pair = self.embeddings(x, None)
        else:
            pair = self.embeddings(x)
        for layer in self.blocks:
            pair = layer(self.to_grid.tokens(pair))
        tokens = self.to_grid.tokens(pair)
        if hasattr(self, "fc_norm"):                 # VideoMAE with mean pooling
            return self.classifier(self.fc_norm(tokens.mean(1)))
        if hasattr(self, "layernorm"):
            tokens = self.layernorm(tokens)
        return self.classifier(tokens[:, 0])


# ----------------------------------------------------------------------------- loading
def accepts(model: str) -> bool:
    if model.startswith(PREFIXES):
        return True
    path = Path(model).expanduser()
    return path.is_dir() and (path / "config.json").is_file()


def _path_of(model: str) -> Path:
    for prefix in PREFIXES:
        if model.startswith(prefix):
            model = model[len(prefix):]
    path = Path(model).expanduser()
    if not path.exists():
        raise VtcavError(f"{path}: no such folder or config file (Hugging Face model)")
    return path


def read_config(path: Path):
    """The config of a folder or a ``config.json``, as transformers' own config class."""
    transformers = import_transformers()
    file = path / "config.json" if path.is_dir() else path
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise VtcavError(f"{file}: not a readable config.json ({str(err)[:120]})") from None
    model_type = record.get("model_type") if isinstance(record, dict) else None
    if model_type not in FAMILIES:
        raise UsageError(f"{file}: model_type {model_type!r} is not a supported video classifier "
                         f"(supported: {', '.join(FAMILIES)})")
    if model_type == "timesformer" and record.get("attention_type") == "space_only":
        raise UsageError(f"{file}: TimeSformer with attention_type space_only classifies each frame; "
                         f"vtcav needs one prediction per clip (divided_space_time or joint_space_time)")
    return transformers.AutoConfig.for_model(**record), file


def weight_file(folder: Path) -> Path | None:
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def _read_state(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise VtcavError(f"{path}: not a readable safetensors file ({str(err)[:120]})") from None
    return read_checkpoint(path, trust)


def build(request: common.LoadRequest) -> tuple[nn.Module, object, Path | None, Path]:
    """The ``*ForVideoClassification`` model (eval), its config, the weights file and the config's path.

    Weights go through transformers' own loader (``from_pretrained``), which also renames
    the keys of older checkpoints (VideoMAE's ``q_bias``); any key left missing, unexpected
    or of the wrong shape is refused, as for every other source.
    """
    transformers = import_transformers()
    transformers.utils.logging.disable_progress_bar()
    path = _path_of(request.model)
    config, config_file = read_config(path)
    model_class = getattr(transformers, CLASSES[config.model_type])
    weights = request.weights
    if weights is None and path.is_dir():
        weights = weight_file(path)
    if weights is None and request.need_weights:
        raise UsageError(f"{path}: no weights ({' or '.join(WEIGHT_FILES)} in the folder, or --weights)")
    if weights is None:
        warn(f"{path}: no weights; random ones (enough to list its layers, not to explain)")
        torch.manual_seed(0)   # reproducible random weights
        return model_class(config).eval(), config, None, config_file
    state = _read_state(weights, request.trust_checkpoint)
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()    # its load report: the one-line refusal below says it
    try:
        model, info = model_class.from_pretrained(None, config=config, state_dict=state, output_loading_info=True)
    except (RuntimeError, ValueError, KeyError) as err:
        raise VtcavError(f"{weights}: checkpoint does not fit {CLASSES[config.model_type]} "
                         f"({str(err).strip().splitlines()[0][:160]})") from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
    problems = [f"{kind.replace('_', ' ')} {', '.join(sorted(map(str, keys))[:3])}"
                + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if (keys := info.get(kind))]
    if problems:
        raise VtcavError(f"{weights}: checkpoint does not fit {CLASSES[config.model_type]}: {'; '.join(problems)}")
    return model.eval(), config, weights, config_file


def preprocessor_spec(folder: Path, family: Family) -> tuple[tuple, tuple]:
    """mean/std in [0, 1] units from ``preprocessor_config.json`` (rescale and offset folded in)."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return family.mean, family.std
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise VtcavError(f"{file}: not readable ({str(err)[:120]})") from None
    factor = float(record.get("rescale_factor", 1 / 255)) if record.get("do_rescale", True) else 1.0
    offset = 1.0 if record.get("offset") else 0.0
    mean = record.get("image_mean", [0.0] * 3) if record.get("do_normalize", True) else [0.0] * 3
    std = record.get("image_std", [1.0] * 3) if record.get("do_normalize", True) else [1.0] * 3
    # pixel p in 0..255: ((p * factor - offset) - m) / s = (p / 255 - (offset + m) / (255 factor)) / (s / (255 factor))
    scale = 255.0 * factor
    return (tuple((offset + float(m)) / scale for m in mean), tuple(float(s) / scale for s in std))


def declared_names(config) -> list[str] | None:
    names = [str(config.id2label[i]) for i in range(len(config.id2label))] if config.id2label else []
    if not names or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None            # transformers' placeholders
    return names


def layer_choice(prefix: str, depth: int, class_token: bool) -> tuple[list[str], str]:
    """Four layers spread over the depth, and Grad-CAM's default: the last layer whose grid the
    logits depend on (the penultimate one when only the class token is read out)."""
    last = depth - 2 if class_token and depth > 1 else depth - 1
    picks = sorted({max(0, round((last + 1) * k / 4) - 1) for k in (1, 2, 3, 4)})
    return [f"{prefix}.{i}" for i in picks], f"{prefix}.{last}"


def load(request: common.LoadRequest) -> LoadedModel:
    hf_model, config, weights, config_file = build(request)
    family = FAMILIES[config.model_type]
    module = VideoTransformer(hf_model, family)
    mean, std = preprocessor_spec(config_file.parent, family)
    size = int(config.image_size)
    base = InputSpec(frames=int(config.num_frames), size=(size, size), mean=mean, std=std, layout="NTCHW")
    spec = common.input_spec(base, request.sidecar, request.overrides)
    if (spec.frames, spec.size) != (base.frames, base.size):
        raise UsageError(f"{config_file}: the model's position embeddings fix its input at {base.frames} frames of "
                         f"{size}x{size}; got --frames {spec.frames} --size {spec.size[0]}")
    num_classes = int(config.num_labels)
    names = common.class_names(request, num_classes, config_file, declared=declared_names(config),
                               declared_by="the config's id2label")
    prefix = module.prefix
    layouts = {"embeddings": "NTHWC", f"{prefix}.[0-9]": "NTHWC", f"{prefix}.[0-9][0-9]": "NTHWC"}
    usual, cam = layer_choice(prefix, len(module.blocks), family.class_token)
    arch = getattr(config, "architectures", None) or [type(hf_model).__name__]
    provenance = common.provenance(
        "transformers", arch[0], weights, num_classes, names, spec, layouts,
        state=None if weights else hf_model.state_dict(), model_type=config.model_type,
        config_sha256=common.file_sha256(config_file), token_grid=list(module.grid),
        transformers_version=import_transformers().__version__)
    return LoadedModel(module.eval(), spec, names, provenance, usual_layers=usual, cam_layer=cam)


SOURCE = ModelSource(
    name="transformers", order=15, load=load, accepts=accepts,
    spec="hf:FOLDER (a transformers save_pretrained folder: VideoMAE, TimeSformer, ViViT) or hf:config.json "
         "with --weights")
